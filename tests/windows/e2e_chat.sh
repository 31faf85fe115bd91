#!/usr/bin/env bash
# e2e_chat.sh WIN_BIN LINUX_BIN [SIDE] - SIDE server (the default): cport-server.exe under Wine
# (IOCP), driven over 127.0.0.1 by the LINUX cport-dummy and an independent python client;
# SIDE dummy, the mirror: cport-dummy.exe under Wine drives the LINUX cport-server (SIGTERM
# stops it). Both:
#   echo mode: cport-dummy verifies every byte, the server's final counters say exactly the
#   bytes it sent came in and went out; chat mode: every chat reaches every member of
#   its room exactly once, in order (cport-dummy: errors 0, every client connected) and the
#   python client's fan-out checks;
# then the console's Ctrl+C (SIGINT to the Wine process: Wine delivers it as CTRL_C_EVENT; see
# docs/windows.md for why not the close event) makes the server drain and exit 0 with its final
# counters. The Wine prefix is the build tree's; the caller stops the wineserver (fixture).
set -uo pipefail
WBIN=${1:?windows bin dir}
LBIN=${2:?linux bin dir}
SIDE=${3:-server}
[[ $SIDE == server || $SIDE == dummy ]] || { echo "usage: e2e_chat.sh WIN_BIN LINUX_BIN [server|dummy]" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TMP=$(mktemp -d)
RUNNER=
trap '[[ -n $RUNNER ]] && kill -KILL $RUNNER 2>/dev/null; rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; [[ -f $TMP/server.log ]] && sed 's/^/  server: /' "$TMP/server.log" | tail -30 >&2; exit 1; }
if [[ $SIDE == server ]]; then
  SERVER=("$ROOT/scripts/wine-run" "$WBIN/cport-server.exe") DUMMY=("$LBIN/cport-dummy")
else
  SERVER=("$LBIN/cport-server") DUMMY=("$ROOT/scripts/wine-run" "$WBIN/cport-dummy.exe")
fi
[[ -x $LBIN/cport-$([[ $SIDE == server ]] && echo dummy || echo server) ]] || fail "no Linux programs in $LBIN (make build first)"
[[ -f $WBIN/cport-$SIDE.exe ]] || fail "no cport-$SIDE.exe in $WBIN (make windows)"

start_server() { # MODE: sets PORT
  : >"$TMP/server.log" # now: the background start truncates it too late to hide the last run's
  "${SERVER[@]}" --mode "$1" --port 0 --metrics 127.0.0.1:0 --threads 2 --quiet \
    2>"$TMP/server.log" &
  RUNNER=$!
  PORT=
  for _ in $(seq 600); do
    PORT=$(head -n "$(wc -l <"$TMP/server.log")" "$TMP/server.log" |
      sed -n 's/.* mode on [^ ]*:\([0-9]*\),.*/\1/p' | head -1)
    [[ -n $PORT ]] && return 0
    kill -0 $RUNNER 2>/dev/null || fail "cport-server exited at start"
    sleep 0.05
  done
  fail "cport-server did not start"
}

# Under Wine, Ctrl+C: SIGINT to the Wine process (the runner's child); on Linux SIGTERM. Then:
# drain, final counters, exit 0.
stop_server() {
  local pid=$RUNNER sig=TERM
  if [[ $SIDE == server ]]; then
    pid=$(pgrep -P $RUNNER | head -1) sig=INT
    [[ -n $pid ]] || fail "no Wine process under the runner"
  fi
  kill -$sig "$pid"
  local rc=0
  wait $RUNNER || rc=$?
  RUNNER=
  [[ $rc -eq 0 ]] || fail "cport-server exited with $rc after SIG$sig"
  grep -q "draining" "$TMP/server.log" || fail "the server did not drain"
  grep -q "final:" "$TMP/server.log" || fail "the server printed no final counters"
}

# cport-dummy ARGS: its JSON report must say errors 0, every client connected, and (chat)
# received = sent x room size (each chat goes to every member of its room, the sender included).
run_dummy() {
  "${DUMMY[@]}" --port "$PORT" --quiet --json "$@" >"$TMP/dummy.json" 2>"$TMP/dummy.err" ||
    { cat "$TMP/dummy.json" "$TMP/dummy.err" >&2; fail "cport-dummy $* failed"; }
  python3 - "$TMP/dummy.json" <<'PY' || { cat "$TMP/dummy.json" "$TMP/dummy.err" >&2; fail "cport-dummy $*: counts"; }
import json, sys
r = json.load(open(sys.argv[1]))
assert r["errors"] == 0, r
assert r["connected"] == r["clients"], r
assert r["messages"] > 0, r
if r["mode"] == "chat":  # each chat goes to every member of its room (the sender included);
    # those still in flight when the measured window closed arrive after it (errors counts any
    # that never did)
    assert r["messages"] <= r["sent"] * r["room_size"], r
print("e2e_chat: cport-dummy: %s: %d clients, %d sent, %d received, errors 0" %
      (r["mode"], r["clients"], r["sent"], r["messages"]))
PY
}

start_server echo
run_dummy --mode echo --clients 20 --depth 4 --size 100 --duration 2
stop_server
# Exact: the server received and sent back every byte cport-dummy sent, no more.
sent=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["sent"] * r["size"])' "$TMP/dummy.json")
grep -q "bytes in $sent, out $sent," "$TMP/server.log" ||
  fail "echo: the server's byte counts are not $sent in and out: $(grep final: "$TMP/server.log")"
echo "e2e_chat: echo mode ok, cport-$SIDE under Wine, drained"

start_server chat
run_dummy --mode chat --clients 60 --room-size 20 --rate 5 --duration 3 --ping-interval 500
if [[ $SIDE == server ]]; then
  python3 "$ROOT/tests/e2e/chat_client.py" "$PORT" fanout || fail "independent chat client"
fi
stop_server
grep "final:" "$TMP/server.log"
echo "e2e_chat: chat mode ok, cport-$SIDE under Wine, drained"
echo PASS
