#!/usr/bin/env bash
# echo and packet-echo: cport-dummy verifies every byte; an independent
# client (python) checks plain RFC 862 echo and packet-echo byte for byte.
source "$(dirname "$0")/lib.sh" "$@"

start_server echo
run_dummy --mode echo --clients 50 --depth 4 --size 100 --duration 2
python3 - "$PORT" <<'PY' || fail "independent echo client"
import socket, sys, os
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
data = os.urandom(200000)
s.sendall(data); got = b""
while len(got) < len(data):
    d = s.recv(65536)
    assert d, "EOF before all bytes came back"
    got += d
assert got == data, "echo differs"
s.close()
PY
stop_server

start_server packet-echo
run_dummy --mode packet-echo --clients 50 --depth 4 --size 300 --duration 2
python3 - "$PORT" <<'PY' || fail "independent packet-echo client"
import socket, sys, os, struct
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
pk = b"".join(struct.pack("<HH", 4 + n, i) + os.urandom(n) for i, n in enumerate([0, 1, 100, 4000, 7]))
for i in range(len(pk)):          # one byte at a time: framing must hold
    s.send(pk[i:i+1])
got = b""
while len(got) < len(pk):
    d = s.recv(65536)
    assert d, "EOF"
    got += d
assert got == pk, "packet echo differs"
PY
stop_server
echo "PASS"
