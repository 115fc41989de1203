#!/usr/bin/env bash
# The transparent listener's c=1 tail after many redirected connections
# (docs/BENCHMARKS.md): is it egret, or the kernel state the connections
# leave behind? Runs tls1 (c=1) on a fresh egret, then BENCH_CONNECT_RUNS
# bursts of `connect` (c=64), then tls1 again; then restarts egret with the
# kernel state kept; then flushes the gateway's conntrack table; then
# waits for TIME_WAIT to drain. Prints p50/p99 with the conntrack and
# TIME_WAIT counts at each step.
#
# DELIVERY=tproxy delivers the client's connections by TPROXY (and egret
# serves them with --transparent-tproxy) instead of REDIRECT.
#
# GW_SYSCTLS (e.g. "net.ipv4.tcp_max_tw_buckets=4096", several separated
# by ';') are set in the gateway namespace first, CLIENT_SYSCTLS in the
# client's, to try a kernel setting against the tail.
#
# Needs root, iptables, conntrack (Debian: conntrack). Only addresses of
# the two namespaces it creates are dialled.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
command -v conntrack >/dev/null || { echo "needs conntrack (apt-get install conntrack)" >&2; exit 1; }
duration=${BENCH_DURATION:-3s}
up_base=19700 tproxy_port=3129 egret_admin=19801
ns_gw=egret-tail-gw ns_cl=egret-tail-cl remote=192.0.2.10
tmp=$(mktemp -d /tmp/egret-tail.XXXXXX)
egret_pid=
cleanup() {
  [ -n "$egret_pid" ] && { kill "$egret_pid" 2>/dev/null || true; wait "$egret_pid" 2>/dev/null || true; }
  ip netns del $ns_gw 2>/dev/null || true
  ip netns del $ns_cl 2>/dev/null || true
  echo "reports in $tmp" >&2
}
trap cleanup EXIT
CGO_ENABLED=0 go build -trimpath -o "$tmp/egret" ./cmd/egret
CGO_ENABLED=0 go build -trimpath -o "$tmp/egret-bench" ./cmd/egret-bench
ports=$(seq -s, $up_base $((up_base + 4)))
mkdir -p "$tmp/allowlists"
printf 'product: bench\ntitle: bench\nsource: scripts/bench-transparent-tail.sh\nproxy:\n  - {host: bench.example, ports: [%s], purpose: upstreams}\n' "${ports//,/, }" >"$tmp/allowlists/bench.yaml"

ip netns add $ns_gw
ip netns add $ns_cl
ip link add vgwtail netns $ns_gw type veth peer name vcltail netns $ns_cl
ip netns exec $ns_gw sh -e -c "
  ip link set lo up; ip link set vgwtail name vgw up
  ip addr add 10.254.78.1/30 dev vgw; ip addr add $remote/32 dev lo"
case ${DELIVERY:-redirect} in
redirect)
  ip netns exec $ns_gw iptables -t nat -A PREROUTING -i vgw -p tcp -m multiport --dports "$ports" -j REDIRECT --to-ports $tproxy_port
  tproxy_flag= ;;
tproxy)
  ip netns exec $ns_gw sh -e -c "
    iptables -t mangle -A PREROUTING -i vgw -p tcp -m multiport --dports $ports -j TPROXY --on-port $tproxy_port --tproxy-mark 0x1/0x1
    ip rule add fwmark 1 lookup 100; ip route add local 0.0.0.0/0 dev lo table 100"
  tproxy_flag=--transparent-tproxy ;;
*) echo "DELIVERY is redirect or tproxy" >&2; exit 1 ;;
esac
IFS=';' read -ra sysctls <<<"${GW_SYSCTLS:-}"
for kv in "${sysctls[@]}"; do
  [ -n "$kv" ] && ip netns exec $ns_gw sysctl -q -w "$kv"
done
IFS=';' read -ra sysctls <<<"${CLIENT_SYSCTLS:-}"
for kv in "${sysctls[@]}"; do
  [ -n "$kv" ] && ip netns exec $ns_cl sysctl -q -w "$kv"
done
echo "delivery: ${DELIVERY:-redirect}; gateway: $(ip netns exec $ns_gw sysctl -n net.ipv4.ip_local_port_range | tr '\t' ' ') ephemeral ports, tcp_tw_reuse=$(ip netns exec $ns_gw sysctl -n net.ipv4.tcp_tw_reuse)"
ip netns exec $ns_cl sh -e -c "
  ip link set lo up; ip link set vcltail name vcl up
  ip addr add 10.254.78.2/30 dev vcl; ip route add default via 10.254.78.1"

start_egret() {
  ip netns exec $ns_gw prlimit --nofile=20000:20000 taskset -c 0 "$tmp/egret" serve --admin 127.0.0.1:$egret_admin \
    --allowlists "$tmp/allowlists" --product bench --resolve bench.example=127.0.0.1 --allow-range 127.0.0.0/8 \
    --max-conns 20000 --listen 127.0.0.1:19800 --transparent 0.0.0.0:$tproxy_port $tproxy_flag \
    --decision-log "$tmp/decisions.log" 2>>"$tmp/egret.stderr" &
  egret_pid=$!
  for _ in $(seq 100); do
    ip netns exec $ns_gw curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$egret_admin/readyz" && return 0
    sleep 0.1
  done
  echo "egret not ready" >&2; exit 1
}
stop_egret() { kill "$egret_pid"; wait "$egret_pid" 2>/dev/null || true; egret_pid=; }
state() {
  local ct tw_gw tw_cl
  ct=$(ip netns exec $ns_gw conntrack -C 2>/dev/null || echo ?)
  tw_gw=$(ip netns exec $ns_gw ss -Htan state time-wait | wc -l)
  tw_cl=$(ip netns exec $ns_cl ss -Htan state time-wait | wc -l)
  echo "conntrack(gw)=$ct time-wait(gw)=$tw_gw time-wait(client)=$tw_cl"
}
n=0
run() {
  n=$((n + 1))
  timeout 300 ip netns exec $ns_cl taskset -c 1 "$tmp/egret-bench" run --target "$2" --proxy-pid "$egret_pid" \
    --proxy transparent --duration "$duration" --scenarios "$1" --upstream-port-base $up_base \
    --upstream-netns $ns_gw --upstream-host 127.0.0.1 --dial-addr $remote -o "$tmp/$n-$2.json" 2>&1 | grep -E " $1 " || true
}
step() { echo "== $1 ($(state))"; }
# counters: what the TCP stacks of both namespaces counted since the last
# call (nstat keeps its history per namespace), for the drops and
# retransmissions a tail could come from.
counters() {
  local ns
  for ns in $ns_gw $ns_cl; do
    ip netns exec $ns nstat -z 2>/dev/null | awk -v ns="$ns" '$1 ~ /ListenDrops|ListenOverflows|ReqQFullDrop|TimeWaitOverflow|PAWS|SynRetrans|TCPTimeouts|TW$|TWRecycled|TWKilled|TCPAbortOnData|TCPSYNChallenge|TCPChallengeACK|OutRsts|RetransSegs|TCPLossProbes/ && $2 > 0 {printf "  %s %s %s\n", ns, $1, $2}'
  done
}

start_egret
counters >/dev/null
step "fresh egret, fresh namespaces"; run tls1 tls1-fresh; counters
for i in $(seq "${BENCH_CONNECT_RUNS:-2}"); do run connect connect-burst-$i; done
step "after the connect bursts"
# Whose TIME_WAIT sockets they are: by local address and port (the
# listener, or under TPROXY the remote address the client dialled; an
# upstream's port; or an ephemeral port of egret's dials).
ip netns exec $ns_gw ss -Htan state time-wait | awk '{split($3, l, ":"); p = l[2] + 0; k = (p == '$tproxy_port' || l[1] == "'$remote'") ? l[1] ":" p " (egret transparent, accepted)" : (p >= '$up_base' && p <= '$((up_base + 4))') ? l[1] ":" p " (an upstream)" : l[1] ":ephemeral (a dial of egret)"; n[k]++} END {for (k in n) print "  time-wait " n[k] " at " k}'
counters >/dev/null
run tls1 tls1-after-bursts; counters
stop_egret; start_egret
step "egret restarted, kernel state kept"; run tls1 tls1-restarted
ip netns exec $ns_gw conntrack -F >/dev/null 2>&1 || true
step "gateway conntrack flushed"; run tls1 tls1-conntrack-flushed
for i in $(seq "${BENCH_CONNECT_RUNS:-2}"); do run connect connect-burst2-$i; done
step "after the connect bursts again"; counters >/dev/null; run tls1 tls1-after-bursts2; counters
