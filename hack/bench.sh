#!/usr/bin/env bash
# Runs Pacer's benchmarks (`make bench`): builds pacer-bench in release mode and runs each suite.
# Every figure is printed beside a baseline measured in the same run; results are written as
# JSON to bench/results/ (<suite>-<UTC time>.json and <suite>-latest.json). A missed target is
# reported, not an error: this exits non-zero only if a benchmark fails to run.
#
# Usage: hack/bench.sh [SUITE] [OPTIONS...]
#   SUITE    store (the default, and for now the only suite)
#   OPTIONS  passed to `pacer-bench SUITE`, e.g. --duration-secs 10 --concurrency 32
#            --etcd-endpoint 127.0.0.1:2379 (see `cargo run -p pacer-bench -- store --help`)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

suite=store
if [[ $# -gt 0 && $1 != -* ]]; then
    suite=$1
    shift
fi

missing=()
command -v protoc >/dev/null || missing+=("protoc (Debian: protobuf-compiler)")
if [[ $suite == store && " $* " != *" --etcd-endpoint"* ]]; then
    command -v etcd >/dev/null || missing+=("etcd (Debian: etcd-server)")
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "bench.sh: missing: ${missing[*]}" >&2
    exit 1
fi

exec cargo run --release -p pacer-bench -- "$suite" "$@"
