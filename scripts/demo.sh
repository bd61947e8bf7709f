#!/usr/bin/env bash
# make demo: `bosun init` a manifest repository under DATA_DIR/repo (once), then a director on
# the embedded default (its own Postgres under DATA_DIR, embedded NATS, the local CPI)
# reconciling it, shown healthy; the demo's instances' URLs are printed once they answer.
# Kept running until Ctrl-C, then stopped cleanly.
# BOSUN_LISTEN and BOSUN_NATS_LISTEN move it off the default ports. DEMO_EXIT=1 stops it
# once the instances answered (a check that the whole journey works). On the way out the
# local VMs' agents are stopped too: the next demo finds them down and the health monitor
# brings them back, as it would after a power cut.
set -euo pipefail
dir=${1:?usage: demo.sh DATA_DIR}
listen=${BOSUN_LISTEN:-127.0.0.1:25555}
nats=${BOSUN_NATS_LISTEN:-127.0.0.1:4222}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# GET /healthz with nothing but bash, so the demo needs no curl.
healthz() {
  local body
  exec 3<>"/dev/tcp/${listen%:*}/${listen##*:}" || return 1
  printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$listen" >&3
  body=$(sed '1,/^\r$/d' <&3)
  exec 3>&-
  printf '%s' "$body"
}
field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }

if (exec 3<>"/dev/tcp/${listen%:*}/${listen##*:}") 2>/dev/null; then
  echo "demo: something already listens on $listen (another director?); stop it or set BOSUN_LISTEN" >&2
  exit 1
fi

repo="$dir/repo"
if [ ! -e "$repo/.git" ]; then
  ./bin/bosun init "$repo"
fi

./bin/bosun director --dev --data-dir "$dir/data" --repo "$repo" --listen "$listen" --nats-listen "$nats" &
pid=$!
# Ctrl-C reaches the director too; either way it gets SIGTERM and stops in order.
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
finish() {
  local status=0
  wait "$pid" || status=$?
  # wait returns early when a trapped signal arrives: wait for the director's own exit.
  while kill -0 "$pid" 2>/dev/null; do status=0; wait "$pid" || status=$?; done
  stop_vms
  if [ "$status" = 0 ]; then
    echo "demo: director stopped cleanly, and its Postgres, NATS and local VMs with it"
  else
    echo "demo: director exited with status $status" >&2
  fi
  return "$status"
}

# stop_vms ends every local VM's session (its agent and the jobs it started).
stop_vms() {
  local f sid
  for f in "$dir"/data/cpi-local/vms/*/agent.pid; do
    [ -e "$f" ] || continue
    sid=$(cat "$f" 2>/dev/null) || continue
    pkill -TERM -s "$sid" 2>/dev/null || true
  done
}

deadline=$((SECONDS + 180))
until body=$(healthz 2>/dev/null) && [[ $body == *'"ok":true'* ]]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    finish || true
    echo "demo: the director did not start; its last line above says why" >&2
    exit 1
  fi
  if (( SECONDS > deadline )); then
    echo "demo: the director is not healthy after 180s: ${body:-no answer}" >&2
    kill -TERM "$pid"
    finish || true
    exit 1
  fi
  sleep 0.3
done

echo
echo "demo: director healthy at http://$listen/healthz"
echo "demo:   $body"
echo "demo: data (Postgres cluster, NATS secret) kept under $dir/data"
waiting=$(field waiting_for <<<"$body")
if [ -n "$waiting" ]; then echo "demo: waiting for $waiting"; fi
echo "demo: manifest repository $repo (edit, commit, watch: git -C $repo log bosun/status)"

# The instances' addresses, from the status branch once the demo converged.
instance_ips() {
  git -C "$repo" show bosun/status:deployments/demo.yml 2>/dev/null | sed -n 's/^ *- \(127\.[0-9.]*\)$/\1/p'
}
answer() {
  local out
  exec 4<>"/dev/tcp/$1/8080" || return 1
  printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&4
  out=$(sed '1,/^\r$/d' <&4)
  exec 4>&-
  printf '%s' "$out"
}
if command -v git >/dev/null; then
  echo "demo: converging the demo deployment (the first deploy compiles its Go package; allow a few minutes)"
  deadline=$((SECONDS + 600))
  while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do
    ips=$(instance_ips || true)
    if [ -n "$ips" ]; then
      all=1
      for ip in $ips; do answer "$ip" >/dev/null 2>&1 || all=0; done
      if [ "$all" = 1 ]; then
        for ip in $ips; do echo "demo: http://$ip:8080/ answers: $(answer "$ip" 2>/dev/null)"; done
        break
      fi
    fi
    sleep 1
  done
fi
if [ "${DEMO_EXIT:-}" = 1 ]; then
  kill -TERM "$pid"
else
  echo "demo: press Ctrl-C to stop it"
fi
finish
