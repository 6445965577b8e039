#!/usr/bin/env bash
# Sets up thaw and runs every test: unit tests, the layer check, the engines
# alone, the Vm tests on the emulated backend, the snapshot suites (engines,
# corruption walk), the CLI tests, the Python binding, an install used by an
# outside project, and the same Vm and snapshot tests on a real /dev/kvm inside
# QEMU (tests/kvm-vm/run.sh), which fails rather than skips if KVM cannot be
# brought up. Then the in-process suites again under ASan+UBSan (build-asan/)
# and the threaded suites under TSan (build-tsan/); THAW_SKIP_SANITIZERS=1
# skips both. Then each fuzz target for 20 s (build-fuzz/, clang;
# THAW_SKIP_FUZZ=1 skips it). Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
(cd build && ctest --output-on-failure --timeout 1800 "$@")

if [ "${THAW_SKIP_SANITIZERS:-0}" != 1 ]; then
  echo "== ASan+UBSan build: in-process suites =="
  # No Python binding here: an ASan-built module cannot load into Debian's
  # (uninstrumented) python3; the normal build's pytest suite covers it.
  cmake -S . -B build-asan -DTHAW_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug \
    -DTHAW_BUILD_PYTHON=OFF >/dev/null
  cmake --build build-asan -j"$(nproc)" >/dev/null
  # The KVM suite runs in the normal build only: under QEMU's software
  # emulation ASan would double its time for host code the in-process
  # suites already cover.
  (cd build-asan &&
   THAW_SANITIZED=1 LSAN_OPTIONS="suppressions=$PWD/../tests/lsan.supp" \
   UBSAN_OPTIONS=print_stacktrace=1 \
   ctest --output-on-failure -LE 'kvm|install' "$@")
fi

if [ "${THAW_SKIP_SANITIZERS:-0}" != 1 ]; then
  # The restore engines run threads (fault server, prefetcher, verifier)
  # beside the vCPU, and the pool and the FaaS server serve many callers;
  # ThreadSanitizer checks them where they run.
  echo "== TSan build: the threaded suites =="
  cmake -S . -B build-tsan -DTHAW_SANITIZE_THREAD=ON -DCMAKE_BUILD_TYPE=Debug \
    -DTHAW_BUILD_PYTHON=OFF -DTHAW_BUILD_BENCHMARKS=OFF >/dev/null
  cmake --build build-tsan -j"$(nproc)" --target vm_test snapshot_test confinement_test \
    snapshot_corruption_test memory_source_test pool_test thaw_faas \
    test_guest bad_init_guest test_programs >/dev/null
  (cd build-tsan &&
   THAW_SANITIZED=1 \
   TSAN_OPTIONS="halt_on_error=1 suppressions=$PWD/../tests/tsan.supp" \
   ctest --output-on-failure \
     -R '^(vm_emulated|snapshot_emulated|snapshot_corruption|memory_sources|pool|faas_server|thread_confinement)$' "$@")
fi

if [ "${THAW_SKIP_FUZZ:-0}" != 1 ]; then
  # Every fuzz target (fuzz/) for a bounded time on every change; a finding
  # fails the run. scripts/fuzz.sh RUNS runs them for longer.
  echo "== fuzz targets, ${THAW_FUZZ_SECONDS:-20} s each =="
  THAW_FUZZ_SECONDS="${THAW_FUZZ_SECONDS:-20}" scripts/fuzz.sh
fi
