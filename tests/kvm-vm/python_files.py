#!/usr/bin/env python3
"""Prints, colon-separated, the host files a Python function in the program
tests needs (tests/programs/function.py): the interpreter, its shared
libraries and the standard-library modules it imports, so the KVM-in-QEMU
harness can stage exactly those into its VM (THAW_KVM_VM_FILES) instead of
all of /usr. Usage: python_files.py GUEST_PYTHON_DIR"""
import os
import subprocess
import sys

# The modules function.py and thaw_program import, and what Python's own
# start-up loads.
PROBE = r"""
import sys
sys.path.insert(0, sys.argv[1])
import datetime, decimal, hashlib, json, os, random, re, struct, traceback
import thaw_program
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None)
    if path and path.startswith("/usr/"):
        print(path)
"""


def main():
    python = os.path.realpath("/usr/bin/python3")
    files = {python}
    out = subprocess.run([python, "-c", PROBE, sys.argv[1]], check=True,
                         capture_output=True, text=True).stdout
    files.update(line for line in out.splitlines() if line)
    libdir = os.path.dirname(python).replace("/bin", "/lib")
    version = "python%d.%d" % sys.version_info[:2]
    # The landmark Python looks for to find its prefix.
    files.add(os.path.join(libdir, version, "os.py"))
    # The interpreter's shared libraries, as the dynamic loader finds them.
    ldd = subprocess.run(["ldd", python], check=True, capture_output=True,
                         text=True).stdout
    for line in ldd.splitlines():
        # "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)": the name
        # the loader asks for, in the directory the test's view mounts.
        for word in line.split():
            if word.startswith("/"):
                files.add(word.replace("/lib/x86_64-linux-gnu/",
                                       "/usr/lib/x86_64-linux-gnu/"))
    for path in list(files):
        if path.endswith(".so") or "/lib-dynload/" in path:
            ldd = subprocess.run(["ldd", path], capture_output=True,
                                 text=True).stdout
            for line in ldd.splitlines():
                for word in line.split():
                    if word.startswith("/"):
                        files.add(word.replace("/lib/x86_64-linux-gnu/",
                                               "/usr/lib/x86_64-linux-gnu/"))
    print(":".join(sorted(f for f in files if os.path.exists(f))))


if __name__ == "__main__":
    main()
