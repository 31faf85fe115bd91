# nodes_lib.sh - what the tests of cport-server nodes on a real redis-server
# share (tests/e2e/cluster_nodes.sh, tests/cluster/cluster_auth.sh). Source it
# with the test's arguments (BIN_DIR BACKEND): it sources tests/e2e/lib.sh and
# the Redis fixture, skips (77) a cport-server built without hiredis, and
# kills every node in NPID (and Redis) on exit.
#   node_ports I   node I's start line read from $TMP/nodeI.log, if it is
#                  there: NPORT[I], NMPORT[I] (false until it is)
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
