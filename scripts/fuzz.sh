#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang, ASan and UBSan into
# build-fuzz/ and runs each one: for RUNS executions each (default 1000000),
# or for SECONDS seconds each when THAW_FUZZ_SECONDS is set (what the test
# command does). Seeds: fuzz/corpus/<target>/ (committed) plus files made
# here from the built guests and snapshots. Findings (crash-*, leak-*,
# timeout-*) are written to build-fuzz/findings/<target>/ and fail the run.
#
#   scripts/fuzz.sh [RUNS]       (THAW_FUZZ_TARGETS="restore ..." picks targets)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-1000000}"
targets=(snapshot_reader elf_loader hypercall program_syscalls restore worker_protocol linux_devices)
# THAW_FUZZ_TARGETS="a b" runs only those.
[ -n "${THAW_FUZZ_TARGETS:-}" ] && read -r -a targets <<< "$THAW_FUZZ_TARGETS"
missing=()
for p in clang libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTHAW_FUZZ=ON -DTHAW_SANITIZE=ON -DTHAW_BUILD_PYTHON=OFF \
  -DTHAW_BUILD_BENCHMARKS=OFF -DTHAW_BUILD_TESTS=OFF -DTHAW_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]/%/_fuzzer}" >/dev/null

# Seeds made from this build's artifacts: real ELF guests and programs, and
# real snapshots (the normal build's, when there is one).
seeds=build-fuzz/seeds
mkdir -p "$seeds/snapshot_reader" "$seeds/elf_loader" "$seeds/hypercall" \
  "$seeds/program_syscalls" "$seeds/restore" "$seeds/worker_protocol" \
  "$seeds/linux_devices"
for f in build/tests/*.elf build/examples/*.elf build/tests/server_static; do
  [ -f "$f" ] && cp "$f" "$seeds/elf_loader/" || true
done
if [ -x build/examples/thaw ] && [ -f build/tests/test_guest.elf ]; then
  build/examples/thaw snapshot build/tests/test_guest.elf --memory 8 \
    -o "$seeds/snapshot_reader/test_guest.thaw" >/dev/null 2>&1 || true
  # A signed one too (the harness re-signs it with its own key).
  rm -f "$seeds/key" "$seeds/key.pub"
  build/examples/thaw keygen "$seeds/key" >/dev/null 2>&1 &&
    build/examples/thaw snapshot build/tests/test_guest.elf --memory 8 \
      --sign "$seeds/key" -o "$seeds/snapshot_reader/signed.thaw" \
      >/dev/null 2>&1 || true
  rm -f "$seeds/key" "$seeds/key.pub"
  # The restore target gets the function guest's snapshot and a Linux
  # program's (descriptors, mounts and mappings to restore).
  cp "$seeds/snapshot_reader/test_guest.thaw" "$seeds/restore/" 2>/dev/null || true
  if [ -f build/tests/server_static ]; then
    build/examples/thaw snapshot build/tests/server_static --memory 16 \
      --fs "$PWD/fuzz/corpus:/data" -o "$seeds/restore/program.thaw" \
      >/dev/null 2>&1 || true
  fi
fi

status=0
for t in "${targets[@]}"; do
  findings="build-fuzz/findings/$t"
  work="build-fuzz/corpus/$t"
  mkdir -p "$findings" "$work"
  limit=(-runs="$runs")
  [ -n "${THAW_FUZZ_SECONDS:-}" ] && limit=(-max_total_time="$THAW_FUZZ_SECONDS")
  echo "== $t: ${limit[*]} =="
  start=$(date +%s)
  if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      "build-fuzz/fuzz/${t}_fuzzer" "${limit[@]}" -timeout=10 -rss_limit_mb=4096 \
      -artifact_prefix="$findings/" -print_final_stats=1 \
      "$work" "fuzz/corpus/$t" "$seeds/$t" 2>"build-fuzz/$t.log"; then
    echo "$t: FINDING (see build-fuzz/$t.log and $findings/)"
    tail -40 "build-fuzz/$t.log"
    status=1
  fi
  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "build-fuzz/$t.log" || true
  echo "$t: $(( $(date +%s) - start )) s"
done
exit $status
