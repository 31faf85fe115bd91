#!/usr/bin/env bash
# SIGTERM with traffic in flight: the server drains and exits 0, and (in the
# sanitizer builds) reports no leak and no error.
source "$(dirname "$0")/lib.sh" "$@"

for mode in echo chat; do
  start_server "$mode"
  if [[ $mode == echo ]]; then args=(--mode echo --depth 8 --size 1000); else args=(--mode chat --rate 50); fi
  "$BIN/cport-dummy" --port "$PORT" --quiet --clients 100 --duration 30 "${args[@]}" \
    >/dev/null 2>"$TMP/dummy.err" &
  dummy=$!
  sleep 1.5
  stop_server
  kill -TERM $dummy 2>/dev/null || true
  wait $dummy || true   # its connections were cut: it may well report errors
  check_sanitizers "$TMP/dummy.err" cport-dummy
done
echo "PASS"
