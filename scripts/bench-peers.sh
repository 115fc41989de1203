#!/usr/bin/env bash
# make bench-peers: run egret-bench's scenarios against egret (explicit and
# transparent), Squid, tinyproxy, the bare splice relay and a direct
# connection, in one run, and write the comparison into docs/BENCHMARKS.md.
#
# Needs root (Debian packages, network namespaces, iptables, raising the
# descriptor limit). Every proxy is pinned to CPU 0 and runs under a
# 20,000-descriptor limit; the load tool is pinned to CPU 1. Every address
# used is loopback or inside the two namespaces this script creates.
#
# Knobs (environment): BENCH_DURATION (each timed scenario, default 3s),
# BENCH_IDLE (idle tunnels, default 5000), BENCH_TARGETS (default: all),
# BENCH_CONDITIONS (a line on the run's conditions for the doc),
# BENCH_DOC (default docs/BENCHMARKS.md; "" prints the table only).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${BENCH_DURATION:-3s}
idle=${BENCH_IDLE:-5000}
targets=${BENCH_TARGETS:-"direct relay egret-explicit direct-veth egret-transparent egret-tproxy squid tinyproxy"}
doc=${BENCH_DOC-docs/BENCHMARKS.md}
fdlimit=20000
proxy_cpu=0 tool_cpu=1
up_base=19100        # upstream ports 19100-19104 (stream, reply, hold, tls, http)
up_base_veth=19110   # the same upstreams, not redirected: direct over the veth pair
egret_port=19200 egret_admin=19201 squid_port=19210 tiny_port=19220 tproxy_port=3129
ns_gw=egret-bench-gw ns_cl=egret-bench-cl
ns_gw_tproxy=egret-bench-tgw ns_cl_tproxy=egret-bench-tcl   # the same, delivered by TPROXY
remote=192.0.2.10    # on the gateway namespace's loopback; the client's traffic to it is redirected

if [ "$(id -u)" != 0 ]; then
  echo "bench-peers: needs root (packages, namespaces, iptables, descriptor limits)" >&2
  exit 1
fi
if [ "$(nproc)" -lt 2 ]; then
  echo "bench-peers: needs 2 CPUs (proxy on CPU $proxy_cpu, load tool on CPU $tool_cpu)" >&2
  exit 1
fi
missing=()
command -v squid >/dev/null || missing+=(squid)
command -v tinyproxy >/dev/null || missing+=(tinyproxy)
command -v iptables >/dev/null || missing+=(iptables)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench-peers: installing ${missing[*]}" >&2
  apt-get update -qq  # a fresh machine has no package lists yet
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p bin
CGO_ENABLED=0 go build -trimpath -o bin/egret ./cmd/egret
CGO_ENABLED=0 go build -trimpath -o bin/egret-bench ./cmd/egret-bench
egret=$PWD/bin/egret bench=$PWD/bin/egret-bench

tmp=$(mktemp -d /tmp/egret-bench-peers.XXXXXX)
chmod 755 "$tmp"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for ns in "$ns_gw" "$ns_cl" "$ns_gw_tproxy" "$ns_cl_tproxy"; do ip netns del "$ns" 2>/dev/null || true; done
  echo "bench-peers: reports and logs kept in $tmp" >&2
}
trap cleanup EXIT

ports=$(seq -s, $up_base $((up_base + 4)))
cat >"$tmp/hosts" <<EOF
127.0.0.1 localhost
127.0.0.1 bench.example
EOF
mkdir -p "$tmp/allowlists"
cat >"$tmp/allowlists/bench.yaml" <<EOF
product: bench
title: egret-bench upstreams
source: scripts/bench-peers.sh
proxy:
  - {host: bench.example, ports: [${ports//,/, }], purpose: the load tool's loopback upstreams}
EOF

# run_tool TARGET PID [ARGS...]: the load tool on CPU 1, bounded in time.
run_tool() {
  local target=$1 pid=$2
  shift 2
  echo "bench-peers: $target (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  timeout 300 taskset -c $tool_cpu "$bench" run --target "$target" --proxy-pid "$pid" \
    --duration "$duration" --idle-tunnels "$idle" --upstream-port-base $up_base \
    -o "$tmp/$target.json" "$@"
}

# wait_http URL [NETNS]: until something answers on URL (any status).
wait_http() {
  local in=()
  [ -n "${2:-}" ] && in=(ip netns exec "$2")
  for _ in $(seq 100); do
    if "${in[@]}" curl -s -o /dev/null --noproxy '*' --max-time 1 "$1"; then return 0; fi
    sleep 0.1
  done
  echo "bench-peers: nothing answers on $1" >&2
  return 1
}

# stop PID: end a proxy started here.
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# The prefix of every proxy's command line; each execs the next, so $! is
# the proxy's own PID.
pinned=(prlimit --nofile=$fdlimit:$fdlimit taskset -c $proxy_cpu)

egret_args=(serve --admin 127.0.0.1:$egret_admin --allowlists "$tmp/allowlists" --product bench
  --resolve bench.example=127.0.0.1 --allow-range 127.0.0.0/8 --max-conns 20000)

bench_direct() { run_tool direct 0 --proxy direct; }

bench_relay() { run_tool relay 0 --proxy relay --relay-cpu $proxy_cpu; }

bench_egret_explicit() {
  "${pinned[@]}" "$egret" "${egret_args[@]}" --listen 127.0.0.1:$egret_port \
    --decision-log "$tmp/egret-explicit-decisions.log" 2>"$tmp/egret-explicit.stderr" &
  local pid=$!
  pids+=("$pid")
  wait_http "http://127.0.0.1:$egret_admin/readyz"
  run_tool egret-explicit "$pid" --proxy "http://127.0.0.1:$egret_port"
  stop "$pid"
}

# The namespaces of the transparent run, as internal/netnstest builds them:
# the client's default route leads through the gateway, whose loopback
# holds the "remote" address and the upstreams; the gateway redirects the
# upstream ports to egret's transparent listener.
# make_netns GATEWAY CLIENT SUBNET DELIVERY: DELIVERY is redirect
# (iptables REDIRECT) or tproxy (a TPROXY rule and the fwmark route of
# docs/LISTENERS.md).
make_netns() {
  local gw=${1:-$ns_gw} cl=${2:-$ns_cl} net=${3:-10.254.77} delivery=${4:-redirect}
  ip netns add "$gw"
  ip netns add "$cl"
  ip link add vgwbench netns "$gw" type veth peer name vclbench netns "$cl"
  ip netns exec "$gw" sh -e -c "
    ip link set lo up; ip link set vgwbench name vgw up
    ip addr add $net.1/30 dev vgw; ip addr add $remote/32 dev lo"
  if [ "$delivery" = tproxy ]; then
    ip netns exec "$gw" sh -e -c "
      iptables -t mangle -A PREROUTING -i vgw -p tcp -m multiport --dports $ports -j TPROXY --on-port $tproxy_port --tproxy-mark 0x1/0x1
      ip rule add fwmark 1 lookup 100; ip route add local 0.0.0.0/0 dev lo table 100"
  else
    ip netns exec "$gw" iptables -t nat -A PREROUTING -i vgw -p tcp -m multiport --dports "$ports" -j REDIRECT --to-ports $tproxy_port
  fi
  ip netns exec "$cl" sh -e -c "
    ip link set lo up; ip link set vclbench name vcl up
    ip addr add $net.2/30 dev vcl; ip route add default via $net.1"
}

bench_direct_veth() {
  [ -e /run/netns/$ns_gw ] || make_netns
  # Upstreams on every address of the gateway, on ports the gateway does
  # not redirect: the client reaches them over the veth pair, no proxy.
  echo "bench-peers: direct-veth (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  timeout 300 ip netns exec $ns_cl taskset -c $tool_cpu "$bench" run --target direct-veth --proxy direct \
    --duration "$duration" --idle-tunnels "$idle" --upstream-port-base $up_base_veth \
    --upstream-netns $ns_gw --upstream-host 0.0.0.0 --dial-addr $remote -o "$tmp/direct-veth.json"
}

bench_egret_transparent() {
  [ -e /run/netns/$ns_gw ] || make_netns
  ip netns exec $ns_gw "${pinned[@]}" \
    "$egret" "${egret_args[@]}" --listen 127.0.0.1:$egret_port --transparent 0.0.0.0:$tproxy_port \
    --decision-log "$tmp/egret-transparent-decisions.log" 2>"$tmp/egret-transparent.stderr" &
  local pid=$!
  pids+=("$pid")
  wait_http "http://127.0.0.1:$egret_admin/readyz" $ns_gw
  run_tool_in_client egret-transparent "$pid"
  stop "$pid"
}

# egret's transparent listener behind TPROXY instead of REDIRECT, in a
# namespace pair of its own (the two rules would meet on the same ports).
bench_egret_tproxy() {
  [ -e /run/netns/$ns_gw_tproxy ] || make_netns $ns_gw_tproxy $ns_cl_tproxy 10.254.79 tproxy
  ip netns exec $ns_gw_tproxy "${pinned[@]}" \
    "$egret" "${egret_args[@]}" --listen 127.0.0.1:$egret_port --transparent 0.0.0.0:$tproxy_port --transparent-tproxy \
    --decision-log "$tmp/egret-tproxy-decisions.log" 2>"$tmp/egret-tproxy.stderr" &
  local pid=$!
  pids+=("$pid")
  wait_http "http://127.0.0.1:$egret_admin/readyz" $ns_gw_tproxy
  run_tool_in_client egret-tproxy "$pid" $ns_gw_tproxy $ns_cl_tproxy
  stop "$pid"
}

# run_tool_in_client TARGET PID [GATEWAY CLIENT]
run_tool_in_client() {
  local gw=${3:-$ns_gw} cl=${4:-$ns_cl}
  echo "bench-peers: $1 (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  timeout 300 ip netns exec "$cl" taskset -c $tool_cpu "$bench" run --target "$1" --proxy-pid "$2" \
    --proxy transparent --duration "$duration" --idle-tunnels "$idle" --upstream-port-base $up_base \
    --upstream-netns "$gw" --upstream-host 127.0.0.1 --dial-addr $remote -o "$tmp/$1.json"
}

bench_squid() {
  local conf=$tmp/squid.conf
  cat >"$conf" <<EOF
# An allowlist proxy equivalent to egret's bench policy: the upstream's
# name and ports only, logging on, caching off, one worker.
http_port 127.0.0.1:$squid_port
workers 1
max_filedescriptors $fdlimit
pid_filename $tmp/squid.pid
cache_log $tmp/squid-cache.log
access_log stdio:$tmp/squid-access.log
cache_store_log none
logfile_rotate 0
coredump_dir $tmp
netdb_filename none
hosts_file $tmp/hosts
dns_nameservers 127.0.0.1
cache deny all
shutdown_lifetime 1 seconds
acl clients src 127.0.0.0/8
acl bench_host dstdomain bench.example
acl bench_ports port $up_base-$((up_base + 4))
http_access deny !clients
http_access allow bench_host bench_ports
http_access deny all
EOF
  touch "$tmp/squid-cache.log" "$tmp/squid-access.log"
  chown proxy:proxy "$tmp/squid-cache.log" "$tmp/squid-access.log" 2>/dev/null || true
  squid -k parse -f "$conf" 2>"$tmp/squid-parse.log" || { cat "$tmp/squid-parse.log" >&2; return 1; }
  "${pinned[@]}" squid -N -f "$conf" 2>"$tmp/squid.stderr" &
  local pid=$!
  pids+=("$pid")
  wait_http "http://127.0.0.1:$squid_port/"
  run_tool squid "$pid" --proxy "http://127.0.0.1:$squid_port"
  stop "$pid"
}

bench_tinyproxy() {
  local conf=$tmp/tinyproxy.conf
  {
    echo "Port $tiny_port"
    echo "Listen 127.0.0.1"
    echo "Timeout 600"
    echo "MaxClients $fdlimit"
    echo "LogFile \"$tmp/tinyproxy.log\""
    echo "LogLevel Info"
    echo "PidFile \"$tmp/tinyproxy.pid\""
    echo "Allow 127.0.0.1"
    echo "Filter \"$tmp/tinyproxy-filter\""
    echo "FilterDefaultDeny Yes"
    echo "FilterExtended Yes"
    echo "DisableViaHeader Yes"
    for p in $(seq $up_base $((up_base + 4))); do echo "ConnectPort $p"; done
  } >"$conf"
  echo '^bench\.example$' >"$tmp/tinyproxy-filter"
  touch "$tmp/tinyproxy.log"
  chown nobody "$tmp/tinyproxy.log" 2>/dev/null || true
  # tinyproxy resolves with the system resolver: give it a private
  # /etc/hosts that names the bench upstream, in a mount namespace.
  unshare -m sh -c "mount --bind '$tmp/hosts' /etc/hosts && exec prlimit --nofile=$fdlimit:$fdlimit \
    taskset -c $proxy_cpu tinyproxy -d -c '$conf'" 2>"$tmp/tinyproxy.stderr" &
  local pid=$!
  pids+=("$pid")
  wait_http "http://127.0.0.1:$tiny_port/"
  run_tool tinyproxy "$pid" --proxy "http://127.0.0.1:$tiny_port"
  stop "$pid"
}

reports=()
for t in $targets; do
  "bench_${t//-/_}"
  reports+=("$tmp/$t.json")
done

conditions=${BENCH_CONDITIONS:-"proxy pinned to CPU $proxy_cpu, load tool to CPU $tool_cpu (taskset); proxies under a $fdlimit-descriptor limit; each timed scenario $duration; $idle idle tunnels; squid $(squid -v | sed -n 's/.*Version //p' | head -1), tinyproxy $(tinyproxy -v | awk '{print $2}')"}
if [ -n "$doc" ]; then
  "$bench" table --doc "$doc" --conditions "$conditions" "${reports[@]}"
else
  "$bench" table --conditions "$conditions" "${reports[@]}"
fi
