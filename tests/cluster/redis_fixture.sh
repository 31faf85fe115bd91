# redis_fixture.sh - a real redis-server for shell tests (the cluster e2e tests
# to come). Source it; it needs $TMP (a directory the test removes) or makes one.
#   redis_start [--aof] [--pass PASS]  start on a free 127.0.0.1 port: sets REDIS_PORT;
#                                      no persistence, or appendonly yes + appendfsync always
#   redis_stop                         SIGTERM, wait (SIGKILL after 10 s)
#   redis_restart [--kill9]            stop (or SIGKILL) and start again on the same port/dir
#   redis_cli ARGS...                  redis-cli against it
# The EXIT trap stops it whatever happens (chain your own cleanup through
# redis_cleanup). Exits 77 (skip) without redis-server.
REDIS_SERVER=${CPORT_REDIS_SERVER:-/usr/bin/redis-server}
REDIS_PID=
REDIS_PORT=
REDIS_ARGS=()
: "${TMP:=$(mktemp -d)}"
REDIS_DIR=$TMP/redis

redis_cleanup() {
  if [[ -n $REDIS_PID ]]; then
    kill -KILL "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
  fi
}
trap 'redis_cleanup; rm -rf "$TMP"' EXIT

redis_cli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

redis_spawn() {
  "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" \
    --logfile "$REDIS_DIR/redis.log" --daemonize no --save "" "${REDIS_ARGS[@]}" &
  REDIS_PID=$!
  local reply
  for _ in $(seq 500); do
    kill -0 "$REDIS_PID" 2>/dev/null || { wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=; return 1; }
    # bounded: if our server failed to bind, another process may hold the port
    reply=$(timeout 2 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" PING 2>/dev/null || true)
    [[ $reply == PONG || $reply == NOAUTH* ]] && return 0
    sleep 0.02
  done
  redis_cleanup
  return 1
}

redis_start() {
  [[ -x $REDIS_SERVER ]] || { echo "redis-server not found (scripts/setup): skipped" >&2; exit 77; }
  REDIS_ARGS=(--appendonly no)
  while [[ $# -gt 0 ]]; do
    case $1 in
      --aof) REDIS_ARGS=(--appendonly yes --appendfsync always); shift ;;
      --pass) REDIS_ARGS+=(--requirepass "$2"); shift 2 ;;
      *) echo "redis_start: unknown option $1" >&2; return 2 ;;
    esac
  done
  mkdir -p "$REDIS_DIR"
  for _ in 1 2 3 4 5; do
    REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis_spawn && return 0
  done
  echo "redis-server did not start:" >&2
  tail -20 "$REDIS_DIR/redis.log" >&2 || true
  exit 1
}

redis_stop() {
  [[ -n $REDIS_PID ]] || return 0
  kill -TERM "$REDIS_PID" 2>/dev/null || true
  for _ in $(seq 500); do
    kill -0 "$REDIS_PID" 2>/dev/null || break
    sleep 0.02
  done
  redis_cleanup
}

redis_restart() {
  if [[ ${1:-} == --kill9 ]]; then redis_cleanup; else redis_stop; fi
  for _ in $(seq 50); do
    redis_spawn && return 0
    sleep 0.1
  done
  echo "redis-server did not restart on port $REDIS_PORT" >&2
  exit 1
}
