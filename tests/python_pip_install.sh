#!/usr/bin/env bash
# `pip install ./bindings-python` as bindings-python/README.md says: a fresh
# venv over Debian's python3 and its site packages (setuptools, pybind11),
# no network, then a guest booted and called through the installed package.
set -euo pipefail
root=$1 work=$2 guest=$3
rm -rf "$work"
mkdir -p "$work"
/usr/bin/python3 -m venv --system-site-packages "$work/venv"
"$work/venv/bin/pip" install --quiet --no-build-isolation --no-index "$root/bindings-python"
cd "$work"  # not the source tree: import the installed package
"$work/venv/bin/python" - "$guest" <<'PY'
import pathlib
import sys
import thaw
assert pathlib.Path(thaw.__file__).is_relative_to(sys.prefix), thaw.__file__
assert (pathlib.Path(thaw.__file__).parent / "__init__.pyi").exists()
with thaw.Vm(thaw.VmConfig(memory_size=16 << 20, backend="emulated")) as vm:
    vm.load_guest(sys.argv[1])
    vm.boot()
    assert vm.call("echo", b"installed") == b"installed"
print("pip-installed thaw works:", thaw.__file__)
PY
rm -rf "$work"
