#!/usr/bin/env bash
# Runs every Go fuzz target of the module (each func Fuzz* in a _test.go
# file) for a while, one after the other, and ends with a summary line:
# targets run, total executions, failures. `go test` alone runs only the
# targets' seed corpora (and any failing inputs saved in testdata/fuzz).
#
# Usage: scripts/fuzz.sh [FUZZTIME] [PACKAGE_DIR...]
#   FUZZTIME      per target, as for go test -fuzztime (default 30s)
#   PACKAGE_DIR   e.g. ./pg (default: every package with a fuzz target)
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
fuzztime=${1:-30s}
[ $# -gt 0 ] && shift
if [ $# -gt 0 ]; then
	dirs=("$@")
else
	mapfile -t dirs < <(grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . | xargs -n1 dirname | sort -u)
fi
targets=0 execs=0 failed=()
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for d in "${dirs[@]}"; do
	for f in $(grep -hoE '^func Fuzz[A-Za-z0-9_]*\(' "$d"/*_test.go | sed -E 's/^func (Fuzz[A-Za-z0-9_]*)\(/\1/' | sort -u); do
		targets=$((targets + 1))
		echo "== fuzz $d $f for $fuzztime"
		if "$GO" test -run '^$' -fuzz "^$f\$" -fuzztime "$fuzztime" "$d" >"$out" 2>&1; then
			tail -n 2 "$out"
		else
			cat "$out"
			failed+=("$d:$f")
		fi
		n=$(grep -oE 'execs: [0-9]+' "$out" | tail -n 1 | grep -oE '[0-9]+' || true)
		execs=$((execs + ${n:-0}))
	done
done
echo "fuzz summary: ${targets} targets, ${execs} executions, ${#failed[@]} failed${failed:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
