#!/usr/bin/env bash
# Runs Pacer's benchmarks (`make bench`): builds pacer-bench and pacer in release mode and runs
# each suite. Every figure is printed beside a baseline measured in the same run; results are
# written as JSON to bench/results/ (<suite>-<UTC time>.json and <suite>-latest.json). A missed
# target is reported, not an error: this exits non-zero only if a benchmark fails to run.
#
# Usage: hack/bench.sh [SUITE [OPTIONS...]]
#   SUITE    all (the default: store, then api, then placement), store, api or placement
#   OPTIONS  passed to `pacer-bench SUITE` (a single suite only), e.g.
#              store --duration-secs 10 --concurrency 32 --etcd-endpoint 127.0.0.1:2379
#              api --watchers 500 --scenarios get,watch --pacer-bin target/release/pacer
#              placement --nodes 1000 --apps 100 --instances-per-app 100
#            (see `cargo run -p pacer-bench -- SUITE --help`)
#
# The api suite runs the real `pacer dev` (target/release/pacer, built here) and opens 1,000
# watch connections: it raises its soft open-files limit to the hard limit itself, and says so
# if the hard limit (`ulimit -Hn`) is too low. The placement suite runs `pacer dev` too, registers
# hollow nodes with `pacer node register-hollow` and times 100 Apps × 100 instances from the Apps' POSTs
# until the deployment controller has created and placement has bound all 10,000 Instances.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

suite=all
if [[ $# -gt 0 && $1 != -* ]]; then
    suite=$1
    shift
elif [[ $# -gt 0 ]]; then
    echo "bench.sh: options need a suite first: hack/bench.sh store|api|placement OPTIONS..." >&2
    exit 2
fi
case $suite in
    all) suites=(store api placement) ;;
    store | api | placement) suites=("$suite") ;;
    *)
        echo "bench.sh: unknown suite '$suite' (all, store, api, placement)" >&2
        exit 2
        ;;
esac

missing=()
command -v protoc >/dev/null || missing+=("protoc (Debian: protobuf-compiler)")
if [[ " ${suites[*]} " == *" store "* && " $* " != *" --etcd-endpoint"* ]]; then
    command -v etcd >/dev/null || missing+=("etcd (Debian: etcd-server)")
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "bench.sh: missing: ${missing[*]}" >&2
    exit 1
fi

cargo build --release --locked -p pacer-bench -p pacer
bench="${CARGO_TARGET_DIR:-target}/release/pacer-bench"
for name in "${suites[@]}"; do
    echo "== pacer-bench $name"
    "$bench" "$name" "$@"
done
