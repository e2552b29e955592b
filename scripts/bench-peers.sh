#!/usr/bin/env bash
# make bench-peers: walrus against pgBackRest on this machine, on the same
# pgbench database and the same storage (the filesystem, and versitygw on
# loopback over TLS with a self-signed certificate), lz4 for both. Prints
# one table with the speed ratio walrus/pgBackRest per operation
# (BenchmarkPeers in bench/peers_bench_test.go says what is measured), then
# recovery of about 100 segments through restore_command: walrus wal-fetch
# with and without prefetch, and pgBackRest archive-get with archive-async,
# against replay alone (BenchmarkRecovery in bench/recovery_bench_test.go;
# WALRUS_BENCH_RECOVERY_SCALE, default 10).
#
# Settings (environment): WALRUS_BENCH_SCALE (pgbench scale, default 100,
# about 1.5 GB), WALRUS_BENCH_RUNS (runs per figure, median printed,
# default 3), WALRUS_BENCH_SEGMENTS (WAL segments archived, default 100).
# A quick look: WALRUS_BENCH_SCALE=5 WALRUS_BENCH_RUNS=1
# WALRUS_BENCH_SEGMENTS=10 make bench-peers
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v pgbackrest >/dev/null 2>&1; then
	echo "bench-peers: installing pgBackRest from apt" >&2
	if ! apt-get install -y pgbackrest; then
		apt-get update
		apt-get install -y pgbackrest
	fi
fi
pgbackrest version

GO=${GO:-go}
"$GO" test -run '^$' -bench 'BenchmarkPeers$' -benchtime 1x -timeout 180m ./bench/
WALRUS_BENCH_PEERS=1 exec "$GO" test -run '^$' -bench 'BenchmarkRecovery$' -benchtime 1x -timeout 60m ./bench/
