#!/usr/bin/env bash
# Measures `egret review` and `egret diff` on generated decision logs of 100,000 and
# 1,000,000 lines (plain and gzip): wall time, lines per second and peak
# resident memory (from /usr/bin/time), best of RUNS runs (default 3). The
# logs are written to a temporary directory and removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -trimpath -o "$tmp/egret" ./cmd/egret
printf '%-7s %-10s %-6s %10s %8s %12s %10s\n' command lines input bytes seconds lines/s peak_rss
for n in 100000 1000000; do
  go run ./scripts/genlog -n "$n" > "$tmp/decisions.log"
  gzip -k "$tmp/decisions.log"
  for cmd in review diff; do
  for input in decisions.log decisions.log.gz; do
    best=""
    for _ in $(seq "$runs"); do
      # diff exits 1 when the policy denies a logged allow (the synthetic
      # log has such lines): that is its answer, not a failure.
      /usr/bin/time -f '%e %M' -o "$tmp/time" "$tmp/egret" "$cmd" --format json "$tmp/$input" > /dev/null || [ "$cmd" = diff ]
      read -r secs rss < <(tail -n 1 "$tmp/time") # after "Command exited with non-zero status 1", if any
      if [ -z "$best" ] || awk -v a="$secs" -v b="${best%% *}" 'BEGIN{exit !(a<b)}'; then best="$secs $rss"; fi
    done
    read -r secs rss <<< "$best"
    kind=plain; [ "${input%.gz}" != "$input" ] && kind=gzip
    printf '%-7s %-10s %-6s %10s %8s %12.0f %8s KB\n' "$cmd" "$n" "$kind" "$(stat -c %s "$tmp/$input")" "$secs" \
      "$(awk -v n="$n" -v s="$secs" 'BEGIN{print (s>0 ? n/s : 0)}')" "$rss"
  done
  done
  rm "$tmp/decisions.log" "$tmp/decisions.log.gz"
done
