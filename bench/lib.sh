# bench/lib.sh - process and port helpers the bench/run-* scripts share (sourced).
# The caller defines log().

stop_pid() { # pid: SIGTERM, then SIGKILL after 3 s; only a child of this script
  local pid=$1 i
  [[ $(ps -o ppid= -p "$pid" 2>/dev/null | tr -d ' ') == "$$" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
port_listening() { # port: is something listening on it (IPv4 or IPv6)?
  local hex
  printf -v hex '%04X' "$1"
  awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
pick_port() { # a port nobody listens on, below the ephemeral range
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    port_listening "$p" || {
      echo "$p"
      return 0
    }
  done
  return 1
}
wait_listening() { # pid port seconds: until the port listens, or the process died
  local pid=$1 port=$2 i n=$(($3 * 10))
  for ((i = 0; i < n; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    port_listening "$port" && return 0
    sleep 0.1
  done
  return 1
}


# Stop every pid in ALL_PIDS when the script ends or is interrupted. Call once, after log().
track_children() {
  ALL_PIDS=()
  # shellcheck disable=SC2317 # called by the trap
  cleanup() {
    local pid
    for pid in "${ALL_PIDS[@]}"; do stop_pid "$pid"; done
  }
  trap cleanup EXIT
  trap 'log "interrupted"; exit 130' INT TERM
}

jget() { # file key -> value of a top-level numeric key of a one-line JSON object
  sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1"
}

median() { # numbers on stdin, separated by spaces or newlines -> their median
  tr ' ' '\n' | { grep . || true; } | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'
}
