# lib.sh - shared by the end-to-end tests: start the real cport-server on a
# free loopback port, stop it, and fail on any sanitizer report it printed.
# Usage in a test: source lib.sh "$@"   (args: BIN_DIR BACKEND)
set -euo pipefail
BIN=${1:?bin dir}
BACKEND=${2:-auto}
export CPORT_BACKEND=$BACKEND
TMP=$(mktemp -d)
SRV_PID=
trap 'cleanup' EXIT

fail() { echo "FAIL: $*" >&2; [[ -f $TMP/server.log ]] && sed 's/^/  server: /' "$TMP/server.log" | tail -40 >&2; exit 1; }

cleanup() {
  [[ -n $SRV_PID ]] && kill -KILL "$SRV_PID" 2>/dev/null || true
  rm -rf "$TMP"
}

# Sanitizer reports (ASan, LSan, UBSan, TSan) in a log make the test fail.
check_sanitizers() {
  if grep -qE 'ERROR: (Address|Leak)Sanitizer|WARNING: ThreadSanitizer|runtime error:|SUMMARY: .*Sanitizer' "$1"; then
    head -60 "$1" | sed "s/^/  $2: /" >&2
    fail "sanitizer report in $2"
  fi
}

# start_server MODE [extra flags...]: sets PORT and METRICS_PORT.
start_server() {
  local mode=$1; shift
  # Emptied here, not only by the background redirect below (which runs in the child, maybe
  # after our first look): a second start must never read the previous server's port.
  : >"$TMP/server.log"
  "$BIN/cport-server" --mode "$mode" --port 0 --metrics 127.0.0.1:0 --quiet "$@" \
    2>"$TMP/server.log" &
  SRV_PID=$!
  for _ in $(seq 200); do
    # Complete lines only: the start line may be half written when we look.
    local line
    line=$(head -n "$(wc -l <"$TMP/server.log")" "$TMP/server.log" | grep -m1 " mode on " || true)
    PORT=$(sed -n 's/.* mode on [^ ]*:\([0-9]*\),.*/\1/p' <<<"$line")
    METRICS_PORT=$(sed -n 's/.*metrics [^ ]*:\([0-9]*\)$/\1/p' <<<"$line")
    [[ -n $PORT && -n $METRICS_PORT ]] && return 0
    kill -0 "$SRV_PID" 2>/dev/null || fail "server exited at start"
    sleep 0.05
  done
  fail "server did not start"
}

# stop_server: SIGTERM, expect exit 0 and a clean log.
stop_server() {
  kill -TERM "$SRV_PID"
  local rc=0
  wait "$SRV_PID" || rc=$?
  SRV_PID=
  [[ $rc -eq 0 ]] || fail "server exited with $rc after SIGTERM"
  grep -q "final:" "$TMP/server.log" || fail "server printed no final counters"
  check_sanitizers "$TMP/server.log" server
}

server_alive() { kill -0 "$SRV_PID" 2>/dev/null || fail "server died"; }

# metric_at METRICS_PORT NAME: the value of an unlabelled metric of a server's /metrics.
metric_at() {
  python3 -c "import socket; s=socket.create_connection(('127.0.0.1',$1)); s.sendall(b'GET /metrics HTTP/1.0\r\n\r\n'); d=b''
while True:
  x=s.recv(65536)
  if not x: break
  d+=x
print([l.split()[1] for l in d.decode().splitlines() if l.startswith('$2 ')][0])"
}
# wait_metric_at METRICS_PORT NAME VALUE: until it reads VALUE (20 s at most, then fail).
wait_metric_at() {
  local v=
  for _ in $(seq 400); do
    v=$(metric_at "$1" "$2")
    [[ $v == "$3" ]] && return 0
    sleep 0.05
  done
  fail "$2 is $v, expected $3 (server with metrics on port $1)"
}

# run_dummy ARGS...: run cport-dummy against the server, fail unless it verifies.
run_dummy() {
  local rc=0
  "$BIN/cport-dummy" --port "$PORT" --quiet "$@" >"$TMP/dummy.out" 2>"$TMP/dummy.err" || rc=$?
  check_sanitizers "$TMP/dummy.err" cport-dummy
  if [[ $rc -ne 0 ]]; then
    cat "$TMP/dummy.out" "$TMP/dummy.err" >&2
    fail "cport-dummy $* exited with $rc"
  fi
}

# Scale of the scale tests: 1 in the plain build, 1/100 under the sanitizers
# (a binary linked to libasan or libtsan); CPORT_E2E_SCALE overrides.
SANITIZED=0
[[ $(ldd "$BIN/cport-server" 2>/dev/null || true) =~ lib[at]san ]] && SANITIZED=1
if [[ -n ${CPORT_E2E_SCALE:-} ]]; then
  SCALE=$CPORT_E2E_SCALE
elif ((SANITIZED)); then
  SCALE=0.01
else
  SCALE=1
fi
# scaled N MIN: N times SCALE, at least MIN.
scaled() { awk -v n="$1" -v s="$SCALE" -v m="$2" 'BEGIN { v = int(n * s); print (v < m ? m : v) }'; }
