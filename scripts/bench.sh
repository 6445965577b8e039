#!/usr/bin/env bash
# Sets up thaw and runs every benchmark in one process (so every ratio
# compares figures from the same run), then writes the report:
# benchmarks/results/latest.json, latest.md and latest.png.
# THAW_BENCH_SMOKE=1 runs each scenario once at a small size and writes to
# build/bench-smoke/ instead (what CI runs). Extra arguments go to
# thaw_bench (e.g. --benchmark_filter=restore/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
out=benchmarks/results
smoke=()
if [ "${THAW_BENCH_SMOKE:-0}" = 1 ]; then
  out=build/bench-smoke
  smoke=(--smoke)
fi
mkdir -p "$out"
build/benchmarks/thaw_bench --benchmark_out="$out/raw.json" \
  --benchmark_out_format=json --samples_out="$out/samples.json" "$@"
# The FaaS load test (examples/faas under load, one function per isolation
# mode): its own JSON and plot, and its targets in the report.
/usr/bin/python3 benchmarks/faas_load.py --build build --out "$out/faas-load" "${smoke[@]}"
# The stress test's figures (1000 restores per engine from 8 threads,
# descriptors and resident memory before and after) go in the report too.
rm -f "$out/stress.jsonl"
THAW_STRESS_OUT="$out/stress.jsonl" build/tests/stress_test \
  --gtest_filter='Engines/*' >/dev/null
# Linux VMs (boot to the agent against restore + first call and reset +
# call) run on KVM only: here inside the QEMU harness, whose nested times
# give ratios only. Not in a smoke run (the test suite boots them there).
linux_vm=()
if [ "${THAW_BENCH_SMOKE:-0}" != 1 ]; then
  linux_vm=(--linux-vm "$out/linux-vm.json")
  rm -f "$out/linux-vm.json"
  examples/linux-vm/build.sh --build build build/linux-vm
  THAW_LINUX_VM_DIR="$PWD/build/linux-vm" THAW_KVM_VM_FILES="$PWD/build/linux-vm" \
    tests/kvm-vm/run.sh --cache build/kvm-vm-cache \
    --result /tmp/linux-vm.json "$out/linux-vm.json" -- \
    build/benchmarks/linux_vm_bench --benchmark_out=/tmp/linux-vm.json \
    --benchmark_out_format=json ||
    echo "bench.sh: the Linux VM benchmark failed in the QEMU harness" >&2
fi
/usr/bin/python3 benchmarks/report.py --raw "$out/raw.json" --samples "$out/samples.json" \
  --faas "$out/faas-load.json" --stress "$out/stress.jsonl" "${linux_vm[@]}" \
  --out "$out/latest" "${smoke[@]}"
