#!/usr/bin/env bash
# Starts a throwaway etcd for manual use and benchmarks: one member on free loopback ports,
# its data in a fresh temporary directory. Once etcd answers /health, prints one line on stdout,
#
#   ETCD_ENDPOINT=127.0.0.1:PORT
#
# then runs until SIGINT/SIGTERM (or until etcd dies), and on the way out stops etcd and removes
# the directory. Every run is independent: run it twice, get two etcds.
#
#   hack/start-etcd.sh                          # Ctrl-C to stop
#   hack/start-etcd.sh > etcd.env & pid=$!      # then wait for etcd.env, `kill $pid` when done
#
# (A job started with `&` by a script ignores SIGINT, as shells do: stop it with SIGTERM.)
#
# Environment (not ETCD_*: etcd itself reads those):
#   PACER_ETCD_PORT   client port to use instead of a free one
#   PACER_ETCD_BIN    etcd binary (default: /usr/bin/etcd, else etcd on PATH)
#   PACER_ETCD_WAIT   seconds to wait for etcd to become healthy (default 30)
#
# etcd runs with the flags the testkit uses: --max-txn-ops 128, --max-request-bytes 2097152
# (the store's own limit is 1.5 MiB of payload; etcd counts protobuf overhead), error-level
# logs (kept in the data directory, shown if etcd fails), and a 10 ms heartbeat / 100 ms
# election timeout so that the single member starts at once and 1 s lease TTLs are honoured.
set -euo pipefail

say() { echo "start-etcd: $*" >&2; }
die() {
  say "$*"
  exit 1
}

etcd_bin=${PACER_ETCD_BIN:-}
if [[ -z $etcd_bin ]]; then
  if [[ -x /usr/bin/etcd ]]; then
    etcd_bin=/usr/bin/etcd
  else
    etcd_bin=$(command -v etcd || true)
  fi
fi
[[ -n $etcd_bin && -x $etcd_bin ]] || die "etcd not found: run hack/install-deps.sh"
wait_seconds=${PACER_ETCD_WAIT:-30}
[[ $wait_seconds =~ ^[0-9]+$ ]] || die "PACER_ETCD_WAIT must be a number of seconds, not '$wait_seconds'"

data_dir=$(mktemp -d "${TMPDIR:-/tmp}/pacer-etcd.XXXXXX")
log="$data_dir/etcd.log"
etcd_pid=

# shellcheck disable=SC2317 # only ever called by the traps below
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n $etcd_pid ]] && kill -0 "$etcd_pid" 2>/dev/null; then
    kill -TERM "$etcd_pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$etcd_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$etcd_pid" 2>/dev/null || true
  fi
  if [[ -n $etcd_pid ]]; then
    wait "$etcd_pid" 2>/dev/null || true
  fi
  rm -rf -- "$data_dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Whether something accepts connections on 127.0.0.1:$1.
listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A port in 20000-60999 that nothing listens on (etcd may still lose a race for it: retried).
free_port() {
  local port
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 41000))
    if ! listening "$port"; then
      echo "$port"
      return 0
    fi
  done
  die "found no free loopback port"
}

# Whether etcd on 127.0.0.1:$1 answers GET /health with "health":"true".
healthy() {
  local response
  response=$(
    exec 2>/dev/null
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    timeout 2 cat <&3
  ) || return 1
  [[ $response == *'"health":"true"'* ]]
}

# Starts etcd on client port $1 and peer port $2; returns non-zero if it died while starting.
start_etcd() {
  local client_url="http://127.0.0.1:$1" peer_url="http://127.0.0.1:$2"
  local name="pacer-etcd-$$" deadline=$((SECONDS + wait_seconds))
  # etcd reads ETCD_* variables as flags, and refuses ones that shadow a flag.
  local unset_etcd_vars=()
  while IFS= read -r variable; do
    unset_etcd_vars+=(-u "$variable")
  done < <(compgen -e | grep '^ETCD_' || true)
  env "${unset_etcd_vars[@]}" "$etcd_bin" \
    --name "$name" \
    --data-dir "$data_dir/data" \
    --listen-client-urls "$client_url" --advertise-client-urls "$client_url" \
    --listen-peer-urls "$peer_url" --initial-advertise-peer-urls "$peer_url" \
    --initial-cluster "$name=$peer_url" --initial-cluster-state new \
    --initial-cluster-token "$name" \
    --max-txn-ops 128 --max-request-bytes 2097152 \
    --heartbeat-interval 10 --election-timeout 100 \
    --logger zap --log-outputs stderr --log-level error \
    </dev/null >/dev/null 2>>"$log" &
  etcd_pid=$!
  until healthy "$1"; do
    if ! kill -0 "$etcd_pid" 2>/dev/null; then
      wait "$etcd_pid" 2>/dev/null || true
      etcd_pid=
      return 1
    fi
    if ((SECONDS >= deadline)); then
      say "etcd was not healthy after ${wait_seconds}s; its log:"
      cat "$log" >&2
      exit 1
    fi
    sleep 0.05
  done
}

started=
for _ in $(seq 5); do
  client_port=${PACER_ETCD_PORT:-$(free_port)}
  peer_port=$(free_port)
  while [[ $peer_port == "$client_port" ]]; do peer_port=$(free_port); done
  if [[ -n ${PACER_ETCD_PORT:-} ]] && listening "$client_port"; then
    die "port $client_port (PACER_ETCD_PORT) is already in use"
  fi
  if start_etcd "$client_port" "$peer_port"; then
    started=1
    break
  fi
  grep -q "address already in use" "$log" || break
  say "a port was taken meanwhile; trying others"
  : >"$log"
done
if [[ -z $started ]]; then
  say "etcd failed to start; its log:"
  cat "$log" >&2
  exit 1
fi

echo "ETCD_ENDPOINT=127.0.0.1:$client_port"
version=$("$etcd_bin" --version 2>/dev/null | awk 'NR == 1 { print $3 }') || version=unknown
say "etcd $version is up (pid $etcd_pid, data in $data_dir); Ctrl-C or SIGTERM stops it"

# `wait` returns early when a trapped signal arrives; the trap then exits through cleanup.
status=0
wait "$etcd_pid" || status=$?
etcd_pid=
say "etcd exited by itself (status $status); its log:"
cat "$log" >&2
exit 1
