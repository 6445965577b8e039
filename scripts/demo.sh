#!/usr/bin/env bash
# Sets up thaw and runs the main demo: create a micro-VM on the best backend
# here, boot the checksum example guest, call it, and print the reply and the
# phase report; then snapstart: boot a function with an expensive init,
# snapshot it, and serve 1000 cold starts per restore engine by restoring
# the snapshot instead, with boot+init against restore+call.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo
./build/examples/hello
echo
./build/examples/snapstart --restores 1000
echo
# The same for an unmodified Python function (Debian's python3 as a Linux
# program guest, with numpy among its imports).
./build/examples/python_function --restores 5
