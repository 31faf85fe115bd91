#!/usr/bin/env bash
# chat: room fan-out verified by cport-dummy (every member gets every chat of
# its room exactly once, in order) and by an independent python client.
source "$(dirname "$0")/lib.sh" "$@"

start_server chat
run_dummy --mode chat --clients 200 --room-size 50 --rate 5 --duration 3
python3 "$(dirname "$0")/chat_client.py" "$PORT" fanout || fail "independent chat client"
stop_server
echo "PASS"
