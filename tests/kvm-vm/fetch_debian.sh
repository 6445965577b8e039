#!/usr/bin/env bash
# Fetches, once, Debian's kernel (the version linux-image-amd64 names, never
# hard-coded) and busybox-static into CACHE, unpacked under CACHE/root, with
# the kernel's ELF extracted to CACHE/vmlinux. Used by the KVM harness
# (run.sh) and by examples/linux-vm.
#
#   tests/kvm-vm/fetch_debian.sh CACHE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:?usage: fetch_debian.sh CACHE}
mkdir -p "$cache"
[ -f "$cache/ready" ] && exit 0
for tool in apt-get dpkg-deb python3; do
  command -v "$tool" >/dev/null || { echo "fetch_debian.sh: $tool is missing (run scripts/setup.sh)" >&2; exit 3; }
done
rm -rf "$cache/debs" "$cache/root"
mkdir -p "$cache/debs" "$cache/root"
resolve_kernel() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
kernel_pkg=$(resolve_kernel)
if [ -z "$kernel_pkg" ]; then  # empty package lists on a fresh machine
  apt-get update -qq >/dev/null 2>&1 || true
  kernel_pkg=$(resolve_kernel)
fi
[ -n "$kernel_pkg" ] || { echo "fetch_debian.sh: cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 3; }
(cd "$cache/debs" && apt-get download -q "$kernel_pkg" busybox-static >/dev/null 2>&1) || {
  echo "fetch_debian.sh: apt-get download $kernel_pkg busybox-static failed" >&2; exit 3; }
for deb in "$cache"/debs/*.deb; do dpkg-deb -x "$deb" "$cache/root"; done
vmlinuz=$(ls "$cache"/root/boot/vmlinuz-* | head -n1)
python3 "$here/extract_vmlinux.py" "$vmlinuz" "$cache/vmlinux"
rm -rf "$cache/debs"
touch "$cache/ready"
