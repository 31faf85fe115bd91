#!/usr/bin/env bash
# Nodes sharing rooms through one real redis-server (issue 14, docs/cluster.md),
# checked by tests/e2e/cluster.py from the clients' side:
#  0. a node whose --cluster address is not Redis keeps serving;
#  1. two nodes: protocol 2's rules across nodes (byte-string rooms, member
#     lists, presence, one chat order, S_LEAVE_ROOM after one's own chats),
#     and proto2.py's rules and --max-rooms against a cluster node;
#  2. three nodes, 300 players in rooms of 100 (scaled down under the
#     sanitizers): every chat exactly once and in one order on every node,
#     with CLIENT KILL TYPE pubsub halfway (the gap filled from the streams);
#     then one node stopped (SIGSTOP) for 5 s while the others chat: they get
#     every chat meanwhile, it is not taken for dead (past its heartbeat
#     deadline, but connected), it catches up once continued;
#  3. SIGTERM one node (exit 0, its players leave at once) and kill -9 another
#     (its players leave within the documented timeout);
#  4. Redis restarted with appendonly + appendfsync always mid-run: no chat
#     lost or duplicated; a player that disconnects while Redis is down leaves
#     in Redis once it is back (its leave re-sent); and without persistence:
#     the epoch change counted on /metrics, the rooms go on (every chat of the
#     new epoch reaches every member), player ids never repeat.
source "$(dirname "$0")/../cluster/nodes_lib.sh" "$@"
CL=$(dirname "$0")/cluster.py

# start_node I [flags]: node I on a free port (NPORT[I], NMPORT[I]), both Redis connections up.
start_node() {
  local i=$1; shift
  local log=$TMP/node$i.log
  : >"$log"
  "$BIN/cport-server" --mode chat --port 0 --metrics 127.0.0.1:0 --quiet \
    --cluster "redis://127.0.0.1:$REDIS_PORT" --node-name "node$i" "$@" 2>"$log" &
  NPID[$i]=$!
  for _ in $(seq 400); do
    if node_ports "$i" && [[ $(metric_of "$i" cport_cluster_up) == 1 ]]; then
      return 0
    fi
    kill -0 "${NPID[$i]}" 2>/dev/null || { cat "$log" >&2; fail "node $i exited at start"; }
    sleep 0.05
  done
  cat "$log" >&2
  fail "node $i did not start"
}

metric_of() { python3 -c "import sys; sys.path.insert(0, '$(dirname "$0")'); from wire2 import metric; print(int(metric(int(sys.argv[1]), sys.argv[2])))" "${NMPORT[$1]}" "$2" 2>/dev/null || echo -; }

# stop_node I: SIGTERM, exit 0, a clean log.
stop_node() {
  local i=$1 rc=0
  kill -TERM "${NPID[$i]}"
  wait "${NPID[$i]}" || rc=$?
  unset "NPID[$i]"
  [[ $rc -eq 0 ]] || { cat "$TMP/node$i.log" >&2; fail "node $i exited with $rc after SIGTERM"; }
  check_sanitizers "$TMP/node$i.log" "node $i"
}

stop_all() { for i in "${!NPID[@]}"; do stop_node "$i"; done; }

redis_start
# 0. --cluster pointing at a service that is not Redis (an SSH-like banner):
#    a clear log line, the node keeps serving, requests that need Redis get
#    ERR_UNAVAILABLE, SIGTERM still exits 0
python3 -c '
import socket, threading
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
' >"$TMP/banner.port" &
BANNER_PID=$!
for _ in $(seq 100); do [[ -s $TMP/banner.port ]] && break; sleep 0.05; done
: >"$TMP/node5.log"
"$BIN/cport-server" --mode chat --port 0 --metrics off --quiet \
  --cluster "redis://127.0.0.1:$(cat "$TMP/banner.port")" --node-name node5 2>"$TMP/node5.log" &
NPID[5]=$!
for _ in $(seq 200); do
  NPORT[5]=$(sed -n 's/.* mode on [^ ]*:\([0-9]*\),.*/\1/p' "$TMP/node5.log")
  [[ -n ${NPORT[5]} ]] && grep -q "Protocol error" "$TMP/node5.log" && break
  sleep 0.05
done
grep -q "Protocol error" "$TMP/node5.log" || fail "no protocol error logged for a non-Redis service"
python3 "$CL" unavailable "${NPORT[5]}" || fail "a node without Redis"
stop_node 5
kill "$BANNER_PID"; wait "$BANNER_PID" 2>/dev/null || true

# 1. rules across two nodes
start_node 1
start_node 2
python3 "$CL" rules "${NPORT[1]}" "${NPORT[2]}" || fail "protocol 2 across two nodes"
# protocol 2's own rule checks (tests/e2e/proto2.py) against a node in cluster mode
python3 "$(dirname "$0")/proto2.py" "${NPORT[1]}" rules || fail "protocol 2's rules on a cluster node"
start_node 4 --max-rooms 3
python3 "$(dirname "$0")/proto2.py" "${NPORT[4]}" maxrooms || fail "--max-rooms 3 (per node) on a cluster node"
stop_node 4
# --room-flush-ms on a cluster node: held chat events go before a join, a leave, the timer
start_node 6 --room-flush-ms 5000
python3 "$(dirname "$0")/proto2.py" "${NPORT[6]}" flush "${NMPORT[6]}" || fail "--room-flush-ms on a cluster node"
stop_node 6

# 2. three nodes, rooms of 100, a pub/sub gap halfway
start_node 3
N=$(scaled 300 30)
SIZE=$(scaled 100 10)
python3 "$CL" chat "${NPORT[1]},${NPORT[2]},${NPORT[3]}" "$N" "$SIZE" 10 \
  --redis "$REDIS_PORT" --kill-pubsub || fail "chat across three nodes with a pub/sub gap"
for i in 1 2 3; do
  [[ $(metric_of "$i" cport_cluster_gap_recoveries_total) -ge 1 ]] || fail "node $i: no gap recovery counted"
  [[ $(metric_of "$i" cport_cluster_gap_lost_total) == 0 ]] || fail "node $i: events lost"
done

# 2b. a node that reads nothing from Redis (SIGSTOP) does not hold up the others
python3 "$CL" slow "${NPORT[1]}" "${NPORT[2]}" "${NPORT[3]}:${NPID[3]}" "${NMPORT[1]},${NMPORT[2]}" ||
  fail "a stopped node held up the others"
s1=$(metric_of 1 cport_cluster_spared_nodes_total) s2=$(metric_of 2 cport_cluster_spared_nodes_total)
[[ $s1 != - && $s2 != - ]] && ((s1 + s2 >= 1)) ||
  fail "node 3, stopped past its heartbeat deadline, was not counted as spared ($s1, $s2)"
[[ $(metric_of 1 cport_cluster_swept_nodes_total) == 0 && $(metric_of 2 cport_cluster_swept_nodes_total) == 0 ]] ||
  fail "node 3, stopped but connected, was swept"

# 3. SIGTERM node 2, kill -9 node 3; node 1's players see all of them leave
python3 "$CL" nodes "${NPORT[1]}:${NPID[1]}" "${NPORT[2]}:${NPID[2]}" "${NPORT[3]}:${NPID[3]}" ||
  fail "node lifecycle"
rc=0
wait "${NPID[2]}" || rc=$?
[[ $rc -eq 0 ]] || fail "node 2 exited with $rc after SIGTERM"
check_sanitizers "$TMP/node2.log" "node 2"
{ wait "${NPID[3]}"; } 2>/dev/null || true
unset "NPID[2]" "NPID[3]"
[[ $(metric_of 1 cport_cluster_swept_nodes_total) -ge 1 ]] || fail "node 1 swept no dead node"
stop_all

# 4. Redis restarted mid-run: with appendonly + appendfsync always, then without persistence
# (under plain, ASan and TSan: docs/cluster.md, "Known limits", says what made them fail there).
mid_run() { # mid_run restart-args...: a chat run on two nodes with a Redis restart halfway
  start_node 1
  start_node 2
  coproc PY { python3 "$CL" chat "${NPORT[1]},${NPORT[2]}" "$(scaled 40 10)" "$(scaled 20 5)" 10 --mid --ids "$TMP/ids"; }
  local line
  read -r line <&"${PY[0]}" || fail "chat run: no MID"
  [[ $line == MID ]] || fail "chat run: $line"
  redis_restart "$@"
  echo go >&"${PY[1]}"
  wait "$PY_PID" || fail "chat run across a Redis restart ($*)"
}
redis_stop
redis_start --aof
mid_run --kill9
for i in 1 2; do
  [[ $(metric_of "$i" cport_cluster_redis_reconnects_total) -ge 2 ]] || fail "node $i: no reconnect counted"
  [[ $(metric_of "$i" cport_cluster_epoch_changes_total) == 0 ]] || fail "node $i: epoch change with AOF"
done
# 4b. a player disconnects while Redis is down (killed; appendonly keeps the rooms): once
#     Redis is back, its node re-sends the leave and node 1's player gets S_MEMBER_LEFT
coproc OUT { python3 "$CL" outage "${NPORT[1]}" "${NPORT[2]}"; }
read -r line <&"${OUT[0]}" || fail "outage run: no DOWN"
[[ $line == DOWN ]] || fail "outage run: $line"
redis_cleanup # kill -9
echo down >&"${OUT[1]}"
read -r line <&"${OUT[0]}" || fail "outage run: no GONE"
[[ $line == GONE ]] || fail "outage run: $line"
redis_restart --kill9 # (killed already: started again)
echo up >&"${OUT[1]}"
wait "$OUT_PID" || fail "a leave while Redis was down"
[[ $(metric_of 2 cport_cluster_leaves_resent_published_total) -ge 1 ]] || fail "node 2: no leave re-sent"
stop_all
redis_stop
redis_start
mid_run
for i in 1 2; do
  [[ $(metric_of "$i" cport_cluster_epoch_changes_total) -ge 1 ]] || fail "node $i: the epoch change not counted"
done
grep -q "room epoch changed" "$TMP/node1.log" || fail "node 1 did not log the epoch change"
start_node 3 # its id block comes from the counter the restart lost
python3 "$CL" ids "${NPORT[3]}" "$TMP/ids" 20 || fail "player ids after a restart without persistence"
stop_all
echo "PASS"
