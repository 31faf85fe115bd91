# nodes_lib.sh - what the tests of cport-server nodes on a real redis-server
# share (tests/e2e/cluster_nodes.sh, tests/cluster/cluster_auth.sh). Source it
# with the test's arguments (BIN_DIR BACKEND): it sources tests/e2e/lib.sh and
# the Redis fixture, skips (77) a cport-server built without hiredis, and
# kills every node in NPID (and Redis) on exit.
#   node_ports I   node I's start line read from $TMP/nodeI.log, if it is
#                  there: NPORT[I], NMPORT[I] (false until it is)
#   start_node I URL [env...]  node I with --cluster URL (cluster_nodes.sh has its own)
#   metrics_of I / metric_of I NAME / wait_metric I NAME VALUE  node I's /metrics
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh" "$@"
source "$(dirname "${BASH_SOURCE[0]}")/redis_fixture.sh"
"$BIN/cport-server" --help | grep -q -- --cluster || { echo "cport-server built without hiredis: skipped" >&2; exit 77; }
fail() {
  echo "FAIL: $*" >&2
  for f in "$TMP"/node*.log; do [[ -f $f ]] && tail -40 "$f" | sed "s|^|  $(basename "$f"): |" >&2; done
  exit 1
}
declare -A NPID NPORT NMPORT
trap 'for i in "${!NPID[@]}"; do kill -KILL "${NPID[$i]}" 2>/dev/null || true; done; redis_cleanup; cleanup' EXIT

node_ports() {
  local log=$TMP/node$1.log line
  # complete lines only: the start line may be half written when we look
  line=$(head -n "$(wc -l <"$log")" "$log" | grep -m1 " mode on " || true)
  NPORT[$1]=$(sed -n 's/.* mode on [^ ]*:\([0-9]*\),.*/\1/p' <<<"$line")
  NMPORT[$1]=$(sed -n 's/.*metrics [^ ]*:\([0-9]*\)$/\1/p' <<<"$line")
  [[ -n ${NPORT[$1]} && -n ${NMPORT[$1]} ]]
}

# start_node I URL [env...]: node I on free ports; waits for its start line (not for Redis).
start_node() {
  local i=$1 url=$2
  local log=$TMP/node$i.log
  shift 2
  : >"$log"
  env "$@" "$BIN/cport-server" --mode chat --port 0 --metrics 127.0.0.1:0 --quiet \
    --cluster "$url" --node-name "node$i" 2>"$log" &
  NPID[$i]=$!
  for _ in $(seq 400); do
    node_ports "$i" && return 0
    kill -0 "${NPID[$i]}" 2>/dev/null || { cat "$log" >&2; fail "node $i exited at start"; }
    sleep 0.05
  done
  fail "node $i did not start"
}
# metrics_of I: node I's /metrics (bash's /dev/tcp: no Python start per look).
metrics_of() {
  local fd
  exec {fd}<>"/dev/tcp/127.0.0.1/${NMPORT[$1]}" || return 1
  printf 'GET /metrics HTTP/1.0\r\n\r\n' >&"$fd"
  cat <&"$fd"
  exec {fd}>&-
}
metric_of() { { metrics_of "$1" 2>/dev/null || true; } | awk -v n="$2" '$1 == n { v = $2 } END { print v == "" ? "-" : v }'; }
# wait_metric I NAME VALUE: up to 15 s.
wait_metric() {
  for _ in $(seq 300); do
    [[ $(metric_of "$1" "$2") == "$3" ]] && return 0
    sleep 0.05
  done
  fail "node $1: $2 is $(metric_of "$1" "$2"), not $3"
}
