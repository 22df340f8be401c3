#!/usr/bin/env bash
# Runs every Go fuzz target of the module for FUZZTIME each (go test runs
# one target per invocation) and prints the executions of each. Seeds are
# in <package>/testdata/fuzz/<target>/; a failing input is written there
# too, so it stays as a regression seed once the bug is fixed.
# FUZZ=<regexp> runs only the targets whose names match. FUZZMINIMIZETIME
# bounds how long an input is minimized (the go tool spends up to a minute
# on every new interesting input by default, which would take most of a
# short run; a crasher is still written, perhaps less small).
set -uo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-20s}
only=${FUZZ:-.}
minimize=${FUZZMINIMIZETIME:-3s}
go=${GO:-go}
# go test's own timeout (10m by default) covers the fuzzing too: give
# each run its time plus 10 minutes.
secs=0 # other forms (100x, 1m30s): go test's default timeout
if [[ $fuzztime =~ ^([0-9]+)([smh])$ ]]; then
  case ${BASH_REMATCH[2]} in s) secs=${BASH_REMATCH[1]} ;; m) secs=$(( BASH_REMATCH[1] * 60 )) ;; h) secs=$(( BASH_REMATCH[1] * 3600 )) ;; esac
fi
timeout=$(( secs + 600 ))s
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# package dir <TAB> target, from the test files that declare them
targets=$(grep -rHo --include='*_test.go' --exclude-dir=node_modules --exclude-dir=testdata '^func Fuzz[A-Za-z0-9_]*' . \
  | sed -E 's|^(.*)/[^/]*_test\.go:func (Fuzz.*)$|\1\t\2|' | sort -u | grep -E "	.*${only}")

failed=0
summary=()
start=$(date +%s)
while IFS=$'\t' read -r dir name; do
  [ -n "$name" ] || continue
  log="$work/$name.log"
  t0=$(date +%s)
  if "$go" test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" -fuzzminimizetime="$minimize" -timeout="$timeout" "$dir" >"$log" 2>&1; then
    status=ok
  else
    status=FAIL
    failed=1
    cat "$log"
  fi
  # executions of new inputs; a short run may spend all its time on the
  # baseline (seeds and the inputs earlier runs kept in the go cache)
  execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  baseline=$(grep -o 'baseline coverage: [0-9]*/[0-9]*' "$log" | tail -1 | grep -o '[0-9]*/[0-9]*$')
  summary+=("$(printf '%-26s %-14s %4s %10s execs %4ss  baseline %s' "$name" "$dir" "$status" "${execs:-0}" \
    "$(( $(date +%s) - t0 ))" "${baseline:-?}")")
  echo "${summary[-1]}"
done <<<"$targets"

echo
echo "fuzz: ${#summary[@]} targets, $fuzztime each, $(( $(date +%s) - start ))s in all"
printf '%s\n' "${summary[@]}"
exit $failed
