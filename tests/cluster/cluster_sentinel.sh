#!/usr/bin/env bash
# Nodes behind Redis Sentinel (issue 14, docs/cluster.md, "Redis Sentinel"): real redis-server
# processes on free loopback ports in $TMP - a master, one replica (--replicaof), one sentinel
# (redis-server sentinel.conf --sentinel; the config file in $TMP, Sentinel rewrites it):
#  1. two nodes with --cluster redis-sentinel://.../m (node 2's list starts with a sentinel that
#     is down: the next one is asked) share a room: a chat each way, exact bytes, one order;
#  2. SENTINEL FAILOVER m (forced): once the replica is master, both nodes reconnect to it (their
#     log names it), count it on /metrics (sentinel lookups, a master change), and chats each
#     way after it reach the other node once, in order, with the players connected throughout;
#  3. a master name the sentinel does not know: a clear log line, ERR_UNAVAILABLE, ping served;
#  4. sentinels that misbehave (tests/cluster/fake_sentinel.py): silent, an answer that is no
#     address, one naming a server that is not a master (refused after ROLE, counted);
#  5. a sentinel with its own password: CPORT_SENTINEL_PASSWORD right (up, a room shared) and
#     wrong (logged, not up); no password in any log or /metrics;
#  6. the same on a real sentinel with requirepass (right: up; wrong: WRONGPASS logged, not up),
#     and a wrong one refused by a sentinel that quotes it back: logged as ***, never shown.
# Every process stopped at the end; every node exits 0 on SIGTERM.
# Usage: cluster_sentinel.sh BIN_DIR BACKEND
source "$(dirname "$0")/nodes_lib.sh" "$@"
PY=$(dirname "$0")/cluster_sentinel.py
AUTHPY=$(dirname "$0")/cluster_auth.py
[[ -x $REDIS_SERVER ]] || { echo "redis-server not found (scripts/setup): skipped" >&2; exit 77; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
declare -A RPID
trap 'for i in "${!NPID[@]}"; do kill -KILL "${NPID[$i]}" 2>/dev/null || true; done
      for i in "${!RPID[@]}"; do kill -KILL "${RPID[$i]}" 2>/dev/null || true; done; cleanup' EXIT
# spawn NAME PORT ARGS...: a redis-server in $TMP/NAME, up (answers PING) within 10 s.
# (SPAWN_PASS: the password it requires)
spawn() {
  local name=$1 port=$2 auth=()
  shift 2
  [[ -n ${SPAWN_PASS:-} ]] && auth=(--no-auth-warning -a "$SPAWN_PASS")
  mkdir -p "$TMP/$name"
  "$REDIS_SERVER" "$@" --port "$port" --bind 127.0.0.1 --dir "$TMP/$name" \
    --logfile "$TMP/$name/redis.log" --daemonize no --save "" --appendonly no &
  RPID[$name]=$!
  for _ in $(seq 500); do
    [[ $(timeout 2 redis-cli "${auth[@]}" -p "$port" PING 2>/dev/null) == PONG ]] && return 0
    kill -0 "${RPID[$name]}" 2>/dev/null || break
    sleep 0.02
  done
  tail -20 "$TMP/$name/redis.log" >&2
  fail "$name did not start on $port"
}
rc_() { timeout 5 redis-cli -p "$@" | tr -d '\r'; }
# until SECONDS WHAT CMD...: CMD succeeds within SECONDS (polled every 50 ms), or fail WHAT
until_() {
  local n=$(($1 * 20)) what=$2
  shift 2
  for _ in $(seq "$n"); do "$@" && return 0; sleep 0.05; done
  fail "$what"
}
log_has() { grep -qF -- "$2" "$TMP/node$1.log"; }

M=$(free_port) R=$(free_port) S=$(free_port) DEAD=$(free_port)
spawn master "$M" --repl-diskless-sync-delay 0
spawn replica "$R" --replicaof 127.0.0.1 "$M"
until_ 10 "the replica did not sync" eval '[[ $(rc_ "$R" INFO replication) == *master_link_status:up* ]]'
mkdir -p "$TMP/sentinel"
cat >"$TMP/sentinel/sentinel.conf" <<CONF
sentinel monitor m 127.0.0.1 $M 1
sentinel down-after-milliseconds m 1000
sentinel failover-timeout m 4000
CONF
# (redis-server's --port/--dir... after the config file apply to Sentinel too)
spawn sentinel "$S" "$TMP/sentinel/sentinel.conf" --sentinel
until_ 15 "the sentinel does not know the replica" \
  eval '[[ $(rc_ "$S" SENTINEL replicas m) == *"127.0.0.1:$R"* ]]'

# 1. two nodes through Sentinel share a room
start_node 1 "redis-sentinel://127.0.0.1:$S/m"
start_node 2 "redis-sentinel://127.0.0.1:$DEAD,127.0.0.1:$S/m"
wait_metric 1 cport_cluster_up 1
wait_metric 2 cport_cluster_up 1
for i in 1 2; do
  log_has "$i" "the master of 'm' is 127.0.0.1:$M" || fail "node $i does not name the master"
  log_has "$i" "command connection to redis master 'm' (127.0.0.1:$M) up" || fail "node $i: no up line"
done
log_has 2 "sentinel 127.0.0.1:$DEAD: cannot connect" || fail "node 2 did not say the first sentinel is down"
[[ $(metric_of 2 cport_cluster_sentinel_failures_total) -ge 2 ]] || fail "node 2: the down sentinel not counted"
python3 "$PY" failover "${NPORT[1]}" "${NPORT[2]}" sentinel "$TMP" >"$TMP/py.out" 2>&1 &
PYPID=$!
until_ 30 "the players did not share the room" test -e "$TMP/ready"

# 2. a forced failover: the replica becomes master; both nodes follow it
lookups0=$(metric_of 1 cport_cluster_sentinel_lookups_total)
# what the test checks is the failover of a replica that has every write (docs/cluster.md: what
# was not replicated is lost, undetected): the replica caught up with the master's offset first
moff=$(rc_ "$M" INFO replication | sed -n 's/^master_repl_offset:\([0-9]*\)/\1/p')
until_ 10 "the replica did not reach the master's offset $moff" \
  eval '(($(rc_ "$R" INFO replication | sed -n "s/^slave_repl_offset:\([0-9]*\)/\1/p") >= moff))'
[[ $(rc_ "$S" SENTINEL FAILOVER m) == OK ]] || fail "SENTINEL FAILOVER m"
until_ 20 "the sentinel did not name the replica" \
  eval '[[ $(rc_ "$S" SENTINEL get-master-addr-by-name m) == *"$R"* ]]'
until_ 20 "the replica is not master" eval '[[ $(rc_ "$R" ROLE) == master* ]]'
for i in 1 2; do
  until_ 20 "node $i did not name the new master" log_has "$i" "the master of 'm' is 127.0.0.1:$R (it was 127.0.0.1:$M"
  until_ 20 "node $i's command connection is not up on the new master" log_has "$i" "command connection to redis master 'm' (127.0.0.1:$R) up again"
  until_ 20 "node $i's subscriber connection is not up on the new master" log_has "$i" "subscriber connection to redis master 'm' (127.0.0.1:$R) up again"
  wait_metric "$i" cport_cluster_up 1
done
touch "$TMP/go"
wait "$PYPID" || { cat "$TMP/py.out" >&2; fail "chats across the failover"; }
cat "$TMP/py.out"
for i in 1 2; do
  [[ $(metric_of "$i" cport_cluster_master_changes_total) -ge 1 ]] || fail "node $i: no master change counted"
  [[ $(metric_of "$i" cport_cluster_sentinel_lookups_total) -ge 4 ]] || fail "node $i: sentinel lookups not counted"
done
((lookups0 >= 2)) || fail "node 1: $lookups0 sentinel lookups before the failover"

# 3. a master name the sentinel does not know: logged, ERR_UNAVAILABLE, the node serves
start_node 3 "redis-sentinel://127.0.0.1:$S/nosuch"
until_ 10 "node 3 did not log the unknown master" log_has 3 "sentinel 127.0.0.1:$S: knows no master named 'nosuch'"
python3 "$AUTHPY" refused "${NPORT[3]}" no-ids || fail "node 3 with an unknown master name"
[[ $(metric_of 3 cport_cluster_up) == 0 ]] || fail "node 3 is up"
[[ $(metric_of 3 cport_cluster_sentinel_failures_total) -ge 2 ]] || fail "node 3: failures not counted"

# 4. sentinels that misbehave: a silent one (1 s, then the next), one that answers no address,
#    one that names a server that is not a master (the real sentinel: ROLE says "sentinel")
for mode in silent garbage names; do
  python3 "$(dirname "$0")/fake_sentinel.py" "$TMP/fake_$mode" "$mode" 127.0.0.1 "$S" &
  RPID[fake_$mode]=$!
done
until_ 10 "the fake sentinels did not start" test -e "$TMP/fake_names" -a -e "$TMP/fake_silent" -a -e "$TMP/fake_garbage"
FS=$(<"$TMP/fake_silent") FG=$(<"$TMP/fake_garbage") FN=$(<"$TMP/fake_names")
start_node 4 "redis-sentinel://127.0.0.1:$FS,127.0.0.1:$FG,127.0.0.1:$FN/m"
until_ 15 "node 4 did not refuse the server that is not a master" \
  log_has 4 "is not the master of 'm' (ROLE: sentinel); asking Sentinel again with back-off"
log_has 4 "sentinel 127.0.0.1:$FS: no answer in 1000 ms; asking the next sentinel" || fail "node 4: the silent sentinel not logged"
log_has 4 "sentinel 127.0.0.1:$FG: an answer that is not ADDRESS PORT" || fail "node 4: the garbage answer not logged"
python3 "$AUTHPY" refused "${NPORT[4]}" no-ids || fail "node 4 with no master"
[[ $(metric_of 4 cport_cluster_not_master_total) -ge 1 ]] || fail "node 4: not_master not counted"
[[ $(metric_of 4 cport_cluster_up) == 0 ]] || fail "node 4 is up"

# 5. a sentinel with a password of its own (CPORT_SENTINEL_PASSWORD; the fake names the real
#    master): the right one - up, a room shared with node 1; a wrong one - logged, not up; the
#    password in no output
SPASS='sent:inel@pw'
python3 "$(dirname "$0")/fake_sentinel.py" "$TMP/fake_auth" names 127.0.0.1 "$R" "$SPASS" &
RPID[fake_auth]=$!
until_ 10 "the fake sentinel did not start" test -e "$TMP/fake_auth"
FA=$(<"$TMP/fake_auth")
start_node 5 "redis-sentinel://127.0.0.1:$FA/m" CPORT_SENTINEL_PASSWORD="$SPASS"
start_node 6 "redis-sentinel://127.0.0.1:$FA/m" CPORT_SENTINEL_PASSWORD=wrong-sentinel-pw
wait_metric 5 cport_cluster_up 1
python3 "$AUTHPY" share "${NPORT[5]}" "${NPORT[1]}" sentinel-auth || fail "node 5 (a sentinel's password) and node 1 share a room"
until_ 10 "node 6 did not log the refused sentinel password" \
  log_has 6 "sentinel 127.0.0.1:$FA: AUTH (CPORT_SENTINEL_PASSWORD) refused: WRONGPASS"
[[ $(metric_of 6 cport_cluster_up) == 0 ]] || fail "node 6 is up with a wrong sentinel password"
log_has 5 "sentinels with AUTH (CPORT_SENTINEL_PASSWORD)" || fail "node 5 does not say it uses AUTH"

# 6. a real sentinel with requirepass (monitoring the master of now): the right password - up;
#    a wrong one - WRONGPASS logged, not up. Then a sentinel that quotes the wrong password back
#    in its refusal: the log line has the refusal with *** where the password was.
S2=$(free_port) RSPASS='real-sentinel:pw@9' ECHOED='echoed-sentinel-pw'
mkdir -p "$TMP/sentinel2"
cat >"$TMP/sentinel2/sentinel.conf" <<CONF
sentinel monitor m 127.0.0.1 $R 1
requirepass "$RSPASS"
CONF
SPAWN_PASS=$RSPASS spawn sentinel2 "$S2" "$TMP/sentinel2/sentinel.conf" --sentinel
python3 "$(dirname "$0")/fake_sentinel.py" "$TMP/fake_echoes" echoes 127.0.0.1 "$R" "$SPASS" &
RPID[fake_echoes]=$!
until_ 10 "the echoing fake sentinel did not start" test -e "$TMP/fake_echoes"
FE=$(<"$TMP/fake_echoes")
start_node 7 "redis-sentinel://127.0.0.1:$S2/m" CPORT_SENTINEL_PASSWORD="$RSPASS"
start_node 8 "redis-sentinel://127.0.0.1:$S2/m" CPORT_SENTINEL_PASSWORD=wrong-real-sentinel-pw
start_node 9 "redis-sentinel://127.0.0.1:$FE/m" CPORT_SENTINEL_PASSWORD="$ECHOED"
wait_metric 7 cport_cluster_up 1
until_ 10 "node 8 did not log the refused password of a real sentinel" \
  log_has 8 "sentinel 127.0.0.1:$S2: AUTH (CPORT_SENTINEL_PASSWORD) refused: WRONGPASS"
until_ 10 "node 9 did not log the refusal that quotes its password, masked" \
  log_has 9 "sentinel 127.0.0.1:$FE: AUTH (CPORT_SENTINEL_PASSWORD) refused: WRONGPASS invalid username-password pair '***' (***)"
for i in 8 9; do
  [[ $(metric_of "$i" cport_cluster_up) == 0 ]] || fail "node $i is up with a wrong sentinel password"
done

for i in 1 2 3 4 5 6 7 8 9; do
  metrics_of "$i" >"$TMP/metrics$i.txt" || true
  ! grep -qF -e "$SPASS" -e wrong-sentinel-pw -e "$RSPASS" -e wrong-real-sentinel-pw -e "$ECHOED" \
    "$TMP/node$i.log" "$TMP/metrics$i.txt" || fail "node $i shows a sentinel password"
  kill -TERM "${NPID[$i]}"
  rc=0
  wait "${NPID[$i]}" || rc=$?
  unset "NPID[$i]"
  [[ $rc -eq 0 ]] || fail "node $i exited with $rc after SIGTERM"
  check_sanitizers "$TMP/node$i.log" "node $i"
done
echo "PASS"
