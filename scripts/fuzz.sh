#!/usr/bin/env bash
# Runs every native fuzz target in the module for FUZZTIME each (default
# 20s), one at a time: `go test -fuzz` takes one target per run. New
# crashers are written to the package's testdata/fuzz/ by go test itself.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-20s}
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "fuzz $pkg $target for $fuzztime"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" | tail -n 1
  done
done
