# walrus — see README.md. `make demo` and `make test` are the two commands
# that matter on a fresh machine.
GO        ?= go
GOBIN     := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):/usr/local/go/bin:$(PATH)
PKGS      := ./...
TEST_TIMEOUT ?= 19m
# How long make test-long runs each fuzz target.
FUZZTIME  ?= 30s

.PHONY: all build test test-long fuzz-smoke bench bench-peers demo fmt vet clean

all: build

build:
	$(GO) build -o bin/walrus ./cmd/walrus

# All tests, including integration tests against real PostgreSQL 15 clusters
# and a real S3 server (versitygw). Must stay under 20 minutes on 2 cores.
test: build
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

# Longer suites: the randomized restore-fidelity rounds, then every fuzz
# target for FUZZTIME (scripts/fuzz.sh prints a summary line).
# Ends with one line: fidelity rounds, faults and kills injected by the
# reliability tests (internal/e2e writes them to bin/test-long-e2e.summary),
# fuzz executions, and restore mismatches, which must be 0.
test-long: build
	rm -f bin/test-long-e2e.summary bin/test-long-fuzz.out
	WALRUS_TEST_LONG=1 WALRUS_SUMMARY_FILE=$(CURDIR)/bin/test-long-e2e.summary $(GO) test -count=1 -timeout 120m $(PKGS)
	bash -o pipefail -c 'bash scripts/fuzz.sh $(FUZZTIME) | tee bin/test-long-fuzz.out'
	@. ./bin/test-long-e2e.summary; \
	fuzz=$$(sed -n 's/^fuzz summary: .* \([0-9][0-9]*\) executions.*/\1/p' bin/test-long-fuzz.out); \
	echo "test-long summary: $$rounds fidelity rounds, $$faults faults injected, $$kills kills injected, $${fuzz:-0} fuzz executions, $$mismatches mismatches"; \
	test "$$mismatches" -eq 0

# Every fuzz target for a few seconds: a quick look for new crashes.
# `make test` already runs each target's seed corpus, through go test.
fuzz-smoke:
	bash scripts/fuzz.sh 5s

# Benchmarks print figures; they assert nothing about speed. The backup
# benchmark builds a pgbench database of scale WALRUS_BENCH_SCALE (default
# 100, about 1.5 GB; other WALRUS_BENCH_* settings in bench/fixture_test.go).
# A quick run: WALRUS_BENCH_SCALE=5 WALRUS_BENCH_RUNS=1 WALRUS_BENCH_SEGMENTS=10 make bench
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./compress/ ./crypto/
	$(GO) test -run '^$$' -bench 'BenchmarkBackup$$' -benchtime 1x -timeout 120m ./bench/
	$(GO) test -run '^$$' -bench 'BenchmarkWAL$$' -benchtime 1x -timeout 60m ./bench/
	$(GO) test -run '^$$' -bench 'BenchmarkArchiveBacklog$$' -benchtime 1x -timeout 30m ./bench/
	$(GO) test -run '^$$' -bench 'BenchmarkRecovery$$' -benchtime 1x -timeout 60m ./bench/

# walrus against pgBackRest (installed from apt if missing) on the same
# database and storage; one table of speed ratios. bench/RESULTS.md holds
# the latest. Same settings as make bench.
bench-peers: build
	bash scripts/bench-peers.sh

# The main job end to end on the filesystem repository, in a throwaway
# cluster. Cleans up after itself.
demo: build
	bash scripts/demo.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet $(PKGS)

clean:
	rm -rf bin
