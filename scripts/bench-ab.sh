#!/usr/bin/env bash
# make bench-ab: egret's per-connection cost at two revisions, in
# alternating rounds on one machine: direct, then BASE, then HEAD (each a
# fresh egret), ROUNDS times; and HEAD's HTTPS proxy listener (an
# https:// proxy, one TLS handshake to egret per connection) beside its
# plain one. Prints one table per round; the reports stay in the
# directory it names.
#
# egret is started as bench-peers.sh starts it (decision log to a file,
# metrics on), pinned to CPU 0 under a 20,000-descriptor limit; the load
# tool is pinned to CPU 1. Only loopback is dialled.
#
# Knobs: BASE (a git revision, default HEAD~1), HEAD_REV (default: the
# working tree), ROUNDS (3), BENCH_DURATION (3s), BENCH_SCENARIOS
# (connect,deny,http,tls1).
set -euo pipefail
cd "$(dirname "$0")/.."

base=${BASE:-HEAD~1}
rounds=${ROUNDS:-3}
duration=${BENCH_DURATION:-3s}
scenarios=${BENCH_SCENARIOS:-connect,deny,http,tls1}
up_base=19300 egret_port=19400 egret_admin=19401 egret_tls=19402
proxy_cpu=0 tool_cpu=1

if [ "$(nproc)" -lt 2 ]; then
  echo "bench-ab: needs 2 CPUs (egret on CPU $proxy_cpu, load tool on CPU $tool_cpu)" >&2
  exit 1
fi
tmp=$(mktemp -d /tmp/egret-bench-ab.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  git worktree remove --force "$tmp/base-src" 2>/dev/null || true
  echo "bench-ab: reports and logs kept in $tmp" >&2
}
trap cleanup EXIT

git worktree add --detach "$tmp/base-src" "$base" >/dev/null 2>&1
(cd "$tmp/base-src" && CGO_ENABLED=0 go build -trimpath -o "$tmp/egret-base" ./cmd/egret)
CGO_ENABLED=0 go build -trimpath -o "$tmp/egret-head" ./cmd/egret
CGO_ENABLED=0 go build -trimpath -o "$tmp/egret-bench" ./cmd/egret-bench
echo "bench-ab: base $(git rev-parse --short "$base"), head $(git rev-parse --short HEAD)$(git diff --quiet || echo ' + working tree')" >&2

ports=$(seq -s, $up_base $((up_base + 4)))
mkdir -p "$tmp/allowlists"
cat >"$tmp/allowlists/bench.yaml" <<EOT
product: bench
title: egret-bench upstreams
source: scripts/bench-ab.sh
proxy:
  - {host: bench.example, ports: [${ports//,/, }], purpose: the load tool's loopback upstreams}
EOT
# The HTTPS listener's certificate, for 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-ca \
  -keyout "$tmp/ca-key.pem" -out "$tmp/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=egret \
  -keyout "$tmp/egret-key.pem" -out "$tmp/egret.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$tmp/san.ext"
openssl x509 -req -in "$tmp/egret.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca-key.pem" -CAcreateserial -days 1 \
  -extfile "$tmp/san.ext" -out "$tmp/egret.pem" 2>/dev/null

egret_args=(serve --admin 127.0.0.1:$egret_admin --allowlists "$tmp/allowlists" --product bench
  --resolve bench.example=127.0.0.1 --allow-range 127.0.0.0/8 --max-conns 20000 --listen 127.0.0.1:$egret_port)

wait_ready() {
  for _ in $(seq 100); do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$egret_admin/readyz"; then return 0; fi
    sleep 0.1
  done
  echo "bench-ab: egret did not become ready" >&2
  return 1
}

# run TARGET BINARY PROXY-URL [EGRET ARGS...]
run() {
  local target=$1 bin=$2 url=$3
  shift 3
  prlimit --nofile=20000:20000 taskset -c $proxy_cpu "$bin" "${egret_args[@]}" \
    --decision-log "$tmp/$target-decisions.log" "$@" 2>"$tmp/$target.stderr" &
  local pid=$!
  pids+=("$pid")
  wait_ready
  echo "bench-ab: $target (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  timeout 300 taskset -c $tool_cpu "$tmp/egret-bench" run --target "$target" --proxy "$url" --proxy-ca "$tmp/ca.pem" \
    --proxy-pid "$pid" --duration "$duration" --scenarios "$scenarios" --upstream-port-base $up_base \
    -o "$tmp/$target.json"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

for r in $(seq "$rounds"); do
  echo "bench-ab: round $r (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  timeout 300 taskset -c $tool_cpu "$tmp/egret-bench" run --target "direct-$r" --proxy direct --duration "$duration" \
    --scenarios "$scenarios" --upstream-port-base $up_base -o "$tmp/direct-$r.json"
  run "base-$r" "$tmp/egret-base" "http://127.0.0.1:$egret_port"
  run "head-$r" "$tmp/egret-head" "http://127.0.0.1:$egret_port"
  run "head-https-$r" "$tmp/egret-head" "https://127.0.0.1:$egret_tls" \
    --listen-tls 127.0.0.1:$egret_tls --tls-cert "$tmp/egret.pem" --tls-key "$tmp/egret-key.pem"
  "$tmp/egret-bench" table "$tmp/direct-$r.json" "$tmp/base-$r.json" "$tmp/head-$r.json" "$tmp/head-https-$r.json"
done
