#!/usr/bin/env python3
"""Fails when a lower layer of thaw includes a higher one.

The layers, lowest first (doc/architecture.md draws them):

  abi        include/thaw/abi.h, guest.h, program.h, linux_agent.h   the guest ABIs (C)
  base       base/                        errno, vCPU state, little endian
  snapshot   snapshot/                    format, reader, writer, engines
  api        include/thaw/ (the rest)     the public C++ API
  remote     remote/                      remote stores, the chunk cache
  lib        lib/                         the monitor: Vm, backends, runtimes
  guest      guest/                       the freestanding guest SDK
  users      examples/ bindings-python/ benchmarks/   the API's users
  tests      tests/ fuzz/                 anything below them

Each layer may include its own folder and the layers listed for it below;
nothing else of thaw's. The generated manifest.pb.h counts as snapshot/.
Usage: check_layers.py [repository root]; exit 1 and one line per bad
include otherwise. check_layers.py --self-test checks that a made-up tree
with an upward include fails and a clean one passes.
"""
import os
import re
import sys
import tempfile

ABI = {"thaw/abi.h", "thaw/guest.h", "thaw/program.h", "thaw/linux_agent.h"}

# layer -> (the include prefixes or headers it may use)
ALLOWED = {
    "abi": {"abi"},
    "base": {"base"},
    "snapshot": {"abi", "base", "snapshot"},
    "api": {"api"},
    # The remote layer implements thaw/remote.h, so it sees the public API.
    "remote": {"abi", "base", "snapshot", "api", "remote"},
    "lib": {"abi", "base", "snapshot", "api", "remote", "lib"},
    "guest": {"abi"},
    # Users see the public API; the benchmarks may also use the internal
    # seams they measure against (the Firecracker-style baseline).
    "examples": {"abi", "api", "examples"},
    "bindings-python": {"abi", "api"},
    # ...and the remote benchmark starts its servers with the tests' own
    # launchers (tests/remote/servers.h).
    "benchmarks": {"abi", "api", "base", "snapshot", "remote", "lib",
                   "benchmarks", "tests"},
    "tests": {"abi", "api", "base", "snapshot", "remote", "lib", "tests"},
    # Fuzz targets reach the parsers directly, as the tests do.
    "fuzz": {"abi", "api", "base", "snapshot", "remote", "lib", "fuzz"},
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of_file(path):
    parts = path.split(os.sep)
    if parts[0] == "include":
        return "abi" if "/".join(parts[1:]) in ABI else "api"
    return parts[0] if parts[0] in ALLOWED else None


def layer_of_include(name):
    if name in ABI:
        return "abi"
    top = name.split("/")[0]
    if top == "thaw":
        return "api"
    if top in ALLOWED:
        return top
    return None  # not thaw's (absl, gtest, a system header in quotes)


def check(root):
    bad = []
    checked = 0
    for top in ["include", "base", "snapshot", "remote", "lib", "guest", "examples",
                "bindings-python", "benchmarks", "tests", "fuzz"]:
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for f in files:
                if not f.endswith((".h", ".cc", ".c", ".S")):
                    continue
                full = os.path.join(dirpath, f)
                rel = os.path.relpath(full, root)
                layer = layer_of_file(rel)
                with open(full, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
                checked += 1
                for number, line in enumerate(text.splitlines(), 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    target = layer_of_include(m.group(1))
                    if target is None or target in ALLOWED[layer]:
                        continue
                    bad.append(f"{rel}:{number}: layer '{layer}' includes "
                               f"\"{m.group(1)}\" from layer '{target}'")
    return bad, checked


def self_test():
    with tempfile.TemporaryDirectory() as root:
        def write(rel, text):
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            with open(os.path.join(root, rel), "w") as fh:
                fh.write(text)
        write("base/a.h", '#include "absl/status/status.h"\n')
        write("snapshot/b.cc", '#include "base/a.h"\n#include "thaw/abi.h"\n')
        write("lib/c.cc", '#include "snapshot/b.h"\n#include "thaw/vm.h"\n')
        bad, _ = check(root)
        assert not bad, bad
        write("snapshot/d.cc", '#include "lib/vm_core.h"\n')
        write("base/e.cc", '#include "thaw/vm.h"\n')
        bad, _ = check(root)
        assert len(bad) == 2 and "snapshot/d.cc:1" in bad[0] + bad[1], bad
    print("check_layers self-test: an upward include fails, a clean tree passes")
    return 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..")
    bad, checked = check(root)
    for line in bad:
        print(line)
    if bad:
        print(f"check_layers: {len(bad)} include(s) run against the layers "
              "(see doc/architecture.md)")
        return 1
    print(f"check_layers: {checked} files, every include points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
