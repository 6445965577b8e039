#!/usr/bin/env python3
"""Extracts the uncompressed vmlinux ELF from a bzImage (vmlinuz).

QEMU boots an ELF vmlinux through its PVH entry point, seconds faster under
software emulation than a bzImage through the BIOS (doc/platform-facts.md). Debian
compresses its kernels with xz, gzip or zstd depending on the release; try
each payload signature until one decompresses to an ELF file.
"""
import gzip
import lzma
import sys
import zlib

SIGNATURES = [
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b\x08", "gzip"),
]


def decompress(kind, data):
    if kind == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    return decompressor.decompress(data)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: extract_vmlinux.py VMLINUZ OUTPUT")
    image = open(sys.argv[1], "rb").read()
    for signature, kind in SIGNATURES:
        start = image.find(signature)
        while start >= 0:
            try:
                payload = decompress(kind, image[start:])
            except (lzma.LZMAError, zlib.error, EOFError, gzip.BadGzipFile):
                payload = b""
            if payload.startswith(b"\x7fELF"):
                with open(sys.argv[2], "wb") as out:
                    out.write(payload)
                return
            start = image.find(signature, start + 1)
    sys.exit(f"extract_vmlinux.py: no xz or gzip ELF payload in {sys.argv[1]}")


if __name__ == "__main__":
    main()
