#!/usr/bin/env bash
# --idle-timeout 1: a listener that only pings (C_PING counts as activity)
# stays for 4 s; a silent session is closed.
source "$(dirname "$0")/lib.sh" "$@"
start_server chat --idle-timeout 1
python3 "$(dirname "$0")/proto2.py" "$PORT" idle || fail "idle"
stop_server
echo "PASS"
