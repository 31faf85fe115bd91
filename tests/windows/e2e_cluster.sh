#!/usr/bin/env bash
# e2e_cluster.sh WIN_BIN LINUX_BIN - a Windows node and a Linux node share rooms (issue 14 item
# 4b, docs/cluster.md): a LINUX redis-server (tests/cluster/redis_fixture.sh: a free loopback
# port, a temporary directory, no persistence), cport-server.exe --cluster under Wine (IOCP) and
# the Linux cport-server --cluster on it, then
#   1. the LINUX cport-dummy --servers WIN,LINUX: its clients round-robin over both nodes, every
#      room spanning them: errors 0 (each chat once to each member, one order per room across
#      the nodes, every member counting every other: presence), every client connected;
#   2. both nodes' /metrics: cluster publishes and deliveries > 0, both Redis connections up;
#   3. tests/windows/win_cluster.py: players on both nodes in one byte-string room (member lists
#      and counts across the nodes, one chat order); then the console's Ctrl+C to the Windows
#      node (SIGINT to the Wine process, as tests/windows/e2e_chat.sh): it drains, its players
#      leave over Redis (the Linux node's players get S_MEMBER_LEFT of each), it exits 0;
#   4. SIGTERM to the Linux node (exit 0), Redis stopped.
# The Wine prefix is the build tree's; the caller stops the wineserver (fixture wine).
set -uo pipefail
WBIN=${1:?windows bin dir}
LBIN=${2:?linux bin dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TMP=$(mktemp -d)
# shellcheck source=tests/cluster/redis_fixture.sh
. "$ROOT/tests/cluster/redis_fixture.sh" # its EXIT trap stops Redis and removes $TMP
declare -A NPID NPORT NMPORT
PYPID=
trap '[[ -n $PYPID ]] && kill -KILL $PYPID 2>/dev/null
      for i in "${!NPID[@]}"; do kill -KILL "${NPID[$i]}" 2>/dev/null || true; done
      redis_cleanup; rm -rf "$TMP"' EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$TMP"/*.log; do [[ -f $f ]] && tail -30 "$f" | sed "s|^|  $(basename "$f"): |" >&2; done
  exit 1
}
[[ -x $LBIN/cport-server && -x $LBIN/cport-dummy ]] || fail "no Linux programs in $LBIN (make build)"
[[ -f $WBIN/cport-server.exe ]] || fail "no cport-server.exe in $WBIN (make windows)"
"$LBIN/cport-server" --help | grep -q -- --cluster ||
  { echo "the Linux cport-server was built without hiredis: skipped" >&2; exit 77; }

metric_of() { # metric_of NODE NAME: its value as an integer, or -
  python3 -c "import sys; sys.path.insert(0, '$ROOT/tests/e2e'); from wire2 import metric; print(int(metric(int(sys.argv[1]), sys.argv[2])))" \
    "${NMPORT[$1]}" "$2" 2>/dev/null || echo -
}

# start_node win|linux: --cluster on our Redis; waits for its ports and both Redis connections.
start_node() {
  local n=$1 log=$TMP/$1.log prog=("$LBIN/cport-server")
  [[ $n == win ]] && prog=("$ROOT/scripts/wine-run" "$WBIN/cport-server.exe")
  : >"$log"
  "${prog[@]}" --mode chat --port 0 --metrics 127.0.0.1:0 --threads 2 --quiet \
    --cluster "redis://127.0.0.1:$REDIS_PORT" --node-name "$n" 2>"$log" &
  NPID[$n]=$!
  for _ in $(seq 1200); do
    local line
    line=$(head -n "$(wc -l <"$log")" "$log" | tr -d '\r' | grep -m1 " mode on " || true)
    NPORT[$n]=$(sed -n 's/.* mode on [^ ]*:\([0-9]*\),.*/\1/p' <<<"$line")
    NMPORT[$n]=$(sed -n 's/.*metrics [^ ]*:\([0-9]*\)$/\1/p' <<<"$line")
    [[ -n ${NPORT[$n]} && -n ${NMPORT[$n]} && $(metric_of "$n" cport_cluster_up) == 1 ]] && return 0
    kill -0 "${NPID[$n]}" 2>/dev/null || fail "the $n node exited at start"
    sleep 0.05
  done
  fail "the $n node did not start (or reach Redis)"
}

# stop_node win|linux: Ctrl+C under Wine (SIGINT to the Wine process, the runner's child),
# SIGTERM on Linux; exit 0 after leaving every room and draining.
stop_node() {
  local n=$1 pid=${NPID[$1]} sig=TERM rc=0
  if [[ $n == win ]]; then
    pid=$(pgrep -P "${NPID[$n]}" | head -1) sig=INT
    [[ -n $pid ]] || fail "no Wine process under the runner"
  fi
  kill -$sig "$pid"
  wait "${NPID[$n]}" || rc=$?
  unset "NPID[$n]"
  [[ $rc -eq 0 ]] || fail "the $n node exited with $rc after SIG$sig"
  grep -q "cluster: leaving every room" "$TMP/$n.log" || fail "the $n node did not leave its rooms"
  grep -q "final:" "$TMP/$n.log" || fail "the $n node printed no final counters"
}

t0=$SECONDS
redis_start
start_node win
start_node linux
echo "e2e_cluster: nodes up: windows :${NPORT[win]}, linux :${NPORT[linux]}, redis :$REDIS_PORT"

# 1. cport-dummy over both nodes
"$LBIN/cport-dummy" --mode chat --servers "127.0.0.1:${NPORT[win]},127.0.0.1:${NPORT[linux]}" \
  --clients 40 --room-size 10 --rate 5 --duration 3 --ping-interval 500 --threads 2 --quiet \
  --json >"$TMP/dummy.json" 2>"$TMP/dummy.log" || fail "cport-dummy --servers failed: $(cat "$TMP/dummy.json")"
python3 - "$TMP/dummy.json" <<'PY' || fail "cport-dummy --servers: $(cat "$TMP/dummy.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["errors"] == 0 and r["connected"] == r["clients"] == 40, r
# deliveries still in flight when the measured window closed arrive after it (errors counts any
# that never did, or came twice, or out of the room's one order)
assert r["sent"] > 0 and 0 < r["messages"] <= r["sent"] * r["room_size"], r
print("e2e_cluster: cport-dummy: %d clients over both nodes, %d chats, %d deliveries, errors 0"
      % (r["clients"], r["sent"], r["messages"]))
PY

# 2. both nodes published and delivered through Redis
for n in win linux; do
  for m in publishes deliveries; do
    v=$(metric_of "$n" "cport_cluster_${m}_total")
    [[ $v =~ ^[0-9]+$ && $v -gt 0 ]] || fail "the $n node: cport_cluster_${m}_total is $v"
  done
  [[ $(metric_of "$n" cport_cluster_gap_lost_total) == 0 ]] || fail "the $n node lost events"
  echo "e2e_cluster: $n node: $(metric_of "$n" cport_cluster_publishes_total) published," \
    "$(metric_of "$n" cport_cluster_deliveries_total) delivered"
done

# 3. players on both nodes; Ctrl+C the Windows node: its players leave the Linux node's room
mkfifo "$TMP/go"
python3 "$HERE/win_cluster.py" "${NPORT[win]}" "${NPORT[linux]}" <"$TMP/go" >"$TMP/py.out" 2>&1 &
PYPID=$!
exec 3>"$TMP/go" # the helper's stdin: "go" once the Windows node is stopped
for _ in $(seq 1200); do
  grep -q READY "$TMP/py.out" && break
  kill -0 $PYPID 2>/dev/null || break
  sleep 0.05
done
grep -q READY "$TMP/py.out" || { exec 3>&-; fail "win_cluster.py: $(cat "$TMP/py.out")"; }
stop_node win
echo go >&3
exec 3>&-
rc=0
wait $PYPID || rc=$?
PYPID=
[[ $rc -eq 0 ]] || fail "the Windows node's players leaving, seen from the Linux node: $(cat "$TMP/py.out")"
grep -v READY "$TMP/py.out"
grep -q draining "$TMP/win.log" || fail "the Windows node did not drain"

# 4. the rest
stop_node linux
redis_stop
echo "e2e_cluster: PASS in $((SECONDS - t0)) s"
