#!/usr/bin/env bash
# Builds what a thaw Linux VM boots: Debian's kernel and an initramfs with
# thaw's agent as /init, busybox-static, the kernel's virtio modules and the
# functions in examples/linux-vm/functions (or DIR given with --functions).
#
#   examples/linux-vm/build.sh [--build BUILD_DIR] [--functions DIR] OUT_DIR
#
# Writes OUT_DIR/vmlinuz (the bzImage), OUT_DIR/vmlinux (the same kernel as
# an ELF, for the ELF entry) and OUT_DIR/initramfs.cpio. The
# Debian packages are fetched once into BUILD_DIR/kvm-vm-cache, the cache
# the KVM test harness uses too. BUILD_DIR (default: build) must hold a
# built thaw (for guest/thaw-agent).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build="$root/build"
functions="$here/functions"
while [ $# -gt 1 ]; do
  case "$1" in
    --build) build=$(readlink -f "$2"); shift 2 ;;
    --functions) functions=$(readlink -f "$2"); shift 2 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
out=${1:?usage: build.sh [--build BUILD_DIR] [--functions DIR] OUT_DIR}
agent="$build/guest/thaw-agent"
[ -x "$agent" ] || { echo "build.sh: $agent is missing (build thaw first)" >&2; exit 2; }
cache="$build/kvm-vm-cache"
"$root/tests/kvm-vm/fetch_debian.sh" "$cache"
mkdir -p "$out"
release=$(basename "$(ls -d "$cache"/root/lib/modules/* | head -n1)")
cp "$cache/root/boot/vmlinuz-$release" "$out/vmlinuz"
cp "$cache/vmlinux" "$out/vmlinux"
python3 "$here/build_initramfs.py" --agent "$agent" \
  --busybox "$cache/root/bin/busybox" \
  --modules "$cache/root/lib/modules/$release/kernel" \
  --functions "$functions" --out "$out/initramfs.cpio"
