#!/usr/bin/env bash
# Runs every native fuzz target in the module for FUZZTIME each (default
# 20s), one at a time: `go test -fuzz` takes one target per run. New
# crashers are written to the package's testdata/fuzz/ by go test itself.
#
# A failing run prints its last lines. A failure that left no new input in
# testdata/fuzz is the fuzzing engine's (a worker that did not answer in
# time on a loaded machine), not a finding: that target is run once more,
# and fails the script if it fails again. A failure with a new input always
# fails the script; the input is there to reproduce it (go test -run).
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-20s}
inputs() { find . -path '*/testdata/fuzz/*' -type f 2>/dev/null | sort; }
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    for attempt in 1 2; do
      echo "fuzz $pkg $target for $fuzztime"
      before=$(inputs)
      if out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" 2>&1); then
        echo "$out" | tail -n 1
        break
      fi
      echo "$out" | tail -n 40
      if [ "$(inputs)" != "$before" ] || [ "$attempt" = 2 ]; then
        echo "fuzz: $target failed" >&2
        exit 1
      fi
      echo "fuzz: $target failed without a new input (the engine, not a finding); running it once more" >&2
    done
  done
done
