# Pacer's entry points. `make run` and `make test` are the contract (see README.md); each
# installs what it needs through hack/install-deps.sh first.

CARGO ?= cargo
DATA_DIR ?=
LISTEN ?= 127.0.0.1:8080

.PHONY: run test test-slow bench deps fmt lint build

## Start Pacer on this machine: `pacer dev`, everything in one process on the embedded store.
run: deps
	$(CARGO) run -p pacer -- dev --listen $(LISTEN) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

## Formatting, lints, and every test (unit, store conformance on embedded and real etcd, e2e).
test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) test --workspace --locked

## Long fault drills and soak tests, kept out of `make test` (none yet).
test-slow: deps
	@echo "make test-slow: no slow drills yet"

## Benchmarks: each figure printed beside a baseline from the same run; JSON in bench/results/.
bench: deps
	hack/bench.sh

deps:
	@hack/install-deps.sh

build: deps
	$(CARGO) build --workspace

fmt:
	$(CARGO) fmt --all
