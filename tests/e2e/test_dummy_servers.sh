#!/usr/bin/env bash
# cport-dummy --servers (issue 14 item 5) against three independent chat servers: the
# clients go round-robin over the servers, each server's through a client service of its
# own. These servers share nothing, so each room is kept on one server (--spread rooms);
# every check still runs - every chat once, in each sender's order, all members of a room in
# one order (the segments compared are reported), presence, pings - with and without
# churn. Echo over the three servers too. (Rooms across cluster nodes: tests/cluster.)
source "$(dirname "$0")/lib.sh" "$@"

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}" "$SRV_PID"; do [[ -n $p ]] && kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
start_three() { # MODE: three servers; LIST="127.0.0.1:P1,...", MPORTS: their metrics ports
  LIST="" PIDS=() MPORTS=()
  for _ in 1 2 3; do
    start_server "$1"
    PIDS+=("$SRV_PID")
    MPORTS+=("$METRICS_PORT")
    LIST+="${LIST:+,}127.0.0.1:$PORT"
  done
}
# Until every server has seen the last run's players go: its rooms gone, no session left.
# (A server handles the disconnects after the dummy exits; the next run's S_ENTER_ROOM must
# not list the last run's players - seen on a loaded machine.)
settle_three() {
  local m
  for m in "${MPORTS[@]}"; do
    wait_metric_at "$m" cport_sessions 0
    wait_metric_at "$m" cport_rooms 0
  done
}
stop_three() {
  local p
  for p in "${PIDS[@]}"; do
    SRV_PID=$p
    stop_server
  done
  PIDS=()
}
expect() { # JSON fragment
  grep -q "$1" "$TMP/dummy.out" || fail "cport-dummy's report lacks $1: $(cat "$TMP/dummy.out")"
}

start_three chat
run_dummy --mode chat --servers "$LIST" --spread rooms --clients 150 --room-size 25 --rate 5 \
  --duration 2 --json
expect '"connected":150,'
expect '"servers":3,"spread":"rooms","rooms_across_servers":0,'
expect '"order_mismatches":0,"errors":0}'
# the one-order check compared every delivery: no churn, so every member saw its room whole
chats=$(sed -n 's/.*"order_chats":\([0-9]*\).*/\1/p' "$TMP/dummy.out")
sent=$(sed -n 's/.*"sent":\([0-9]*\).*/\1/p' "$TMP/dummy.out")
((chats == sent * 25)) || fail "order check covered $chats deliveries, expected $((sent * 25))"
settle_three

run_dummy --mode chat --servers "$LIST" --spread rooms --clients 90 --room-size 15 --rate 10 \
  --duration 2 --churn 10 --json
expect '"order_mismatches":0,"errors":0}'
grep -q '"reconnects":0,' "$TMP/dummy.out" && fail "no client churned: $(cat "$TMP/dummy.out")"
stop_three

start_three echo
run_dummy --mode echo --servers "$LIST" --clients 30 --depth 4 --size 100 --duration 1 --json
expect '"connected":30,'
expect '"servers":3,'
stop_three
echo "PASS"
