#!/usr/bin/env bash
# Installs what Pacer's build, tests and benchmarks need, idempotently: a second run on a
# machine that has everything does nothing but check. Called by `make run`, `make test` and
# `make bench`; safe to run by hand.
#
#   protobuf-compiler  protoc, needed to build the etcd-client crate
#   etcd-server        etcd 3.4, the store that `pacer server` and the conformance suite use
#   etcd-client        etcdctl, for poking at a store by hand and for benchmarks
set -euo pipefail

apt_packages=(protobuf-compiler etcd-server etcd-client)

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

for tool in protoc etcd etcdctl cargo; do
  command -v "$tool" >/dev/null || { echo "hack/install-deps.sh: $tool is still missing" >&2; exit 1; }
done
for component in rustfmt clippy; do
  cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 ||
    { echo "hack/install-deps.sh: cargo $component is missing (rustup component add $component)" >&2; exit 1; }
done
