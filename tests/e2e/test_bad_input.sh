#!/usr/bin/env bash
# Malformed input against chat mode: every kind closes only the offending
# session; the server stays up and a verified dummy run alongside sees nothing.
source "$(dirname "$0")/lib.sh" "$@"

start_server chat --max-packet 1024
"$BIN/cport-dummy" --port "$PORT" --quiet --mode chat --clients 100 --room-size 25 --rate 20 \
  --duration 4 >"$TMP/dummy.out" 2>"$TMP/dummy.err" &
dummy=$!
sleep 0.5
python3 "$(dirname "$0")/chat_client.py" "$PORT" garbage || fail "garbage client"
server_alive
rc=0; wait $dummy || rc=$?
check_sanitizers "$TMP/dummy.err" cport-dummy
[[ $rc -eq 0 ]] || { cat "$TMP/dummy.out" "$TMP/dummy.err" >&2; fail "the dummy alongside saw errors"; }
curl_metrics() { python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1',$METRICS_PORT)); s.sendall(b'GET /metrics HTTP/1.0\r\n\r\n'); d=b''
while True:
  x=s.recv(65536)
  if not x: break
  d+=x
print(d.decode())"; }
bad=$(curl_metrics | sed -n 's/^cport_disconnects_total{reason="bad_packet"} //p')
[[ ${bad:-0} -ge 3 ]] || fail "expected >= 3 bad_packet disconnects, metrics say ${bad:-none}"
stop_server
echo "PASS"
