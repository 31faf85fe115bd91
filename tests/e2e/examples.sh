#!/usr/bin/env bash
# examples.sh BIN_DIR BACKEND [wine] - run every example (examples/*.c) on a free loopback port,
# drive it with tests/e2e/example_client.py (a small exchange, every byte compared), then ask it
# to stop (SIGINT; under Wine the console's Ctrl+C) and expect exit 0. With "wine" the examples
# are BIN_DIR/NAME.exe run by scripts/wine-run (BACKEND is ignored: IOCP).
set -uo pipefail
BIN=${1:?bin dir}
BACKEND=${2:-auto}
WINE=${3:-}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TMP=$(mktemp -d)
PID=
trap '[[ -n $PID ]] && kill -KILL $PID 2>/dev/null; rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; [[ -f $TMP/log ]] && sed 's/^/  example: /' "$TMP/log" >&2; exit 1; }

for name in echo_port packet_echo broadcast chat_relay; do
  : >"$TMP/log"
  if [[ -n $WINE ]]; then
    "$ROOT/scripts/wine-run" "$BIN/$name.exe" --port 0 --threads 2 2>"$TMP/log" &
  else
    "$BIN/$name" --port 0 --threads 2 --backend "$BACKEND" 2>"$TMP/log" &
  fi
  PID=$!
  port=
  for _ in $(seq 600); do
    port=$(head -n "$(wc -l <"$TMP/log")" "$TMP/log" | sed -n 's/^[a-z_]*: [a-z ]*127\.0\.0\.1:\([0-9]*\),.*/\1/p' | head -1)
    [[ -n $port ]] && break
    kill -0 $PID 2>/dev/null || fail "$name exited at start"
    sleep 0.05
  done
  [[ -n $port ]] || fail "$name did not start"
  python3 "$HERE/example_client.py" "$name" "$port" || fail "$name: client exchange"
  target=$PID
  [[ -n $WINE ]] && target=$(pgrep -P $PID | head -1) # the Wine process running the .exe
  kill -INT "$target"
  rc=0
  wait $PID || rc=$?
  PID=
  [[ $rc -eq 0 ]] || fail "$name exited with $rc after SIGINT"
  echo "examples: $name ok"
done
echo PASS
