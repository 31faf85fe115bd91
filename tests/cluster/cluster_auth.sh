#!/usr/bin/env bash
# Nodes on a Redis with a password and an ACL user (issue 14, docs/cluster.md,
# "Redis with a password"), a real redis-server from the fixture:
#  0. bad --cluster URLs, a user without a password and a name that does not
#     resolve (under .invalid, RFC 6761): a clear message each, exit 2, the
#     password never printed;
#  1. requirepass (a password with ':', '@', '%' and a space, percent-encoded)
#     and an ACL user: two nodes with the password only (one in the URL with
#     127.0.0.1, one from CPORT_CLUSTER_PASSWORD with localhost) share a room,
#     and two with USER:PASSWORD (one with the password from the environment);
#  2. a wrong password, no password, a wrong ACL password: the cause logged,
#     cport_cluster_auth_failures_total counted, the node serves (ping), login
#     refused with ERR_UNAVAILABLE (no ids), the attempts on Redis's side
#     bounded over 3 s (back-off, not a tight loop);
#  2b. an ACL user without channels: its liveness SUBSCRIBE refused, logged, counted;
#  3. the password changed under a node that was up (CONFIG SET requirepass,
#     CLIENT KILL): WRONGPASS logged, S_ENTER_ROOM gets ERR_UNAVAILABLE, and
#     once the password is back the node is up again;
#  no password in any node's output or /metrics; every node exits 0 on SIGTERM.
# Usage: cluster_auth.sh BIN_DIR BACKEND
source "$(dirname "$0")/nodes_lib.sh" "$@"
PY=$(dirname "$0")/cluster_auth.py

PASS='pw:with@all%sorts of'          # requirepass
PASS_URL='pw%3Awith%40all%25sorts%20of' # the same, percent-encoded
UPASS='acl@pa:ss'                     # the ACL user's
UPASS_URL='acl%40pa%3Ass'
SECRETS=("$PASS" "$PASS_URL" "$UPASS" "$UPASS_URL" wrong-secret-42 "x@ss" "$(printf 'z%.0s' {1..300})"
  lonesecret-7 colonsecret-8)

# no_secret FILE WHAT: none of the passwords is in FILE.
no_secret() {
  [[ -s $1 ]] || fail "$2: nothing to check (empty)"
  for s in "${SECRETS[@]}"; do
    ! grep -qF -- "$s" "$1" || fail "$2 shows a password"
  done
}

# 0. bad URLs: exit 2, a clear message, no password shown
bad_url() { # bad_url URL EXPECTED [env...]
  local url=$1 want=$2 rc=0
  shift 2
  env "$@" "$BIN/cport-server" --mode chat --port 0 --metrics off --quiet --cluster "$url" \
    >"$TMP/bad.out" 2>&1 || rc=$?
  [[ $rc == 2 ]] || { cat "$TMP/bad.out" >&2; fail "--cluster '$url': exit $rc, not 2"; }
  grep -qF -- "$want" "$TMP/bad.out" || { cat "$TMP/bad.out" >&2; fail "--cluster '$url': no '$want'"; }
  check_sanitizers "$TMP/bad.out" "cport-server --cluster '$url'"
  no_secret "$TMP/bad.out" "the error for '$url'"
}
bad_url 'redis://:@' "an empty PASSWORD"
bad_url 'redis://lonesecret-7@127.0.0.1:6379' "USER needs a PASSWORD" # redis-cli's password form
bad_url 'redis://:colonsecret-8' "missing HOST"
bad_url 'redis://:x@ss@' "missing HOST"
bad_url 'redis://127.0.0.1' "missing :PORT"
bad_url 'redis://127.0.0.1:' "missing PORT"
bad_url 'redis://127.0.0.1:0' "PORT must be a number from 1 to 65535"
bad_url 'redis://127.0.0.1:70000' "PORT must be a number from 1 to 65535"
bad_url "redis://:$(printf 'z%.0s' {1..300})@127.0.0.1:6379" "PASSWORD is longer than 256 bytes"
bad_url 'rediss://:wrong-secret-42@127.0.0.1:6379' "TLS (rediss://) is not supported"
bad_url 'redis://:wrong-secret-42%4@127.0.0.1:6379' "must be followed by two hex digits"
bad_url 'redis://::1:6379' "an IPv6 address goes in brackets"
bad_url 'redis://127.0.0.1:6379/0' "nothing may follow HOST:PORT"
bad_url 'redis://cport@127.0.0.1:6379' "USER needs a PASSWORD"
bad_url 'redis://:wrong-secret-42@cport-test.invalid:6379' "cannot resolve 'cport-test.invalid'"
grep -qF 'redis://:***@cport-test.invalid:6379' "$TMP/bad.out" || fail "the URL is not shown with ***"

stop_node() {
  local i=$1 rc=0
  metrics_of "$i" >"$TMP/metrics$i.txt" || true
  kill -TERM "${NPID[$i]}"
  wait "${NPID[$i]}" || rc=$?
  unset "NPID[$i]"
  [[ $rc -eq 0 ]] || { cat "$TMP/node$i.log" >&2; fail "node $i exited with $rc after SIGTERM"; }
  check_sanitizers "$TMP/node$i.log" "node $i"
  no_secret "$TMP/node$i.log" "node $i's log"
  no_secret "$TMP/metrics$i.txt" "node $i's /metrics"
}
rcli() { redis_cli --no-auth-warning -a "$1" "${@:2}"; }
stat_of() { rcli "$PASS" INFO "$1" | tr -d '\r' | sed -n "s/^$2:\(.*\)/\1/p"; }

# 1. requirepass and an ACL user: nodes with the right credentials share rooms
redis_start --pass "$PASS"
[[ $(rcli "$PASS" ACL SETUSER cport on ">$UPASS" '~*' '&*' '+@all') == OK ]] || fail "ACL SETUSER"
R=$REDIS_PORT
start_node 1 "redis://:$PASS_URL@127.0.0.1:$R"
start_node 2 "redis://localhost:$R" CPORT_CLUSTER_PASSWORD="$PASS"
start_node 3 "redis://cport:$UPASS_URL@localhost:$R"
start_node 4 "redis://cport@127.0.0.1:$R" CPORT_CLUSTER_PASSWORD="$UPASS"
# 2. refused: wrong password, none, a wrong ACL password (started now: counted over 3 s below)
conns0=$(stat_of stats total_connections_received)
t0=$(date +%s%N)
start_node 5 "redis://:wrong-secret-42@127.0.0.1:$R"
start_node 6 "redis://127.0.0.1:$R"
start_node 7 "redis://cport:x%40ss@localhost:$R"
for i in 1 2 3 4; do wait_metric "$i" cport_cluster_up 1; done
python3 "$PY" share "${NPORT[1]}" "${NPORT[2]}" password || fail "password only: two nodes share a room"
python3 "$PY" share "${NPORT[3]}" "${NPORT[4]}" acl || fail "ACL user: two nodes share a room"
python3 "$PY" share "${NPORT[4]}" "${NPORT[1]}" mixed || fail "an ACL node and a password node share a room"
grep -q "AUTH; ACL user, password from CPORT_CLUSTER_PASSWORD" "$TMP/node4.log" || fail "node 4 does not say where its password came from"
for i in 5 6 7; do python3 "$PY" refused "${NPORT[$i]}" no-ids || fail "node $i while Redis refuses it"; done
while (($(date +%s%N) - t0 < 3000000000)); do sleep 0.1; done
conns=$(($(stat_of stats total_connections_received) - conns0))
auths=$(rcli "$PASS" INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_auth:calls=\([0-9]*\),.*/\1/p')
# back-off 100 ms doubling: about 5 connects per link in 3 s (6 links); a tight loop makes thousands
echo "refused nodes: $conns connections, AUTH calls in all $auths, over 3 s"
((conns >= 12 && conns <= 60)) || fail "$conns connections in 3 s from three refused nodes: not a bounded back-off"
grep -q "authentication refused (attempt 1): WRONGPASS" "$TMP/node5.log" || fail "node 5 did not log WRONGPASS"
grep -q "authentication refused (attempt 1): NOAUTH.*requires a password" "$TMP/node6.log" || fail "node 6 did not log NOAUTH"
grep -q "authentication refused (attempt 1): WRONGPASS" "$TMP/node7.log" || fail "node 7 did not log WRONGPASS"
for i in 5 6 7; do
  n=$(metric_of "$i" cport_cluster_auth_failures_total)
  ((n >= 4 && n <= 30)) || fail "node $i: cport_cluster_auth_failures_total $n after 3 s (both links retried, bounded)"
  [[ $(metric_of "$i" cport_cluster_up) == 0 ]] || fail "node $i: up with a refused AUTH"
  stop_node "$i"
done
for i in 1 2 3 4; do [[ $(metric_of "$i" cport_cluster_auth_failures_total) == 0 ]] || fail "node $i: auth failures"; done

# 2b. an ACL user without channels (Redis 7's acl-pubsub-default): its liveness SUBSCRIBE is
#     refused - logged with Redis's text and the hint, counted, never taken for up
[[ $(rcli "$PASS" ACL SETUSER nochan on ">$UPASS" '~*' resetchannels '+@all') == OK ]] || fail "ACL SETUSER nochan"
start_node 8 "redis://nochan:$UPASS_URL@127.0.0.1:$R"
for _ in $(seq 400); do grep -q "liveness channel: NOPERM" "$TMP/node8.log" && break; sleep 0.05; done
grep -q "liveness channel: NOPERM.*an ACL user needs the channels cport:\*" "$TMP/node8.log" ||
  { cat "$TMP/node8.log" >&2; fail "node 8: a refused liveness SUBSCRIBE was not logged"; }
(($(metric_of 8 cport_cluster_redis_errors_total) >= 1)) || fail "node 8: the refused SUBSCRIBE was not counted"
stop_node 8

# 3. the password changed under node 1 (and 2): refused on reconnect, ERR_UNAVAILABLE; back once restored
rcli "$PASS" CONFIG SET requirepass "x@ss" >/dev/null
rcli "x@ss" CLIENT KILL TYPE normal >/dev/null
rcli "x@ss" CLIENT KILL TYPE pubsub >/dev/null
wait_metric 1 cport_cluster_up 0
for _ in $(seq 300); do grep -q "WRONGPASS" "$TMP/node1.log" && break; sleep 0.05; done
grep -q "authentication refused (attempt 1): WRONGPASS" "$TMP/node1.log" || fail "node 1: no WRONGPASS after the password changed"
python3 "$PY" refused "${NPORT[1]}" logged-in || fail "node 1 while its password is refused"
rcli "x@ss" CONFIG SET requirepass "$PASS" >/dev/null
wait_metric 1 cport_cluster_up 1
wait_metric 2 cport_cluster_up 1
wait_metric 3 cport_cluster_up 1
python3 "$PY" share "${NPORT[1]}" "${NPORT[3]}" again || fail "node 1 after the password came back"
for i in 1 2 3 4; do stop_node "$i"; done
echo "PASS"
