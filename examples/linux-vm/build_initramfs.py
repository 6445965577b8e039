#!/usr/bin/env python3
"""Writes the initramfs of a thaw Linux VM as a newc cpio archive.

  build_initramfs.py --agent THAW_AGENT --busybox BUSYBOX \
      --modules KERNEL_MODULE_DIR --functions DIR --out INITRAMFS.cpio

Its /init is thaw's agent (guest/linux-agent/agent.c), which loads the
virtio modules listed in /thaw/modules (Debian builds them as modules),
then serves Vm::Call(name, input) by running /thaw/functions/NAME. busybox
gives the functions a shell and the usual tools. The archive is written
here, entry by entry, so that /dev/console (which the kernel opens for
init) needs neither root nor mknod, and the result is byte-for-byte the
same for the same inputs.
"""
import argparse
import os
import subprocess
import sys

# Each after what it needs (Debian ships no modules.dep); the agent also
# retries a module whose dependencies came later.
VIRTIO_MODULES = [
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/char/virtio_console.ko",
]


class Cpio:
    def __init__(self, out):
        self.out = out
        self.inode = 1

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        fields = [self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(name) + 1, 0]
        self.inode += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        record = header + name.encode() + b"\0"
        record += b"\0" * (-len(record) % 4)
        record += data + b"\0" * (-len(data) % 4)
        self.out.write(record)

    def directory(self, name):
        self._entry(name, 0o040755)

    def file(self, name, data, mode=0o644):
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name, target):
        self._entry(name, 0o120777, target.encode())

    def char_device(self, name, major, minor):
        self._entry(name, 0o020600, rdev=(major, minor))

    def trailer(self):
        self._entry("TRAILER!!!", 0)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agent", required=True)
    p.add_argument("--busybox", required=True)
    p.add_argument("--modules", required=True,
                   help="the kernel's lib/modules/VERSION/kernel directory")
    p.add_argument("--functions", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    for m in VIRTIO_MODULES:
        if not os.path.isfile(os.path.join(a.modules, m)):
            sys.exit(f"build_initramfs.py: {m} is not under {a.modules}")
    applets = subprocess.run([a.busybox, "--list"], check=True,
                             capture_output=True, text=True).stdout.split()
    functions = sorted(f for f in os.listdir(a.functions)
                       if os.path.isfile(os.path.join(a.functions, f)))

    tmp = a.out + ".tmp"
    with open(tmp, "wb") as out:
        c = Cpio(out)
        for d in ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc",
                  "sys", "run", "tmp", "thaw", "thaw/functions",
                  "lib", "lib/modules"]:
            c.directory(d)
        c.char_device("dev/console", 5, 1)
        c.file("init", read(a.agent), 0o755)
        c.file("bin/busybox", read(a.busybox), 0o755)
        for applet in applets:
            if applet != "busybox":
                c.symlink(f"bin/{applet}", "busybox")
        names = []
        for m in VIRTIO_MODULES:
            name = "lib/modules/" + os.path.basename(m)
            c.file(name, read(os.path.join(a.modules, m)))
            names.append("/" + name)
        c.file("thaw/modules", ("\n".join(names) + "\n").encode())
        for f in functions:
            c.file(f"thaw/functions/{f}", read(os.path.join(a.functions, f)), 0o755)
        c.trailer()
    os.replace(tmp, a.out)
    print(f"{a.out}: agent, busybox ({len(applets)} applets), "
          f"{len(VIRTIO_MODULES)} modules, functions: {' '.join(functions)}")


if __name__ == "__main__":
    main()
