#!/usr/bin/env bash
# --enter-rate 5 --chat-rate 10: a chat flood and a client switching rooms in
# a tight loop for 3 s get ERR_RATE_LIMITED and stay connected; the 200
# members of the room it switches through (2 under the sanitizers) are all
# still connected, and the server closed no session at all.
source "$(dirname "$0")/lib.sh" "$@"
start_server chat --enter-rate 5 --chat-rate 10
python3 "$(dirname "$0")/proto2.py" "$PORT" rate "$(scaled 200 2)" "$METRICS_PORT" || fail "rate limits"
stop_server
echo "PASS"
