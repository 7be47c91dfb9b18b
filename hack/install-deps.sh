#!/usr/bin/env bash
# Installs what Pacer's build, tests and benchmarks need, idempotently: a second run on a
# machine that has everything does nothing but check. Called by `make run`, `make test` and
# `make bench`; safe to run by hand.
#
#   protobuf-compiler  protoc, needed to build the etcd-client crate
#   libprotobuf-dev    the well-known .proto files (google/protobuf/*.proto) protoc imports
#   etcd-server        etcd 3.4, the store that `pacer server` and the conformance suite use
#   etcd-client        etcdctl, for poking at a store by hand and for benchmarks
#   prometheus         for promtool: cli/tests/metrics.rs runs `promtool check metrics` on /metrics
#   busybox-static     a static busybox that cli/tests/agent.rs copies into a FROM-scratch
#                      Docker image (no registry can be reached, so test images are built)
#   kubectl 1.20       Debian's kubernetes-client, for cli/tests/kubectl_1_20.rs: downloaded with
#                      `apt-get download` and unpacked with `dpkg-deb -x` into
#                      ${PACER_TOOLS_DIR:-target/tools}/kubectl-1.20 (binary: usr/bin/kubectl),
#                      never installed: it conflicts with the preinstalled kubectl 1.32
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

apt_packages=(protobuf-compiler libprotobuf-dev etcd-server etcd-client busybox-static prometheus)

missing=()
for package in "${apt_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "hack/install-deps.sh: installing ${missing[*]}"
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# kubectl 1.20 (Debian bookworm's kubernetes-client), unpacked beside the build, not installed.
tools_dir=${PACER_TOOLS_DIR:-$repo/target/tools}
kubectl_120=$tools_dir/kubectl-1.20/usr/bin/kubectl
if [[ ! -x $kubectl_120 ]]; then
  echo "hack/install-deps.sh: fetching kubectl 1.20 (Debian kubernetes-client) into $tools_dir/kubectl-1.20"
  download=$(mktemp -d)
  trap 'rm -rf "$download"' EXIT
  apt_download=(apt-get download -qq kubernetes-client)
  # As root, apt drops to the _apt user to download, which cannot write into mktemp's 0700
  # directory: download as root instead (a plain user downloads as itself anyway).
  if [[ $(id -u) -eq 0 ]]; then apt_download+=(-o APT::Sandbox::User=root); fi
  if ! (cd "$download" && "${apt_download[@]}" >/dev/null 2>&1); then
    # No package lists yet (a fresh container): fetch them, then try again.
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
    "${sudo[@]}" apt-get update -qq
    (cd "$download" && "${apt_download[@]}" >/dev/null)
  fi
  rm -rf "$tools_dir/kubectl-1.20"
  mkdir -p "$tools_dir/kubectl-1.20"
  dpkg-deb -x "$download"/kubernetes-client_*.deb "$tools_dir/kubectl-1.20"
  rm -rf "$download"
  trap - EXIT
fi
if ! "$kubectl_120" version --client 2>/dev/null | grep -q 'GitVersion:"v1\.20\.'; then
  echo "hack/install-deps.sh: $kubectl_120 is not kubectl 1.20 (remove $tools_dir/kubectl-1.20 to fetch it again)" >&2
  exit 1
fi

for tool in protoc etcd etcdctl promtool cargo; do
  command -v "$tool" >/dev/null || { echo "hack/install-deps.sh: $tool is still missing" >&2; exit 1; }
done
for component in rustfmt clippy; do
  cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 ||
    { echo "hack/install-deps.sh: cargo $component is missing (rustup component add $component)" >&2; exit 1; }
done

# Python test tools (the Marathon client) in a virtual environment under target/.
bash "$(dirname "$0")/install-python-deps.sh"
