#!/usr/bin/env bash
# make bench-dns: queries/s, CPU per query and latency of egret's DNS door
# against dnsmasq, both forwarding to the same local upstream, in one run.
# Prints a markdown table (docs/BENCHMARKS.md, "The DNS door against
# dnsmasq").
#
# Only loopback is used. The upstream is a dnsmasq that answers every name
# under bench.example itself (--address, TTL 300 s, 192.0.2.1). egret gets
# --allow-range 192.0.2.0/24: its address guard treats TEST-NET as private
# and would otherwise remove every answer. The servers under test (egret,
# dnsmasq without cache, dnsmasq with its default cache, dnsmasq without
# cache logging every query to a file) are pinned to CPU 0; the upstream and
# the load tool (dnsperf) to CPU 1. Rounds alternate the servers.
#
# Root only to install missing packages (dnsperf, dnsmasq-base).
#
# Knobs (environment): BENCH_DURATION (seconds per run, default 10),
# BENCH_ROUNDS (default 3), BENCH_INFLIGHT (queries in flight, default 32),
# BENCH_NAMES (distinct names, default 1000000; also the most queries of a
# run), BENCH_HOT (names of the repeated mix, default 100),
# BENCH_TARGETS (default "egret dnsmasq dnsmasq-cache dnsmasq-log").
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${BENCH_DURATION:-10}
rounds=${BENCH_ROUNDS:-3}
inflight=${BENCH_INFLIGHT:-32}
names=${BENCH_NAMES:-1000000}
hot=${BENCH_HOT:-100}
targets=${BENCH_TARGETS:-"egret dnsmasq dnsmasq-cache dnsmasq-log"}
mixes="distinct hot"
server_cpu=0 tool_cpu=1
up_port=19450 egret_dns=19451 egret_listen=19452 egret_admin=19453
dm_port=19454 dmc_port=19455 dml_port=19456
answer=192.0.2.1
dnsmasq=/usr/sbin/dnsmasq

if [ "$(nproc)" -lt 2 ]; then
  echo "bench-dns: needs 2 CPUs (servers on CPU $server_cpu, load on CPU $tool_cpu)" >&2
  exit 1
fi
missing=()
command -v dnsperf >/dev/null || missing+=(dnsperf)
[ -x $dnsmasq ] || missing+=(dnsmasq-base)
command -v dig >/dev/null || missing+=(bind9-dnsutils)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "bench-dns: missing ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "bench-dns: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
for p in $up_port $egret_dns $egret_listen $egret_admin $dm_port $dmc_port $dml_port; do
  if ss -Hlntu "sport = :$p" | grep -q .; then
    echo "bench-dns: port $p is in use" >&2
    exit 1
  fi
done

tmp=$(mktemp -d /tmp/egret-bench-dns.XXXXXX)
chmod 755 "$tmp"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -f "$tmp"/*.dnsperf "$tmp"/names-*.txt
  echo "bench-dns: results and logs kept in $tmp" >&2
}
trap cleanup EXIT

CGO_ENABLED=0 go build -trimpath -o "$tmp/egret" ./cmd/egret

# The query files: distinct names (no cache can answer them) and a few
# names repeated (a cache answers all but the first of each).
seq 1 "$names" | awk '{print "n" $1 ".bench.example A"}' >"$tmp/names-distinct.txt"
seq 1 "$hot" | awk '{print "h" $1 ".bench.example A"}' >"$tmp/names-hot.txt"
runs_distinct=1 runs_hot=$(( (names + hot - 1) / hot ))

mkdir -p "$tmp/allowlists"
cat >"$tmp/allowlists/bench-dns.yaml" <<EOF
product: bench-dns
title: bench-dns names
source: scripts/bench-dns.sh
proxy:
  - {host: "*.bench.example", ports: [443], purpose: the DNS benchmark's names}
EOF

dm_user=()
[ "$(id -u)" = 0 ] && dm_user=(--user=root)   # so it can write its log in $tmp
dm_common=(--conf-file=/dev/null --keep-in-foreground --no-hosts --no-resolv --bind-interfaces
  --listen-address=127.0.0.1 "${dm_user[@]}")

# start NAME CPU CMD...: run a server pinned to CPU; taskset execs it, so
# $! is the server's own PID.
declare -A pid_of port_of
start() {
  local name=$1 cpu=$2
  shift 2
  taskset -c "$cpu" "$@" 2>"$tmp/$name.stderr" &
  pid_of[$name]=$!
  pids+=("$!")
}

# wait_dns PORT: until the server answers an allowed name.
wait_dns() {
  for _ in $(seq 100); do
    if dig +time=1 +tries=1 +short @127.0.0.1 -p "$1" ready.bench.example A | grep -q "^$answer$"; then
      return 0
    fi
    sleep 0.1
  done
  echo "bench-dns: nothing answers on 127.0.0.1:$1" >&2
  return 1
}

# dm NAME CPU DNSMASQ ARGS...: a dnsmasq with the common options.
dm() { local name=$1; shift; start "$name" "$@" "${dm_common[@]}" --pid-file="$tmp/$name.pid"; }

dm upstream $tool_cpu $dnsmasq --port=$up_port --address=/bench.example/$answer --local-ttl=300 --cache-size=0
port_of[upstream]=$up_port
wait_dns $up_port

for t in $targets; do
  case $t in
  egret)
    start egret $server_cpu "$tmp/egret" serve --allowlists "$tmp/allowlists" --product bench-dns \
      --listen 127.0.0.1:$egret_listen --admin 127.0.0.1:$egret_admin \
      --dns 127.0.0.1:$egret_dns --dns-upstream 127.0.0.1:$up_port \
      --allow-range 192.0.2.0/24 --decision-log "$tmp/egret-decisions.log"
    port_of[egret]=$egret_dns ;;
  dnsmasq)
    dm dnsmasq $server_cpu $dnsmasq --port=$dm_port --server=127.0.0.1#$up_port --cache-size=0
    port_of[dnsmasq]=$dm_port ;;
  dnsmasq-cache)
    dm dnsmasq-cache $server_cpu $dnsmasq --port=$dmc_port --server=127.0.0.1#$up_port
    port_of[dnsmasq-cache]=$dmc_port ;;
  dnsmasq-log)
    dm dnsmasq-log $server_cpu $dnsmasq --port=$dml_port --server=127.0.0.1#$up_port --cache-size=0 \
      --log-queries --log-facility="$tmp/dnsmasq-queries.log"
    port_of[dnsmasq-log]=$dml_port ;;
  *) echo "bench-dns: unknown target $t" >&2; exit 1 ;;
  esac
  wait_dns "${port_of[$t]}"
done

# ticks PID: utime + stime of the process, all threads, in clock ticks.
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# cpu0: busy and total ticks of CPU 0 (every process on it, and interrupts).
cpu0() { awk '$1 == "cpu'$server_cpu'" {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }
hz=$(getconf CLK_TCK)

results=$tmp/results.tsv
printf 'target\tmix\tround\tqps\tcpu_us\tp50_ms\tp99_ms\tcompleted\tlost\terrors\tup_cpu_us\tcpu0_busy\tload1\n' >"$results"

# run TARGET MIX ROUND: one bounded dnsperf run against TARGET.
run() {
  local t=$1 mix=$2 round=$3 pid=${pid_of[$1]} port=${port_of[$1]} runs
  [ "$mix" = distinct ] && runs=$runs_distinct || runs=$runs_hot
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  echo "bench-dns: round $round $t $mix (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  local c0 u0 s0; c0=$(ticks "$pid"); u0=$(ticks "${pid_of[upstream]}"); s0=$(cpu0)
  local out=$tmp/$t-$mix-$round.dnsperf
  timeout $((duration + 30)) taskset -c $tool_cpu dnsperf -s 127.0.0.1 -p "$port" \
    -d "$tmp/names-$mix.txt" -n "$runs" -l "$duration" -q "$inflight" -c 4 -T 1 -t 2 -v >"$out" 2>&1
  local c1 u1 s1; c1=$(ticks "$pid"); u1=$(ticks "${pid_of[upstream]}"); s1=$(cpu0)
  sed -n '/^Statistics:/,$p' "$out" >"$tmp/$t-$mix-$round.stats"
  local completed lost qps errors pct
  completed=$(awk '/Queries completed:/ {print $3}' "$out")
  lost=$(awk '/Queries lost:/ {print $3}' "$out")
  qps=$(awk '/Queries per second:/ {printf "%.0f", $4}' "$out")
  errors=$(awk '/^> / && $2 != "NOERROR" {n++} END {print n + 0}' "$out")
  pct=$(awk '/^> / {print $NF}' "$out" | sort -g | awk '{v[NR] = $1}
    END {i50 = int(NR * 0.50); i99 = int(NR * 0.99); if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1
         printf "%.3f\t%.3f", v[i50] * 1000, v[i99] * 1000}')
  read -r b0 t0 <<<"$s0"
  read -r b1 t1 <<<"$s1"
  printf '%s\t%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%.1f\t%.0f\t%s\n' "$t" "$mix" "$round" "$qps" \
    "$(echo "($c1 - $c0) * 1000000 / $hz / $completed" | bc -l)" "$pct" "$completed" "$lost" "$errors" \
    "$(echo "($u1 - $u0) * 1000000 / $hz / $completed" | bc -l)" \
    "$(echo "100 * ($b1 - $b0) / ($t1 - $t0)" | bc -l)" "$load" >>"$results"
  rm -f "$out"
}

for round in $(seq "$rounds"); do
  for mix in $mixes; do
    for t in $targets; do run "$t" "$mix" "$round"; done
  done
done

# Every query a server answered was logged?
egret_lines=$( [ -f "$tmp/egret-decisions.log" ] && grep -c '"listener":"dns"' "$tmp/egret-decisions.log" || echo 0)
dml_lines=$( [ -f "$tmp/dnsmasq-queries.log" ] && grep -c 'query\[A\]' "$tmp/dnsmasq-queries.log" || echo 0)

# The table: medians over the rounds; ratios are egret's median over the row's.
awk -F'\t' -v egret_lines="$egret_lines" -v dml_lines="$dml_lines" '
function med(s,   a, n, i, j, x) {
  n = split(s, a, " ")
  for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
NR == 1 { next }
{
  k = $1 SUBSEP $2
  if (!(k in qps)) { order[++nk] = k }
  qps[k] = qps[k] " " $4; cpu[k] = cpu[k] " " $5; p50[k] = p50[k] " " $6; p99[k] = p99[k] " " $7
  up[k] = up[k] " " $11; busy[k] = busy[k] " " $12
  lost[k] += $9; err[k] += $10; done_[k] += $8; rq[k] = rq[k] (rq[k] == "" ? "" : " / ") $4
}
END {
  print "| server | names | queries/s (median) | per round | CPU µs/query | p50 ms | p99 ms | lost | not NOERROR | upstream CPU µs/query | CPU 0 busy % | egret ÷ row, queries/s | egret ÷ row, CPU/query |"
  print "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for (i = 1; i <= nk; i++) {
    k = order[i]; split(k, kk, SUBSEP)
    e = "egret" SUBSEP kk[2]
    rq_ = (e in qps && kk[1] != "egret") ? sprintf("%.2f×", med(qps[e]) / med(qps[k])) : ""
    rc_ = (e in qps && kk[1] != "egret") ? sprintf("%.2f×", med(cpu[e]) / med(cpu[k])) : ""
    printf "| %s | %s | %.0f | %s | %.1f | %.3f | %.3f | %d | %d | %.1f | %.0f | %s | %s |\n", kk[1], kk[2],
      med(qps[k]), rq[k], med(cpu[k]), med(p50[k]), med(p99[k]), lost[k], err[k], med(up[k]), med(busy[k]), rq_, rc_
    if (kk[1] == "egret") eg_done += done_[k]
    if (kk[1] == "dnsmasq-log") dml_done += done_[k]
  }
  printf "\nQueries answered / logged: egret %d / %d decision lines (plus the readiness query)", eg_done, egret_lines
  if (dml_done) printf "; dnsmasq-log %d / %d query[A] lines (plus the readiness query)", dml_done, dml_lines
  printf "\n"
}' "$results"

loads=$(awk -F'\t' 'NR > 1 {print $13}' "$results" | sort -g | sed -n '1p;$p' | paste -sd' ')
echo
echo "Conditions: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)); servers on CPU $server_cpu," \
  "upstream dnsmasq and dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ {print $2}') on CPU $tool_cpu; $($dnsmasq --version | head -1 | awk '{print $1, $3}');" \
  "$rounds rounds of ${duration}s per server and mix, $inflight queries in flight (4 sockets), UDP, timeout 2s," \
  "at most $names queries a run; distinct: $names names n1…n$names.bench.example, hot: $hot names repeated;" \
  "load average (1 min) at the runs' starts ${loads/ / to }."
