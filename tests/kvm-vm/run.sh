#!/usr/bin/env bash
# Runs a command against a real /dev/kvm inside QEMU, on machines without KVM.
#
#   tests/kvm-vm/run.sh [--cache DIR] [--result GUEST_FILE HOST_FILE] \
#     -- PROGRAM [ARGS...]
#
# QEMU's software emulation (TCG) implements AMD SVM with nested paging, so
# Debian's own kernel booted under `-cpu EPYC,+svm` can load kvm and kvm_amd
# and offer a real /dev/kvm (doc/platform-facts.md, "Real KVM without KVM hardware"). This script:
#   1. downloads (once, into the cache) Debian's linux-image and
#      busybox-static packages with `apt-get download` and unpacks them;
#   2. extracts vmlinux and builds an initramfs holding busybox, the kvm
#      modules, PROGRAM and every shared library it needs (from ldd), plus
#      the folders named in THAW_KVM_VM_FILES (colon-separated);
#   3. boots it, runs PROGRAM ARGS inside with /dev/kvm present, and exits
#      with PROGRAM's exit status. If /dev/kvm cannot be made to work it
#      fails (exit 3): a KVM test never silently skips. With --result, the
#      file PROGRAM wrote at GUEST_FILE inside (a benchmark's JSON) is
#      copied out to HOST_FILE through the console.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache="${THAW_KVM_VM_CACHE:-$here/../../build/kvm-vm-cache}"
result_guest= result_host=
while [ $# -gt 0 ]; do
  case "$1" in
    --cache) cache="$2"; shift 2 ;;
    --result) result_guest="$2"; result_host="$3"; shift 3 ;;
    --) shift; break ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: run.sh [--cache DIR] -- PROGRAM [ARGS...]" >&2; exit 2; }
program=$(readlink -f "$1"); shift
mkdir -p "$cache"
cache=$(readlink -f "$cache")

for tool in qemu-system-x86_64 cpio dpkg-deb apt-get python3; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (run scripts/setup.sh)" >&2; exit 3; }
done

# 1. Kernel and busybox, fetched once (shared with examples/linux-vm).
"$here/fetch_debian.sh" "$cache"
kernel_release=$(basename "$(ls -d "$cache"/root/lib/modules/* | head -n1)")
moddir="$cache/root/lib/modules/$kernel_release/kernel"

# 2. The initramfs: busybox, modules, the program and its libraries.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,modules}
cp "$cache/root/bin/busybox" "$stage/bin/busybox"
for module in virt/lib/irqbypass.ko drivers/crypto/ccp/ccp.ko arch/x86/kvm/kvm.ko arch/x86/kvm/kvm-amd.ko; do
  cp "$moddir/$module" "$stage/modules/"
done
copy_with_libs() {
  local file=$1
  mkdir -p "$stage$(dirname "$file")"
  cp -L "$file" "$stage$file"
  ldd "$file" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
    [ -e "$stage$lib" ] && continue
    mkdir -p "$stage$(dirname "$lib")"
    cp -L "$lib" "$stage$lib"
  done
}
copy_with_libs "$program"
IFS=: read -r -a extra <<< "${THAW_KVM_VM_FILES:-}"
for path in "${extra[@]}"; do
  [ -n "$path" ] || continue
  # Under the name given (a library's soname symlink is what the dynamic
  # loader asks for) and under its resolved path.
  for name in "$path" "$(readlink -f "$path")"; do
    mkdir -p "$stage$(dirname "$name")"
    cp -rL "$path" "$stage$name"
  done
done
{
  printf 'cd %q\n' "$PWD"
  printf 'export'
  for name in $(compgen -e | grep -E '^(THAW_|GTEST_)' || true); do
    printf ' %s=%q' "$name" "${!name}"
  done
  printf '\n'
  printf '%q' "$program"
  for arg in "$@"; do printf ' %q' "$arg"; done
  printf '\n'
} > "$stage/command"
printf '%s' "$result_guest" > "$stage/result"
cat > "$stage/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in irqbypass ccp kvm kvm-amd; do insmod /modules/$m.ko 2>/dev/null; done
if [ -c /dev/kvm ]; then
  echo "THAW_KVM_VM: /dev/kvm ready"
  sh /command
  status=$?
  result=$(cat /result)
  if [ -n "$result" ] && [ -f "$result" ]; then
    # Only emergencies on the console now: a kernel message must not land
    # inside the file's lines.
    dmesg -n 1
    echo  # a line of its own, whatever the program left unfinished
    base64 "$result" | sed 's/^/THAW_KVM_VM_RESULT:/'
  fi
  echo "THAW_KVM_VM_EXIT=$status"
else
  echo "THAW_KVM_VM: no /dev/kvm after loading kvm_amd"
  echo "THAW_KVM_VM_EXIT=3"
fi
poweroff -f
INIT
chmod +x "$stage/init"
(cd "$stage" && find . | cpio -o -H newc --quiet > "$cache/initramfs.cpio")

# 3. Boot. Single-threaded TCG: multi-threaded TCG hung in 2 of 17 runs.
log="$cache/console.log"
timeout "${THAW_KVM_VM_TIMEOUT:-1200}" qemu-system-x86_64 \
  -M pc -accel tcg,thread=single -cpu EPYC,+svm -m 2G -smp 2 \
  -nographic -no-reboot -nodefaults -serial stdio \
  -kernel "$cache/vmlinux" -initrd "$cache/initramfs.cpio" \
  -append 'console=ttyS0 quiet panic=-1 initcall_blacklist=cmos_init,i8042_init' \
  < /dev/null 2> "$cache/qemu-stderr.log" | tee "$log" |
  grep -av -e '^THAW_KVM_VM_EXIT=' -e '^THAW_KVM_VM_RESULT:' || true
status=$(grep -a -o 'THAW_KVM_VM_EXIT=[0-9]*' "$log" | tail -n1 | cut -d= -f2)
if [ -z "$status" ]; then
  echo "run.sh: the VM ended without reporting a result (see $log)" >&2
  exit 3
fi
if [ -n "$result_host" ]; then
  if grep -a '^THAW_KVM_VM_RESULT:' "$log" | cut -d: -f2 | tr -d '\r' |
      base64 -d > "$result_host.tmp" && [ -s "$result_host.tmp" ]; then
    mv "$result_host.tmp" "$result_host"
  else
    echo "run.sh: $result_guest did not come back from the VM" >&2
    rm -f "$result_host.tmp"
    [ "$status" != 0 ] || status=3
  fi
fi
exit "$status"
