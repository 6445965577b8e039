#!/usr/bin/env bash
# Sets up thaw and runs every test: unit tests, the Vm tests on the emulated
# backend, the CLI tests, and the same Vm tests on a real /dev/kvm inside
# QEMU (tests/kvm-vm/run.sh), which fails rather than skips if KVM cannot be
# brought up. Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cd build
ctest --output-on-failure --timeout 1800 "$@"
