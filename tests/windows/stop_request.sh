#!/usr/bin/env bash
# stop_request.sh PROG.exe - start PROG.exe (win_stop) under Wine, wait for "ready", send
# SIGINT to the Wine process (Wine delivers it as the console's Ctrl+C event), and pass if the
# program saw exactly one interrupt and exited 0.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$ROOT/scripts/wine-run" "$1" >"$out" 2>&1 &
runner=$!
for _ in $(seq 1 300); do
  grep -q ready "$out" && break
  sleep 0.1
done
grep -q ready "$out" || { echo "stop_request: the program never got ready"; cat "$out"; kill $runner; exit 1; }
# The Wine process is the runner's child running PROG.exe.
pid=$(pgrep -P $runner | head -1)
[[ -n $pid ]] || { echo "stop_request: no Wine process under $runner"; exit 1; }
kill -INT "$pid"
wait $runner
rc=$?
cat "$out"
exit $rc
