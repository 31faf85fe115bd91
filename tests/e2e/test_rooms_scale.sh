#!/usr/bin/env bash
# Rooms come and go: one client walks through 100,000 distinct room names
# (1,000 under the sanitizers); afterwards the live-rooms gauge is 0, a new
# room works, and the server's RSS, measured after a warm-up, is back within
# 5% (plain build only: the sanitizers keep freed memory in quarantine).
source "$(dirname "$0")/lib.sh" "$@"
start_server chat
check=1
((SANITIZED)) && check=0
python3 "$(dirname "$0")/proto2.py" "$PORT" rooms "$(scaled 100000 1000)" "$SRV_PID" "$METRICS_PORT" "$check" \
  || fail "rooms scale"
stop_server
echo "PASS"
