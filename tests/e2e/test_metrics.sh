#!/usr/bin/env bash
# GET /metrics parses as Prometheus text, and its counters move with traffic.
source "$(dirname "$0")/lib.sh" "$@"

start_server packet-echo
run_dummy --mode packet-echo --clients 10 --duration 1
python3 - "$METRICS_PORT" <<'PY' || fail "metrics"
import re, socket, sys
def get(path, raw=None):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
    s.sendall(raw if raw is not None else f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()); d = b""
    while True:
        x = s.recv(65536)
        if not x: break
        d += x
    head, _, body = d.partition(b"\r\n\r\n")
    return head.decode(), body.decode()
head, body = get("/metrics")
assert head.startswith("HTTP/1.1 200"), head
assert "text/plain" in head
m = re.search(r"Content-Length: (\d+)", head); assert m and int(m.group(1)) == len(body.encode())
sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? -?[0-9.eE+-]+$')
types = {}
values = {}
for line in body.splitlines():
    if line.startswith("# HELP "): continue
    if line.startswith("# TYPE "):
        _, _, name, kind = line.split(" ", 3)
        assert kind in ("counter", "gauge"), line
        types[name] = kind; continue
    assert sample.match(line), f"not Prometheus text: {line!r}"
    name = line.split("{")[0].split(" ")[0]
    assert name in types, f"sample without TYPE: {line}"
    values[line.rsplit(" ", 1)[0]] = float(line.rsplit(" ", 1)[1])
assert values["cport_accepts_total"] >= 10, values
assert values["cport_packets_received_total"] > 0
assert values['cport_disconnects_total{reason="peer_closed"}'] >= 10
head, _ = get("/nope"); assert head.startswith("HTTP/1.1 404"), head
# The request is bytes: a zero byte neither hides the end of the head nor matches a path.
head, _ = get(None, b"GET /metrics\0 HTTP/1.1\r\nHost: x\r\n\r\n"); assert head.startswith("HTTP/1.1 404"), head
head, _ = get(None, b"GET /metrics HTTP/1.1\r\nX: \0\r\n\r\n"); assert head.startswith("HTTP/1.1 200"), head
head, _ = get(None, b"G\0T /metrics HTTP/1.1\r\n\r\n"); assert head.startswith("HTTP/1.1 405"), head
PY
stop_server
echo "PASS"
