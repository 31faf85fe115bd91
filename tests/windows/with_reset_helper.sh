#!/usr/bin/env bash
# with_reset_helper.sh PROG.exe [args...] - run PROG.exe under Wine with a native Linux peer
# that resets connections on request (tests/windows/reset_helper.py); the program finds it
# through CPORT_TEST_RESET_HELPER (its port on 127.0.0.1). Wine cannot close a socket
# abortively itself (probe_abort_close). The helper is stopped at the end; PROG's exit code is
# returned.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d)
python3 "$ROOT/tests/windows/reset_helper.py" "$dir/port" &
helper=$!
trap 'kill $helper 2>/dev/null; wait $helper 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
  [[ -s $dir/port ]] && break
  sleep 0.05
done
[[ -s $dir/port ]] || { echo "with_reset_helper: the helper did not start" >&2; exit 1; }
CPORT_TEST_RESET_HELPER=$(cat "$dir/port")
export CPORT_TEST_RESET_HELPER
"$ROOT/scripts/wine-run" "$@"
