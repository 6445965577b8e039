#!/usr/bin/python3
"""Restore a snapshot 100 times and print latency percentiles.

    PYTHONPATH=build/bindings-python/python \
        examples/python/restore_latency.py build/examples/checksum.elf

Boots the guest (the checksum example: its init builds a CRC table), takes a
snapshot after init, records the first call's working set, then restores it
100 times with each engine, calling
`crc32` once per restore, and prints p50/p90/p99 of restore + first call.
"""
import statistics
import sys
import tempfile
import time
import os

import thaw

RESTORES = 100


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main():
    guest = sys.argv[1] if len(sys.argv) > 1 else "build/examples/checksum.elf"
    backend = sys.argv[2] if len(sys.argv) > 2 else "auto"
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "fn.thaw")
        start = time.perf_counter()
        with thaw.Vm(thaw.VmConfig(backend=backend)) as vm:
            vm.load_guest(guest)
            vm.boot()
            expected = vm.call("crc32", b"hello, thaw")
            cold_ms = (time.perf_counter() - start) * 1000
            vm.snapshot(path)
            print(f"backend {vm.backend}; cold boot + init + call: {cold_ms:.2f} ms; "
                  f"crc32 -> {expected.decode()}")
        # Record what the first call touches, for the prefetch engine.
        with thaw.restore(path, engine="lazy", backend=backend,
                          record_working_set=True) as recorder:
            recorder.call("crc32", b"hello, thaw")
            recorder.write_working_set()
        # One handle for every restore: the file is parsed once, and the
        # shared engine's image is built once and kept by the handle.
        snapshot = thaw.Snapshot(path)
        info = snapshot.info
        print(f"snapshot: {info['file_size']} bytes for {info['memory_size'] >> 20} MiB "
              f"({info['compression_ratio']:.0f}x)")
        print(f"{'engine':9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
        for engine in ("eager", "lazy", "prefetch", "shared"):
            times = []
            for _ in range(RESTORES):
                t0 = time.perf_counter()
                with snapshot.restore(engine=engine, backend=backend) as clone:
                    reply = clone.call("crc32", b"hello, thaw")
                times.append((time.perf_counter() - t0) * 1000)
                assert reply == expected, reply
            print(f"{engine:9} {percentile(times, 0.5):8.3f} {percentile(times, 0.9):8.3f} "
                  f"{percentile(times, 0.99):8.3f} {statistics.mean(times):8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
