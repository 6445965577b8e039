#!/usr/bin/env bash
# Installs everything thaw needs on Debian 12 (as root, or with sudo) and
# configures and builds it into build/. Safe to run again: it installs only
# what is missing and rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  cmake g++ make pkg-config python3
  libabsl-dev libunicorn-dev libgtest-dev libgmock-dev
  # snapshots: compression, io_uring, checksums, the manifest
  libzstd-dev liburing-dev libxxhash-dev libprotobuf-dev protobuf-compiler
  # signed snapshots: ed25519 signatures and BLAKE2b frame digests
  libsodium-dev
  # the seccomp allow-list of thaw's own threads
  libseccomp-dev
  # benchmarks and their report (scripts/bench.sh)
  libbenchmark-dev python3-matplotlib
  # the Python binding, its tests and `pip install ./bindings-python`
  python3-dev pybind11-dev python3-pybind11 python3-pytest python3-venv
  python3-pip python3-setuptools
  # Linux programs for the program-guest tests: static ones (musl-gcc) and
  # Debian's lua5.4 (python3 is above)
  musl-tools lua5.4
  # numpy for examples/python-function and the Python benchmark rows
  python3-numpy
  # examples/faas: its HTTP server and JSON (and its load test's client)
  libcpp-httplib-dev nlohmann-json3-dev
  # the fuzz targets (scripts/fuzz.sh): clang and its libFuzzer runtime
  clang libclang-rt-14-dev
  # the KVM-in-QEMU test harness (tests/kvm-vm/run.sh)
  qemu-system-x86 cpio kmod
  # remote snapshot stores: HTTP range reads and S3 (libcurl), and the real
  # servers the remote tests start on loopback: nginx for HTTP, a one-node
  # Ceph (monitor, memory-backed OSD) with radosgw for S3
  libcurl4-openssl-dev nginx ceph-mon ceph-osd radosgw
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE="${THAW_BUILD_TYPE:-RelWithDebInfo}" >/dev/null
cmake --build build -j"$(nproc)"
