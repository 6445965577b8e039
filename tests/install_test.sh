#!/usr/bin/env bash
# Installs thaw from BUILD into a temporary prefix and builds and runs a
# project outside the tree against it, as a new user would: once with
# find_package(thaw) + thaw_add_guest(), once with pkg-config and plain
# gcc/g++. Usage: install_test.sh SOURCE_DIR BUILD_DIR SCRATCH_DIR
set -euo pipefail
src=$1 build=$2 scratch=$3
rm -rf "$scratch"
mkdir -p "$scratch"
prefix=$scratch/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
expected="HELLO AGAIN"

echo "== find_package(thaw) =="
cmake -S "$src/tests/outside-project" -B "$scratch/cmake-build" \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$scratch/cmake-build" -j"$(nproc)" >/dev/null
got=$("$scratch/cmake-build/consumer" "$scratch/cmake-build/shout.elf" \
      "$scratch/cmake.thaw")
[ "$got" = "$expected" ] || { echo "find_package consumer printed '$got'"; exit 1; }
echo "ok: $got"

echo "== pkg-config =="
pc_dir=$(dirname "$(find "$prefix" -name thaw.pc | head -1)")
export PKG_CONFIG_PATH=$pc_dir
out=$scratch/pc-build
mkdir -p "$out"
# The .pc file must point into the prefix it was installed to.
case "$(pkg-config --variable=libdir thaw)" in
  "$prefix"/*|*/prefix/*) ;;
  *) echo "thaw.pc libdir $(pkg-config --variable=libdir thaw) is outside $prefix"; exit 1 ;;
esac
# shellcheck disable=SC2046
g++ -std=c++20 "$src/tests/outside-project/main.cc" -o "$out/consumer" \
  $(pkg-config --cflags --libs thaw)
# shellcheck disable=SC2046
gcc $(pkg-config --variable=guest_cflags thaw) \
  -c "$src/tests/outside-project/shout.c" -o "$out/shout.o"
# shellcheck disable=SC2046
gcc "$out/shout.o" $(pkg-config --variable=guest_ldflags thaw) -o "$out/shout.elf"
got=$("$out/consumer" "$out/shout.elf" "$scratch/pc.thaw")
[ "$got" = "$expected" ] || { echo "pkg-config consumer printed '$got'"; exit 1; }
echo "ok: $got"
rm -rf "$scratch"
