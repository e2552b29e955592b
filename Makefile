# walrus — see README.md. `make demo` and `make test` are the two commands
# that matter on a fresh machine.
GO        ?= go
GOBIN     := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):/usr/local/go/bin:$(PATH)
PKGS      := ./...
TEST_TIMEOUT ?= 19m
# How long make test-long runs each fuzz target.
FUZZTIME  ?= 30s

.PHONY: all build test test-long fuzz-smoke bench demo fmt vet clean

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
test-long: build
	WALRUS_TEST_LONG=1 $(GO) test -count=1 -timeout 120m $(PKGS)
	bash scripts/fuzz.sh $(FUZZTIME)

# Every fuzz target for a few seconds: a quick look for new crashes.
# `make test` already runs each target's seed corpus, through go test.
fuzz-smoke:
	bash scripts/fuzz.sh 5s

# Benchmarks print figures; they assert nothing about speed.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./compress/ ./crypto/
	$(GO) test -run '^$$' -bench DeltaBackup -benchtime 1x -timeout 30m ./bench/

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
