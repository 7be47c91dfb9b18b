#!/usr/bin/env bash
# Runs Pacer's benchmarks (`make bench`): builds pacer-bench and pacer in release mode and runs
# each suite. Every figure is printed beside a baseline measured in the same run; results are
# written as JSON to bench/results/ (<suite>-<UTC time>.json and <suite>-latest.json). A missed
# target is reported, not an error: this exits non-zero only if a benchmark fails to run.
#
# Usage: hack/bench.sh [SUITE [OPTIONS...]]
#   SUITE    all (the default: store, then api, then placement, then agent), store, api,
#            placement or agent
#   OPTIONS  passed to `pacer-bench SUITE` (a single suite only), e.g.
#              store --duration-secs 10 --concurrency 32 --etcd-endpoint 127.0.0.1:2379
#              api --watchers 500 --scenarios get,watch --pacer-bin target/release/pacer
#              placement --nodes 1000 --apps 100 --instances-per-app 100
#              agent --scenarios replacement,heartbeat --hollow-agents 1000 --window-secs 30
#              rollout --apps 100 --instances-per-app 10 --nodes 100
#              marathon --sizes 50,100,200,500 --shapes apps,instances --nodes 50
#              offers --frameworks 3 --launches-per-offer 5 --nodes 1000 --apps 100 --instances-per-app 100
#              events --subscribers 100 --instances 1000 --nodes 100
#              health --apps 10 --instances-per-app 1000 --interval-secs 10 --nodes 100 --window-secs 30
#            (see `cargo run -p pacer-bench -- SUITE --help`)
#
# The api suite runs the real `pacer dev` (target/release/pacer, built here) and opens 1,000
# watch connections: it raises its soft open-files limit to the hard limit itself, and says so
# if the hard limit (`ulimit -Hn`) is too low. The placement suite runs `pacer dev` too, registers
# hollow nodes with `pacer node register-hollow` and times 100 Apps × 100 instances from the Apps' POSTs
# until the deployment controller has created and placement has bound all 10,000 Instances.
# The agent suite runs `pacer dev` with two real `pacer agent` processes (process runtime) and
# SIGKILLs one to time the replacement, then `pacer agent hollow --count 1000` to measure the
# control plane's heartbeat cost beside its idle figures. The rollout suite runs `pacer dev` with
# `pacer agent hollow --count 100` and times a rolling upgrade of 100 Apps x 10 instances beside
# the initial rollout of the same Apps.
# The marathon suite runs Marathon's scale scenarios (N apps x 1 instance, 1 app x N instances)
# through /v2/apps on a fresh `pacer dev` + `pacer agent hollow` per run, beside the same Apps
# POSTed through /apis.
# The offers suite runs `pacer dev --no-agent` with 1,000 hollow nodes and 3 in-bench frameworks
# that accept offers over HTTP until 10,000 instances are launched, beside in-server placement of as
# many (the placement suite's run, on its own `pacer dev`) in the same run.
# The events suite holds 100 in-bench SSE subscribers on /v2/events during a 1,000-instance
# deployment on `pacer agent hollow` (event delay p50/p99, events per subscriber, disconnects),
# beside 1 subscriber during the same deployment of another App in the same run.
# The health suite runs `pacer agent hollow --probe-target` (the agent's real prober aimed at an
# in-bench HTTP server that counts checks) with 10,000 instances checked every 10 s: checks/s,
# control-plane CPU and store writes/s, beside the idle control plane in the same run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

suite=all
if [[ $# -gt 0 && $1 != -* ]]; then
    suite=$1
    shift
elif [[ $# -gt 0 ]]; then
    echo "bench.sh: options need a suite first: hack/bench.sh store|api|placement|agent OPTIONS..." >&2
    exit 2
fi
case $suite in
    all) suites=(store api placement agent rollout marathon offers events health) ;;
    store | api | placement | agent | rollout | marathon | offers | events | health) suites=("$suite") ;;
    *)
        echo "bench.sh: unknown suite '$suite' (all, store, api, placement, agent, rollout, marathon, offers, events, health)" >&2
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
