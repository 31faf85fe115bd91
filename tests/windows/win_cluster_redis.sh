#!/usr/bin/env bash
# win_cluster_redis.sh EXE - a LINUX redis-server (tests/cluster/redis_fixture.sh: a free
# loopback port, no persistence, stopped at exit) and the Windows test EXE under Wine against
# it (tests/windows/win_cluster_redis.c). Exits 77 (skip) without redis-server.
set -uo pipefail
EXE=${1:?win_cluster_redis.exe}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/cluster/redis_fixture.sh
. "$ROOT/tests/cluster/redis_fixture.sh"
redis_start
"$ROOT/scripts/wine-run" "$EXE" "$REDIS_PORT"
