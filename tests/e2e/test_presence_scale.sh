#!/usr/bin/env bash
# Presence: 200 players (2 under the sanitizers, 1/100) enter, switch, leave
# and disconnect at random; every member's view of its room, built from
# S_ENTER_ROOM and every S_MEMBER_JOINED / S_MEMBER_LEFT, equals the room's
# real membership. Then cport-dummy counts presence against its rooms.
source "$(dirname "$0")/lib.sh" "$@"
start_server chat
python3 "$(dirname "$0")/proto2.py" "$PORT" presence "$(scaled 200 4)" "$(scaled 3000 200)" || fail "presence"
run_dummy --mode chat --clients "$(scaled 200 20)" --room-size 10 --rate 5 --duration 3 --churn 10
stop_server
echo "PASS"
