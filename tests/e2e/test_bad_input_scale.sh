#!/usr/bin/env bash
# Bad input at scale (issue 10): (a) one room name entered and left 1,000,000
# times by one client, pipelined in batches of 2,000 pairs: every answer
# byte for byte, the live-rooms gauge back to 0, the server's RSS within 5%
# of its value after a warm-up; (b) 10,000 players (two client processes of
# 5,000 connections; the server holds 10,000 descriptors, under the 20,000
# limit) each creating a room of its own, then leaving it: every S_LOGIN,
# S_ENTER_ROOM and S_LEAVE_ROOM counted, the gauge back to where it was, the
# RSS after a round within 5% of its value before it (after a warm-up of two
# rounds; see below), and a player in a room of
# its own next to it all (pinging and chatting) answered every time and never
# disturbed. Full scale in the plain build, 1/100 under the sanitizers (no RSS
# check there: they keep freed memory in quarantine).
source "$(dirname "$0")/lib.sh" "$@"
PY=$(dirname "$0")/scale_bad_input.py
check=1
((SANITIZED)) && check=0

start_server chat
python3 "$PY" "$PORT" samename "$(scaled 1000000 10000)" "$SRV_PID" "$METRICS_PORT" "$check" \
  || fail "one room name reused"
server_alive
stop_server

# (b) on a server of its own, its RSS compared round to round. One malloc
# arena: with one per worker, which thread frees what moves each arena's high
# water from round to round under load (seen: +12% in a third round, while
# six rounds on a quiet machine grew 3% in all).
MALLOC_ARENA_MAX=1 start_server chat

metric() { metric_at "$METRICS_PORT" "$1"; }
wait_metric() { wait_metric_at "$METRICS_PORT" "$1" "$2"; } # NAME VALUE
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$SRV_PID/status"; }

mkfifo "$TMP/by.in"
python3 "$PY" "$PORT" bystander 600 <"$TMP/by.in" >"$TMP/by.out" 2>&1 &
by=$!
exec 3>"$TMP/by.in"
for _ in $(seq 400); do grep -q ready "$TMP/by.out" && break; sleep 0.05; done
grep -q ready "$TMP/by.out" || fail "bystander: $(cat "$TMP/by.out")"

half=$(scaled 5000 50)
round() { # TAG: 2 x half players, each in a room of its own, all at once, then gone
  mkdir "$TMP/$1"
  python3 "$PY" "$PORT" ownrooms "$half" "$1a" "$TMP/$1" 2 >"$TMP/$1a.out" 2>&1 &
  local a=$!
  python3 "$PY" "$PORT" ownrooms "$half" "$1b" "$TMP/$1" 2 >"$TMP/$1b.out" 2>&1 &
  local b=$!
  local rc=0
  wait $a || rc=1
  wait $b || rc=1
  [[ $rc -eq 0 ]] || { cat "$TMP/$1a.out" "$TMP/$1b.out" >&2; fail "ownrooms round $1"; }
  cat "$TMP/$1a.out" "$TMP/$1b.out"
  wait_metric cport_rooms 1    # the bystander's
  wait_metric cport_sessions 1 # the bystander
}
round warm1 # two rounds to warm up
round warm2
sleep 0.3
base=$(rss_kb)
# Memory back to its level: a round after the warm-up leaves the RSS within 5%
# of where the round before it left it. Up to three rounds: glibc keeps a
# round's high water, which moves with the load (a loaded machine queues more
# at a time): seen here, one round in six or seven jumping 10-17% and staying
# there, with no growth after it - a leak grows every round and fails all three.
prev=$base ok=0 seen="$base"
for r in 1 2 3; do
  round "measured$r"
  sleep 0.3
  now=$(rss_kb)
  seen="$seen -> $now"
  if ((now * 100 <= prev * 105)); then ok=1; break; fi
  prev=$now
done
echo "$((2 * half)) players each created a room, $((2 + r)) times; rooms gauge back to 1 (the bystander's); RSS (kB) after the warm-up and each round since: $seen"
((check == 0)) || ((ok)) || fail "RSS grew more than 5% in each of 3 rounds: $seen kB"

echo stop >&3
exec 3>&-
rc=0
wait $by || rc=$?
cat "$TMP/by.out"
[[ $rc -eq 0 ]] || fail "the bystander was disturbed"
wait_metric cport_rooms 0
server_alive
stop_server
echo "PASS"
