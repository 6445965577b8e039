#!/usr/bin/env bash
# The thaw CLI as a user runs it: reply on stdout, report on stderr, and a
# one-line reason with a non-zero exit (never a signal) for every error.
set -u
thaw=$1
guests=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
check() {  # check NAME EXPECTED_EXIT COMMAND...
  local name=$1 want=$2; shift 2
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

total=12
echo "$((total - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]
