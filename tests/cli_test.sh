#!/usr/bin/env bash
# The thaw CLI as a user runs it: reply on stdout, report on stderr, and a
# one-line reason with a non-zero exit (never a signal) for every error.
set -u
thaw=$1
guests=$2
program=${3:-}   # a static Linux program serving thaw calls (server.c)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
checks=0
check() {  # check NAME EXPECTED_EXIT COMMAND...
  local name=$1 want=$2; shift 2
  checks=$((checks + 1))
  "$@" > "$tmp/out" 2> "$tmp/err"
  local got=$?
  if [ "$got" != "$want" ]; then
    echo "FAIL $name: exit $got, want $want"; cat "$tmp/err"; failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}

printf 'hello, thaw' > "$tmp/in"
check "echo round trip" 0 "$thaw" run "$guests/echo.elf" --call echo --input "$tmp/in" --backend emulated
cmp -s "$tmp/out" "$tmp/in" || { echo "FAIL echo output differs"; failures=$((failures + 1)); }
grep -q "phase report" "$tmp/err" || { echo "FAIL no phase report on stderr"; failures=$((failures + 1)); }

check "crc32 from stdin" 0 sh -c "printf 'hello, thaw' | '$thaw' run '$guests/checksum.elf' --call crc32 --input - --backend emulated"
[ "$(cat "$tmp/out")" = "57020b8e" ] || { echo "FAIL crc32 output: $(cat "$tmp/out")"; failures=$((failures + 1)); }

check "unknown function" 1 "$thaw" run "$guests/echo.elf" --call nope --backend emulated
grep -q 'thaw: guest has no function "nope"' "$tmp/err" || { echo "FAIL unknown function message"; failures=$((failures + 1)); }
check "missing guest file" 1 "$thaw" run "$tmp/missing.elf" --call echo --backend emulated
head -c 4096 /dev/zero > "$tmp/zeros"
check "not an ELF" 1 "$thaw" run "$tmp/zeros" --call echo --backend emulated
grep -q 'not an ELF' "$tmp/err" || { echo "FAIL not-an-ELF message"; failures=$((failures + 1)); }
check "missing input file" 1 "$thaw" run "$guests/echo.elf" --call echo --input "$tmp/nope"
check "usage: no --call" 2 "$thaw" run "$guests/echo.elf"
check "usage: bad memory" 2 "$thaw" run "$guests/echo.elf" --call echo --memory 0
check "usage: bad backend" 2 "$thaw" run "$guests/echo.elf" --call echo --backend fast
check "usage: no command" 2 "$thaw"

# Snapshots: take one, restore it with every engine, inspect and verify it.
expect() {  # expect NAME FILE PATTERN: FILE must contain PATTERN
  grep -q -- "$3" "$2" || { echo "FAIL $1: no \"$3\" in:"; cat "$2"; failures=$((failures + 1)); }
}
check "snapshot" 0 "$thaw" snapshot "$guests/checksum.elf" -o "$tmp/fn.thaw" --backend emulated
expect "snapshot summary" "$tmp/err" "wrote $tmp/fn.thaw"
cp "$tmp/fn.thaw" "$tmp/bad.thaw"  # damaged below; frames start at byte 64
for engine in eager lazy prefetch shared; do
  check "restore --engine $engine" 0 "$thaw" restore "$tmp/fn.thaw" --call crc32 --input "$tmp/in" --engine "$engine" --backend emulated
  [ "$(cat "$tmp/out")" = "57020b8e" ] || { echo "FAIL restore $engine output: $(cat "$tmp/out")"; failures=$((failures + 1)); }
  expect "restore $engine report" "$tmp/err" "engine $engine"
done
check "restore --record-working-set" 0 "$thaw" restore "$tmp/fn.thaw" --call crc32 --input "$tmp/in" --engine lazy --record-working-set --backend emulated
# One compressing thread writes the same frames as every core; huge pages
# (transparent ones where none are reserved) hold a restored guest.
check "snapshot --threads 1" 0 "$thaw" snapshot "$guests/checksum.elf" -o "$tmp/one.thaw" --threads 1 --backend emulated
check "run --worker" 0 "$thaw" run "$guests/echo.elf" --call echo --input "$tmp/in" --worker --backend emulated
check "run --worker with kvm" 1 "$thaw" run "$guests/echo.elf" --call echo --input "$tmp/in" --worker --backend kvm
expect "run --worker with kvm says why" "$tmp/err" "worker_process is for the emulated backend"
check "restore --huge-pages" 0 "$thaw" restore "$tmp/one.thaw" --call crc32 --input "$tmp/in" --engine lazy --huge-pages --backend emulated
[ "$(cat "$tmp/out")" = "57020b8e" ] || { echo "FAIL restore --huge-pages output: $(cat "$tmp/out")"; failures=$((failures + 1)); }
expect "restore --huge-pages report" "$tmp/err" "memory in 2 MiB"
check "usage: bad --threads" 2 "$thaw" snapshot "$guests/checksum.elf" -o "$tmp/x.thaw" --threads many
check "inspect" 0 "$thaw" inspect "$tmp/fn.thaw"
expect "inspect ratio" "$tmp/out" "compression ratio"
expect "inspect working set" "$tmp/out" "working set: [1-9]"
check "verify" 0 env THAW_PROGRESS_DELAY_MS=0 "$thaw" verify "$tmp/fn.thaw"
expect "verify says intact" "$tmp/out" "intact"
expect "verify progress" "$tmp/err" "verify: 100%"
printf '\xff' | dd of="$tmp/bad.thaw" bs=1 seek=200 conv=notrunc 2>/dev/null
check "verify a flipped byte" 1 "$thaw" verify "$tmp/bad.thaw"
expect "verify names the damage" "$tmp/err" "bad.thaw\": frame"
check "restore a flipped byte (eager)" 1 "$thaw" restore "$tmp/bad.thaw" --call crc32 --engine eager --backend emulated
head -c 1000 "$tmp/fn.thaw" > "$tmp/short.thaw"
check "verify a truncated file" 1 "$thaw" verify "$tmp/short.thaw"
expect "truncation message" "$tmp/err" "do not tile the file"
# Linux VMs: the usage errors and refusals that need no KVM (a boot itself
# is tested on a real /dev/kvm inside QEMU: ctest linux_vm_kvm_in_qemu).
check "boot: needs --kernel" 2 "$thaw" boot --initrd "$tmp/in"
expect "boot: says so" "$tmp/err" "missing --kernel"
check "boot: --vcpus range" 2 "$thaw" boot --kernel "$tmp/in" --initrd "$tmp/in" --vcpus 17
expect "boot: names --vcpus" "$tmp/err" "--vcpus 17"
check "boot: no target" 2 "$thaw" boot "$tmp/in" --kernel "$tmp/in" --initrd "$tmp/in"
check "snapshot --kernel: needs -o" 2 "$thaw" snapshot --kernel "$tmp/in" --initrd "$tmp/in"
expect "snapshot --kernel: says so" "$tmp/err" "missing -o FILE"
check "snapshot: --vcpus without a kernel" 2 "$thaw" snapshot "$tmp/in" -o "$tmp/x.thaw" --vcpus 2
expect "snapshot: says what --vcpus is for" "$tmp/err" "for a Linux VM"
check "boot: a kernel that is none" 1 "$thaw" boot --kernel "$tmp/in" --initrd "$tmp/in" --boot-timeout-ms 1000
if [ -c /dev/kvm ]; then
  # Refused before anything runs: as a bzImage or vmlinux, or for want of a KVM.
  grep -q -E "neither a bzImage|not a newc cpio|/dev/kvm|KVM" "$tmp/err" || { echo "FAIL boot junk: $(cat "$tmp/err")"; failures=$((failures + 1)); }
else
  expect "boot: without KVM says so" "$tmp/err" "/dev/kvm"
fi

# Signed snapshots: keygen, snapshot --sign, verify and restore --key.
check "keygen" 0 "$thaw" keygen "$tmp/key"
expect "keygen prints the key" "$tmp/out" "ed25519:"
[ "$(stat -c %a "$tmp/key")" = "600" ] || { echo "FAIL keygen: secret key mode $(stat -c %a "$tmp/key")"; failures=$((failures + 1)); }
check "keygen refuses to replace a key" 1 "$thaw" keygen "$tmp/key"
check "keygen another" 0 "$thaw" keygen "$tmp/other"
check "snapshot --sign" 0 "$thaw" snapshot "$guests/checksum.elf" -o "$tmp/signed.thaw" --sign "$tmp/key" --backend emulated
check "inspect a signed file" 0 "$thaw" inspect "$tmp/signed.thaw"
expect "inspect names the signer" "$tmp/out" "signature: ed25519:"
check "verify --key" 0 "$thaw" verify "$tmp/signed.thaw" --key "$tmp/key.pub"
expect "verify names the signer" "$tmp/out" "intact, signed by ed25519:"
check "verify --key another key" 1 "$thaw" verify "$tmp/signed.thaw" --key "$tmp/other.pub"
expect "another key is named" "$tmp/err" "signed.thaw\" is signed by ed25519:"
check "verify --key an unsigned file" 1 "$thaw" verify "$tmp/fn.thaw" --key "$tmp/key.pub"
expect "unsigned is named" "$tmp/err" "is not signed"
check "restore --key" 0 "$thaw" restore "$tmp/signed.thaw" --call crc32 --input "$tmp/in" --key "$tmp/key.pub" --backend emulated
[ "$(cat "$tmp/out")" = "57020b8e" ] || { echo "FAIL signed restore output: $(cat "$tmp/out")"; failures=$((failures + 1)); }
check "restore --key another key" 1 "$thaw" restore "$tmp/signed.thaw" --call crc32 --key "$tmp/other.pub" --backend emulated
check "record a signed file's working set without --sign" 1 "$thaw" restore "$tmp/signed.thaw" --call crc32 --input "$tmp/in" --engine lazy --record-working-set --key "$tmp/key.pub" --backend emulated
expect "it needs the signing key" "$tmp/err" "needs the signing key"
check "record a signed file's working set with --sign" 0 "$thaw" restore "$tmp/signed.thaw" --call crc32 --input "$tmp/in" --engine lazy --record-working-set --key "$tmp/key.pub" --sign "$tmp/key" --backend emulated
check "verify --key after re-signing" 0 "$thaw" verify "$tmp/signed.thaw" --key "$tmp/key.pub"
chmod 644 "$tmp/key"
check "a readable signing key is refused" 1 "$thaw" snapshot "$guests/checksum.elf" -o "$tmp/x.thaw" --sign "$tmp/key" --backend emulated
expect "it says chmod" "$tmp/err" "chmod 600"
check "usage: --sign on restore needs --record-working-set" 2 "$thaw" restore "$tmp/signed.thaw" --call crc32 --sign "$tmp/key"
check "restore a missing file" 1 "$thaw" restore "$tmp/none.thaw" --call crc32
check "snapshot into a missing directory" 1 "$thaw" snapshot "$guests/checksum.elf" -o "$tmp/no/dir/x.thaw" --backend emulated
check "usage: snapshot without -o" 2 "$thaw" snapshot "$guests/checksum.elf"
check "usage: bad engine" 2 "$thaw" restore "$tmp/fn.thaw" --call crc32 --engine fast
check "usage: bad chunk size" 2 "$thaw" snapshot "$guests/checksum.elf" -o "$tmp/x.thaw" --chunk-size 5000
check "usage: run takes no -o" 2 "$thaw" run "$guests/echo.elf" --call echo -o x

if [ -n "$program" ]; then
  mkdir -p "$tmp/view"
  printf 'from the view' > "$tmp/view/file.txt"
  printf '/data/file.txt' > "$tmp/path"
  check "program: run with a file view" 0 "$thaw" run "$program" --fs "$tmp/view:/data" --env GREETING=hi --call cat --input "$tmp/path" --backend emulated -- one two
  [ "$(cat "$tmp/out")" = "from the view" ] || { echo "FAIL program cat output: $(cat "$tmp/out")"; failures=$((failures + 1)); }
  grep -q "system calls" "$tmp/err" || { echo "FAIL no system-call summary"; failures=$((failures + 1)); }
  check "program: argv after --" 0 "$thaw" run "$program" --program --call argv --backend emulated -- one two
  [ "$(cat "$tmp/out")" = "$(printf '%s
one
two' "$program")" ] || { echo "FAIL program argv: $(cat "$tmp/out")"; failures=$((failures + 1)); }
  check "program: trace" 0 "$thaw" run "$program" --trace-syscalls --call getpid --backend emulated
  grep -q "\[syscall\] getpid" "$tmp/err" || { echo "FAIL no syscall trace"; failures=$((failures + 1)); }
  check "program: snapshot" 0 "$thaw" snapshot "$program" --fs "$tmp/view:/data" -o "$tmp/p.thaw" --backend emulated
  check "program: inspect" 0 "$thaw" inspect "$tmp/p.thaw"
  grep -q "guest: linux-program" "$tmp/out" || { echo "FAIL inspect kind"; failures=$((failures + 1)); }
  grep -q "file view: .* -> /data" "$tmp/out" || { echo "FAIL inspect view"; failures=$((failures + 1)); }
  check "program: restore" 0 "$thaw" restore "$tmp/p.thaw" --call cat --input "$tmp/path" --engine shared --backend emulated
  [ "$(cat "$tmp/out")" = "from the view" ] || { echo "FAIL restored cat: $(cat "$tmp/out")"; failures=$((failures + 1)); }
  check "program: restore in a worker" 0 "$thaw" restore "$tmp/p.thaw" --call cat --input "$tmp/path" --worker --backend emulated
  [ "$(cat "$tmp/out")" = "from the view" ] || { echo "FAIL worker cat: $(cat "$tmp/out")"; failures=$((failures + 1)); }
  check "program: exit status" 1 sh -c "printf 3 | '$thaw' run '$program' --program --call exit --input - --backend emulated"
  grep -q "exited with status 3" "$tmp/err" || { echo "FAIL exit message"; failures=$((failures + 1)); }
  check "usage: --env needs KEY=VALUE" 2 "$thaw" run "$program" --env nope --call echo
fi

echo "$checks commands checked, $failures failures"
[ "$failures" -eq 0 ]
