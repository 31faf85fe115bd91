#!/usr/bin/env bash
# Rooms come and go: one client walks through 100,000 distinct room names
# (1,000 under the sanitizers); afterwards the live-rooms gauge is 0, a new
# room works, and the server's RSS, measured after a warm-up, is back within
# 5% (plain build only: the sanitizers keep freed memory in quarantine).
# Then 10,000 players each create a room of their own; when they are gone the
# gauge is back to 0.
source "$(dirname "$0")/lib.sh" "$@"
start_server chat
check=1
((SANITIZED)) && check=0
python3 "$(dirname "$0")/proto2.py" "$PORT" rooms "$(scaled 100000 1000)" "$SRV_PID" "$METRICS_PORT" "$check" \
  || fail "rooms scale"
# 10,000 players (100 under the sanitizers), each creating a room of its own and
# chatting in it; once they are gone, so are their rooms.
n=$(scaled 10000 100)
run_dummy --mode chat --clients "$n" --room-size 1 --rate 1 --duration 2 --ping-interval 0 \
  --connect-timeout 60
rooms=
for _ in $(seq 200); do
  rooms=$(python3 -c "import socket; s=socket.create_connection(('127.0.0.1',$METRICS_PORT)); s.sendall(b'GET /metrics HTTP/1.0\r\n\r\n'); d=b''
while True:
  x=s.recv(65536)
  if not x: break
  d+=x
print([l.split()[1] for l in d.decode().splitlines() if l.startswith('cport_rooms ')][0])")
  [[ $rooms == 0 ]] && break
  sleep 0.05
done
[[ $rooms == 0 ]] || fail "$n players each in a room of its own: $rooms rooms left after they went"
echo "$n players each created a room; all $n rooms gone after they left"
stop_server
echo "PASS"
