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
targets=0 execs=0 failed=() rerun=()
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# corpus lists the failing inputs go test has saved for target $2 of
# package $1 (a crash or a hang writes one there).
corpus() { ls "$1/testdata/fuzz/$2" 2>/dev/null | sort || true; }

# fuzz runs one target; it fails when go test fails.
fuzz() {
	"$GO" test -run '^$' -fuzz "^$2\$" -fuzztime "$fuzztime" "$1" >"$out" 2>&1
}

for d in "${dirs[@]}"; do
	for f in $(grep -hoE '^func Fuzz[A-Za-z0-9_]*\(' "$d"/*_test.go | sed -E 's/^func (Fuzz[A-Za-z0-9_]*)\(/\1/' | sort -u); do
		targets=$((targets + 1))
		echo "== fuzz $d $f for $fuzztime"
		before=$(corpus "$d" "$f")
		ok=1
		fuzz "$d" "$f" || ok=0
		# Go 1.26's fuzz coordinator can fail a target with a bare
		# "context deadline exceeded" as -fuzztime ends, saving no input
		# (a race in internal/fuzz, go.dev/issue/75804, fixed in 1.27).
		# That one outcome, and only with no new saved input, is run once
		# more; any other failure, or the same twice, fails.
		if [ $ok = 0 ] && [ "$(corpus "$d" "$f")" = "$before" ] &&
			[ "$(grep -c -- '^--- FAIL' "$out")" = 1 ] && grep -qx '    context deadline exceeded' "$out"; then
			echo "   (go.dev/issue/75804: the fuzz coordinator's deadline race, no input saved; running it again)"
			rerun+=("$d:$f")
			n=$(grep -oE 'execs: [0-9]+' "$out" | tail -n 1 | grep -oE '[0-9]+' || true)
			execs=$((execs + ${n:-0}))
			ok=1
			fuzz "$d" "$f" || ok=0
		fi
		if [ $ok = 1 ]; then
			tail -n 2 "$out"
		else
			cat "$out"
			failed+=("$d:$f")
		fi
		n=$(grep -oE 'execs: [0-9]+' "$out" | tail -n 1 | grep -oE '[0-9]+' || true)
		execs=$((execs + ${n:-0}))
	done
done
echo "fuzz summary: ${targets} targets, ${execs} executions, ${#failed[@]} failed${failed:+: ${failed[*]}}${rerun:+; run again after go.dev/issue/75804: ${rerun[*]}}"
[ ${#failed[@]} -eq 0 ]
