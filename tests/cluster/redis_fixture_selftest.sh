#!/usr/bin/env bash
# The shell redis fixture: starts, answers, loses its data on a restart
# without persistence, keeps it with appendonly + appendfsync always, and is
# gone after the test (the EXIT trap).
set -euo pipefail
TMP=$(mktemp -d)
source "$(dirname "$0")/redis_fixture.sh"
fail() { echo "FAIL: $*" >&2; exit 1; }

redis_start
[[ $(redis_cli SET k v) == OK ]] || fail "SET"
redis_restart
[[ -z $(redis_cli GET k) ]] || fail "the data survived a restart without persistence"
redis_stop
redis_start --aof
[[ $(redis_cli SET k v) == OK ]] || fail "SET (aof)"
redis_restart --kill9
[[ $(redis_cli GET k) == v ]] || fail "appendfsync always lost a write to kill -9"
pid=$REDIS_PID
redis_stop
kill -0 "$pid" 2>/dev/null && fail "redis-server still running after redis_stop"
redis_start --pass s3cret
[[ $(redis_cli PING 2>&1) == NOAUTH* ]] || fail "no NOAUTH without the password"
echo ok
