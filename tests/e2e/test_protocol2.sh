#!/usr/bin/env bash
# Protocol 2, rule by rule (tests/e2e/proto2.py rules): byte strings with zero
# bytes and UTF-8 checks, answers in request order for pipelined batches sent
# whole and one byte per write, rooms deleted when empty and --max-rooms
# counting live rooms, switching, S_ENTER_ROOM's order, S_CHAT's room,
# presence, ping, packets before a bad header answered first; chats held by
# --room-flush-ms reach the members they would have reached at once, in
# buffers that grow for a busy room and shrink back for a quiet one. Then
# S_ENTER_ROOM within --max-packet (the smallest allowed, 1063, and the
# default with 32-byte names), a --max-packet of 1062 refused at start, and
# cport-dummy --pipeline.
source "$(dirname "$0")/lib.sh" "$@"
P2=$(dirname "$0")/proto2.py

start_server chat
python3 "$P2" "$PORT" rules || fail "protocol 2 rules"
stop_server
start_server chat --room-flush-ms 5000
python3 "$P2" "$PORT" flush "$METRICS_PORT" || fail "--room-flush-ms"
stop_server
start_server chat --room-flush-ms 1000
python3 "$P2" "$PORT" batch "$METRICS_PORT" || fail "chat buffers sized to the room"
stop_server
start_server chat --max-rooms 3
python3 "$P2" "$PORT" maxrooms || fail "--max-rooms"
stop_server

start_server chat --max-packet 1063
python3 "$P2" "$PORT" bigroom 30 1063 || fail "S_ENTER_ROOM within --max-packet 1063"
stop_server
start_server chat --max-packet 65535
python3 "$P2" "$PORT" bigroom "$(scaled 520 30)" 65535 || fail "S_ENTER_ROOM: at most 500"
stop_server
start_server chat
python3 "$P2" "$PORT" bigroom "$(scaled 450 30)" 16384 || fail "S_ENTER_ROOM within --max-packet 16384"
run_dummy --mode chat --clients 60 --room-size 20 --rate 5 --duration 2 --pipeline
grep -q "60 first writes answered in request order" "$TMP/dummy.out" || fail "dummy --pipeline: $(cat "$TMP/dummy.out")"
stop_server

rc=0
"$BIN/cport-server" --mode chat --port 0 --metrics off --max-packet 1062 2>"$TMP/refused.log" || rc=$?
[[ $rc -eq 2 ]] && grep -q "below 1063" "$TMP/refused.log" || fail "--max-packet 1062 not refused (exit $rc)"
echo "PASS"
