#!/usr/bin/env bash
# Malformed input against chat mode, each kind on its own connection, while a
# verified cport-dummy runs alongside: truncated header, sizes 0-3, size over
# --max-packet, undecodable bodies, an unknown id, packets out of state, 64 KiB
# of random bytes. Each closes only its own connection, with a line in the
# server's log saying why (out of state: S_ERROR only, the connection stays
# usable); the dummy sees nothing; the server's counters match: exactly the
# bad_packet and local closes the client caused.
source "$(dirname "$0")/lib.sh" "$@"

start_server chat --max-packet 1100
"$BIN/cport-dummy" --port "$PORT" --quiet --mode chat --clients 100 --room-size 25 --rate 20 \
  --duration 4 >"$TMP/dummy.out" 2>"$TMP/dummy.err" &
dummy=$!
sleep 0.5
python3 "$(dirname "$0")/chat_client.py" "$PORT" garbage "$TMP/server.log" >"$TMP/garbage.out" \
  || { cat "$TMP/garbage.out" >&2; fail "garbage client"; }
cat "$TMP/garbage.out"
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
metric() { curl_metrics | sed -n "s/^cport_disconnects_total{reason=\"$1\"} //p"; }
want_bad=$(sed -n 's/^closes: bad_packet=\([0-9]*\) .*/\1/p' "$TMP/garbage.out")
want_local=$(sed -n 's/^closes: .* local=\([0-9]*\)$/\1/p' "$TMP/garbage.out")
bad=$(metric bad_packet)
local_=$(metric local)
[[ ${bad:-x} == "$want_bad" ]] || fail "bad_packet disconnects: metrics say ${bad:-none}, the client caused $want_bad"
[[ ${local_:-x} == "$want_local" ]] || fail "local disconnects: metrics say ${local_:-none}, the client caused $want_local"
for r in error slow_consumer idle_timeout; do
  n=$(metric $r)
  [[ ${n:-0} -eq 0 ]] || fail "$r disconnects: $n (expected none)"
done
stop_server
echo "PASS"
