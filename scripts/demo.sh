#!/usr/bin/env bash
# Sets up thaw and runs the main demo: create a micro-VM on the best backend
# here, boot the checksum example guest, call it, and print the reply and the
# phase report.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo
./build/examples/hello
