#!/usr/bin/python3
"""Turns one thaw_bench run into the report: latest.json, latest.md and
latest.png (restore latency by engine and guest size; time-to-first-call
CDF). Every row is a ratio against a figure measured in the same run: the
machine's floor or the baseline it competes with. Timings drift between
runs and machines; ratios within one run are what the targets judge.

usage: report.py --raw RAW.json --samples SAMPLES.json --out PREFIX
"""
import argparse
import json
import os
import re
import sys

UNIT_TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def load_results(path):
    with open(path) as f:
        raw = json.load(f)
    results = {}
    medians = {}
    for b in raw["benchmarks"]:
        name = re.sub(r"/iterations:\d+.*$", "", b["name"])
        entry = dict(b)
        entry["ms"] = b["real_time"] * UNIT_TO_MS[b["time_unit"]]
        if b.get("run_type") == "aggregate":
            # A benchmark run several times is reported by its median.
            if b.get("aggregate_name") == "median":
                medians[name] = entry
            continue
        results[name] = entry
    results.update(medians)
    return raw.get("context", {}), results


def size_key(size):
    number = int(re.match(r"\d+", size).group())
    return number * (1024 if size.endswith("GiB") else 1)


def fmt_ms(ms):
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 1:
        return f"{ms:.2f} ms"
    return f"{ms * 1000:.1f} µs"


CPUS = {"n": None}


def context_cpus():
    return CPUS["n"] if CPUS["n"] is not None else "?"


def build(results):
    sizes = sorted({m.group(1) for n in results
                    for m in [re.match(r"cold_boot_init/(.+)", n)] if m},
                   key=size_key)
    get = lambda name: results.get(name, {}).get("ms")
    rows = []

    def row(section, name, value, unit, baseline_name, ratio, note=""):
        rows.append({"section": section, "name": name, "value": value,
                     "unit": unit, "baseline": baseline_name,
                     "ratio": ratio, "note": note})

    # The floor.
    memcpy = results.get("floor/memcpy_64MiB", {}).get("bytes_per_second", 0)
    uffd_copy = get("floor/uffd_copy_page")
    uffd_copy64 = get("floor/uffd_copy_64KiB")
    uffd_zero = get("floor/uffd_zeropage_page")
    uring = get("floor/io_uring_read_64KiB")
    decode = get("floor/decode_64KiB_chunk")
    row("floor", "memcpy bandwidth", memcpy / 1e9, "GB/s", "", None)
    row("floor", "userfaultfd fault, UFFDIO_COPY 4 KiB", uffd_copy * 1000, "µs/page", "", None)
    if uffd_copy64 is not None:
        row("floor", "userfaultfd fault, UFFDIO_COPY 64 KiB", uffd_copy64 * 1000, "µs/chunk", "", None)
    row("floor", "userfaultfd fault, UFFDIO_ZEROPAGE", uffd_zero * 1000, "µs/page", "", None)
    row("floor", "io_uring 64 KiB read (cached, QD1)", uring * 1000, "µs", "", None)
    if decode is not None:
        row("floor", "decode a stored 64 KiB chunk (checksums + zstd)", decode * 1000, "µs", "", None)
    for size in sizes:
        cold_read = results.get(f"floor/cold_read_working_set/{size}")
        if cold_read:
            mib = cold_read.get("MiB", 0)
            row("floor", f"cold sequential read of the raw working set ({size}, {mib:.0f} MiB)",
                cold_read["ms"], "ms", "", None,
                f"{mib * 1.048576 / (cold_read['ms'] / 1000):.0f} MB/s")
        install = results.get(f"floor/install_working_set/{size}")
        if install:
            row("floor", f"install the working set's page entries ({size}, raw file, no thaw)",
                install["ms"], "ms", "", None,
                f"{install.get('pages', 0):.0f} pages mapped, "
                f"{install.get('written_pages', 0):.0f} of them made private first")

    for size in sizes:
        cold = get(f"cold_boot_init/{size}")
        fc_call = get(f"restore/firecracker/first_call/{size}")
        row(f"restore {size}", "cold boot + init", cold, "ms", "", None,
            f"{results[f'cold_boot_init/{size}'].get('data_MiB', 0):.0f} MiB of data")
        for phase in ("first_instruction", "first_call"):
            for engine in ("eager", "lazy", "prefetch", "shared_1st",
                           "shared_nth", "firecracker"):
                name = f"restore/{engine}/{phase}/{size}"
                ms = get(name)
                if ms is None:
                    continue
                label = f"{engine}: restore to {'first call' if phase == 'first_call' else 'first instruction'}"
                notes = []
                if phase == "first_call" and fc_call and engine != "firecracker":
                    notes.append(f"{ms / fc_call:.2f}x Firecracker-style")
                faults = results[name].get("call_faults_vcpu_thread")
                if faults is not None:
                    notes.append(f"{faults:.0f} faults in the call "
                                 f"({results[name].get('call_faults_process', 0):.0f} in the process)")
                row(f"restore {size}", label, ms, "ms",
                    "cold boot + init", cold / ms if ms else None, "; ".join(notes))
        for engine in ("eager", "lazy", "prefetch"):
            name = f"restore_huge/{engine}/first_call/{size}"
            ms = get(name)
            if ms is None:
                continue
            r = results[name]
            row(f"restore {size}", f"{engine}: restore to first call, 2 MiB pages",
                ms, "ms", "the same engine in 4 KiB pages",
                (get(f"restore/{engine}/first_call/{size}") or 0) / ms if ms else None,
                f"{r.get('label', '')}; {r.get('call_faults_vcpu_thread', 0):.0f} faults in the call, "
                f"{r.get('faults', 0):.0f} served by the pager")
        for engine in ("eager", "prefetch"):
            ms = get(f"restore_worker/{engine}/first_call/{size}")
            if ms is None:
                continue
            row(f"restore {size}", f"{engine}: restore to first call, Vm in a worker process",
                ms, "ms", "the same engine in process",
                (get(f"restore/{engine}/first_call/{size}") or 0) / ms if ms else None,
                "a worker started ahead (lib/worker/worker_launcher.h; its background start shares the 2 cores), the request, and the snapshot's descriptors")
        fc_cold = get(f"restore_cold/firecracker/first_call/{size}")
        for engine in ("lazy", "prefetch", "firecracker"):
            ms = get(f"restore_cold/{engine}/first_call/{size}")
            if ms is None:
                continue
            row(f"restore {size}", f"{engine}: restore to first call, cold page cache",
                ms, "ms", "Firecracker-style, cold", fc_cold / ms if engine != "firecracker" and ms else None,
                "files evicted (fsync + POSIX_FADV_DONTNEED) before each restore")
        lazy = get(f"fault_service/lazy_per_chunk/{size}")
        if lazy is not None and uffd_copy64:
            row(f"restore {size}", "lazy fault service per 64 KiB chunk (read + decode + install)",
                lazy * 1000, "µs/chunk", "raw UFFDIO_COPY of 64 KiB",
                uffd_copy64 / lazy if lazy else None)
        reset = get(f"reset/dirty16/{size}")
        nth = get(f"restore/shared_nth/first_instruction/{size}")
        if reset is not None and nth:
            row(f"restore {size}", "reset after 16 dirtied pages", reset * 1000,
                "µs", "n-th shared clone to first instruction", nth / reset)
        cycle = get(f"request_cycle/dirty16/{size}")
        nth_call = get(f"restore/shared_nth/first_call/{size}")
        if cycle is not None and nth_call:
            row(f"restore {size}", "request cycle (call dirtying 16 pages + reset)",
                cycle * 1000, "µs", "n-th shared clone restore + first call", nth_call / cycle)
        after = get(f"call/work_after_reset/{size}")
        warm = results.get(f"call/work_after_reset/{size}", {}).get("never_reset_ms")
        if warm is not None and after is not None:
            row(f"restore {size}", "`work` call right after a reset", after, "ms",
                "the same call on a Vm never reset", warm / after if after else None,
                f"never reset: {fmt_ms(warm)}")

    for name, r in sorted(results.items()):
        m = re.match(r"snapshot_write/level:(\d+)/chunk:(\d+)KiB/(.+)", name)
        if not m:
            continue
        mbps = r.get("bytes_per_second", 0) / 1e6
        row("snapshot write", f"level {m.group(1)}, {m.group(2)} KiB chunks ({m.group(3)})",
            mbps, "MB/s of guest memory", "memcpy", mbps * 1e6 / memcpy if memcpy else None,
            f"memory/file {r.get('memory_over_file', 0):.1f}x, data/stored "
            f"{r.get('data_over_stored', 0):.2f}x")

    dense = next((r for n, r in results.items() if n.startswith("snapshot_write_dense/")), None)
    if dense:
        one = dense.get("one_thread_MBps", 0)
        every = dense.get("all_threads_MBps", 0)
        row("snapshot write", "dense memory, level 3, single-threaded writer", one,
            "MB/s of guest memory", "", None,
            f"{dense.get('dense_fraction', 0) * 100:.0f}% of chunks non-zero; memory/file "
            f"{dense.get('memory_over_file', 0):.1f}x; interleaved with the next row, medians")
        row("snapshot write", "dense memory, level 3, every core", every,
            "MB/s of guest memory", "single-threaded writer", every / one if one else None,
            f"{context_cpus()} cores")

    empty = get("call/empty")
    host = get("call/host_round_trip_x100")
    row("calls", "empty call round trip", empty * 1000, "µs", "", None)
    if host is not None:
        row("calls", "host function round trip", host * 1000 / 100, "µs", "empty call",
            empty / (host / 100) if host else None)
    # The same two in a worker process (VmSettings::worker_process).
    w_empty = get("call/empty/worker_process")
    w_host = get("call/host_round_trip_x100/worker_process")
    if w_empty is not None:
        row("calls", "empty call, Vm in a worker process", w_empty * 1000, "µs",
            "empty call in process", w_empty / empty if empty else None,
            "one request and answer on a Unix socket; payloads in shared memory")
    if w_host is not None and host:
        row("calls", "host function round trip, Vm in a worker process",
            w_host * 1000 / 100, "µs", "in process", w_host / host,
            "each host call crosses the socket both ways")
    # Linux programs.
    p_empty = get("program/empty_call")
    getpid = get("program/getpid_x100")
    if p_empty is not None:
        row("programs", "program empty call", p_empty, "ms", "function-guest empty call",
            p_empty / empty if empty else None)
    if getpid is not None:
        row("programs", "getpid system call round trip", getpid / 100, "ms",
            "function-guest empty call", (getpid / 100) / empty if empty else None,
            "100 per call, so 1/100 of a call is included")
    boot = get("program/python/boot_init_call")
    if boot is not None:
        row("programs", "python3 boot+init+first call", boot, "ms", "", None,
            "examples/python-function: json, decimal, email, http, re, datetime, sqlite3, numpy")
    for engine in ("eager", "lazy", "shared"):
        first = get(f"program/python/restore_first_call/{engine}")
        if first is not None:
            row("programs", f"python3 restore+first call ({engine})", first, "ms",
                "python3 boot+init+first call", boot / first if boot else None)
    return sizes, rows


def targets(results, sizes):
    get = lambda name: results.get(name, {}).get("ms")
    big = sizes[-1] if sizes else None
    small = sizes[0] if sizes else None
    out = []

    def target(what, value, limit, better, detail, floor=None):
        """floor: (value, what) of the measured floor the target sits on."""
        if value is None or limit is None:
            out.append({"target": what, "pass": False, "detail": "not measured"})
            return
        ok = value <= limit if better == "lower" else value >= limit
        if ok:
            margin = f"met ({value:.4g} vs limit {limit:.4g})"
        elif better == "lower":
            margin = f"missed by {value / limit:.2f}x ({value:.4g} vs limit {limit:.4g})"
        else:
            margin = f"missed by {limit / value:.2f}x ({value:.4g} vs limit {limit:.4g})"
        if not ok and floor is not None and floor[0] is not None:
            margin += f"; measured floor {floor[0]:.4g} ({floor[1]}): {value / floor[0]:.2f}x of it"
            if better == "lower" and floor[0] > limit:
                margin += f"; the floor alone is {floor[0] / limit:.2f}x the limit"
        out.append({"target": what, "pass": ok, "detail": f"{margin}; {detail}".rstrip("; ")})

    cold = get(f"cold_boot_init/{big}")
    prefetch = get(f"restore/prefetch/first_call/{big}")
    fc = get(f"restore/firecracker/first_call/{big}")
    target(f"lazy+prefetch restore+first call <= 1/10 of cold boot+init ({big})",
           prefetch, cold / 10 if cold else None, "lower",
           f"cold boot+init {cold:.0f} ms (init must compute >= 500 ms: "
           f"{'yes' if cold and cold >= 500 else 'no'})" if cold else "")
    # The floor of a restore + first call on this backend with 4 KiB pages:
    # the same call on a warm Vm (no fault, nothing to install), plus the
    # Firecracker-style restore to its first instruction (one mmap and the
    # vCPU state), plus the kernel's cost of filling the page entries of the
    # pages that call touches (the written ones made private), measured on
    # the raw file without thaw. Each entry written costs an exit under
    # shadow paging, so this is most of a restore's cost here.
    warm_call = results.get(f"call/work_after_reset/{big}", {}).get("never_reset_ms")
    fc_first = get(f"restore/firecracker/first_instruction/{big}")
    install = get(f"floor/install_working_set/{big}")
    call_floor = (warm_call + fc_first + install
                  if warm_call and fc_first and install else None)
    # Judged on the interleaved pair (one of each per iteration, medians), so
    # that the host's bursts of noise fall on both alike.
    paired = results.get(f"paired/prefetch_vs_firecracker/{big}", {})
    pair_pf, pair_fc = paired.get("ms"), paired.get("firecracker_ms")
    target(f"warm page cache: lazy+prefetch restore+first call <= 1/2 of Firecracker-style ({big})",
           pair_pf, pair_fc / 2 if pair_fc else None, "lower",
           (f"interleaved medians: {pair_pf:.2f} vs {pair_fc:.2f} ms; run apart: "
            f"{prefetch:.2f} vs {fc:.2f} ms" if pair_pf and pair_fc and prefetch and fc else ""),
           (call_floor, "a warm Vm's `work` call + one mmap restore + installing the "
            "working set's page entries"))
    fc_cold = get(f"restore_cold/firecracker/first_call/{big}")
    pf_cold = get(f"restore_cold/prefetch/first_call/{big}")
    # The floor of a cold restore that reads raw bytes: reading the working
    # set's bytes cold, then the warm restore + first call. (Reading the
    # compressed frames instead is slower here: decoding one 64 KiB chunk
    # runs below the disk's sequential rate; see the floor table.)
    cold_read = get(f"floor/cold_read_working_set/{big}")
    cold_floor = cold_read + prefetch if cold_read and prefetch else None
    decode_rate = 65536 / (get("floor/decode_64KiB_chunk") / 1000) / 1e6 if get("floor/decode_64KiB_chunk") else None
    read_rate = (results.get(f"floor/cold_read_working_set/{big}", {}).get("MiB", 0) * 1.048576
                 / (cold_read / 1000)) if cold_read else None
    target(f"cold page cache: lazy+prefetch restore+first call <= 1/3 of Firecracker-style ({big})",
           pf_cold, fc_cold / 3 if fc_cold else None, "lower",
           (f"Firecracker-style cold {fc_cold:.1f} ms; both read their working set raw from the "
            f"disk; the disk reads {read_rate:.0f} MB/s cold, zstd decodes {decode_rate:.0f} MB/s "
            f"per core, so streaming compressed frames would be slower here"
            if fc_cold and read_rate and decode_rate else ""),
           (cold_floor, "a cold read of the working set's bytes + the warm prefetch restore+first call"))
    cold_row = results.get(f"cold_boot_init/{big}", {})
    snap_mib = cold_row.get("prefetch_snapshot_MiB")
    plain_mib = cold_row.get("snapshot_MiB")
    memory_mib = cold_row.get("memory_MiB")
    target(f"the prefetch snapshot file >= 4x smaller than guest memory ({big})",
           memory_mib / snap_mib if snap_mib else None, 4, "higher",
           f"{snap_mib:.1f} MiB file (working set stored raw; {plain_mib:.1f} MiB "
           f"before it was recorded) for {memory_mib:.0f} MiB" if snap_mib else "")
    pf_row = results.get(f"restore/prefetch/first_call/{big}", {})
    fc_row = results.get(f"restore/firecracker/first_call/{big}", {})
    pf_faults = pf_row.get("call_faults_vcpu_thread")
    fc_faults = fc_row.get("call_faults_vcpu_thread")
    target(f"page faults in the first call after a prefetch restore <= 3% of Firecracker-style ({big})",
           pf_faults, 0.03 * fc_faults if fc_faults else None, "lower",
           f"faults the vCPU thread took (getrusage RUSAGE_THREAD): {pf_faults:.1f} vs "
           f"{fc_faults:.0f}; the whole process: {pf_row.get('call_faults_process', 0):.1f} vs "
           f"{fc_row.get('call_faults_process', 0):.0f}" if fc_faults is not None and pf_faults is not None else "")
    for size in sizes:
        reset = get(f"reset/dirty16/{size}")
        nth_i = get(f"restore/shared_nth/first_instruction/{size}")
        target(f"reset (16 dirty pages) <= 1/10 of n-th shared clone to first instruction ({size})",
               reset, nth_i / 10 if nth_i else None, "lower", "")
    across = results.get("reset/dirty16_across_sizes", {})
    r_big = across.get("ms")
    r_small = across.get("smallest_us") / 1000 if across.get("smallest_us") else None
    target(f"reset at {big} <= 1.25x reset at {small} (16 dirty pages, after the same first call)",
           r_big, 1.25 * r_small if r_small else None, "lower",
           (f"interleaved medians: {r_big * 1000:.1f} vs {r_small * 1000:.1f} µs"
            if r_big and r_small else ""))
    for size in sizes:
        after = get(f"call/work_after_reset/{size}")
        warm = results.get(f"call/work_after_reset/{size}", {}).get("never_reset_ms")
        target(f"the call right after a reset <= 1.2x the same call never reset ({size}, emulated)",
               after, 1.2 * warm if warm else None, "lower", "`work`: 6% of memory read, 1/8 of it written")
    for size in sizes:
        cycle = get(f"request_cycle/dirty16/{size}")
        nth_call = get(f"restore/shared_nth/first_call/{size}")
        target(f"request cycle (call dirtying 16 pages + reset) <= 1/10 of n-th shared clone "
               f"restore+first call ({size}, emulated)",
               cycle, nth_call / 10 if nth_call else None, "lower", "")
    for size in sizes:
        nth_i = get(f"restore/shared_nth/first_instruction/{size}")
        fc_i = get(f"restore/firecracker/first_instruction/{size}")
        target(f"n-th shared clone restore to first instruction <= 1.2x Firecracker-style ({size})",
               nth_i, 1.2 * fc_i if fc_i else None, "lower", "")
    lazy = get(f"fault_service/lazy_per_chunk/{big}")
    raw64 = get("floor/uffd_copy_64KiB")
    uring = get("floor/io_uring_read_64KiB")
    decode = get("floor/decode_64KiB_chunk")
    target("lazy fault service per 64 KiB chunk <= 1.5x a raw 64 KiB UFFDIO_COPY",
           lazy, 1.5 * raw64 if raw64 else None, "lower",
           "read (io_uring) + checksums + zstd + install, against a copy from memory; "
           "decoding alone costs more than the limit",
           (decode + raw64 if decode and raw64 else None,
            "decoding one stored chunk (its checksums and zstd, which a raw copy does not "
            "do) + the raw 64 KiB UFFDIO_COPY that installs it"))
    dense = next((r for n, r in results.items() if n.startswith("snapshot_write_dense/")), None)
    if dense and dense.get("one_thread_MBps"):
        target(f"snapshot write of dense memory >= 1.7x the single-threaded writer ({context_cpus()} cores)",
               dense.get("all_threads_MBps", 0) / dense["one_thread_MBps"], 1.7,
               "higher", "level 3, 64 KiB chunks; interleaved, medians")
    w = [r for n, r in results.items()
         if re.match(r"snapshot_write/level:3/chunk:64KiB/", n)]
    if w:
        target("snapshot write >= 300 MB/s of guest memory (level 3)",
               w[0].get("bytes_per_second", 0) / 1e6, 300, "higher", "")
        target("compression ratio >= 4 (memory / file, level 3)",
               w[0].get("memory_over_file"), 4, "higher",
               f"data/stored {w[0].get('data_over_stored', 0):.2f}x")
    empty = get("call/empty")
    target("empty call round trip <= 5 µs (emulated)",
           empty * 1000 if empty else None, 5, "lower", "")
    boot = get("program/python/boot_init_call")
    for engine in ("eager", "lazy", "shared"):
        first = get(f"program/python/restore_first_call/{engine}")
        if engine == "lazy" or first is not None:
            target(f"python3 restore+first call <= 1/50 of boot+init+call ({engine})",
                   first, boot / 50 if boot else None, "lower",
                   f"boot+init+call {boot:.0f} ms" if boot else "")
    return out


def faas_targets(faas):
    """The load test's targets (benchmarks/faas_load.py), from its JSON."""
    out = []
    modes = faas["modes"]

    def target(what, ok, detail):
        out.append({"target": what, "pass": bool(ok), "detail": detail})

    errors = {m: r["errors"] for m, r in modes.items()}
    target(f"FaaS load: zero errors at the provisioned concurrency ({faas['clients']} clients)",
           all(e == 0 for e in errors.values()),
           ", ".join(f"{m}: {e} errors of {modes[m]['requests']}" for m, e in errors.items()))
    reset, restore, boot = (modes[m]["p99_ms"] for m in ("reset", "restore", "boot"))
    target("FaaS load: reset-per-request p99 <= 1/10 of restore-per-request p99",
           reset <= restore / 10,
           f"{reset:.3g} vs {restore:.3g} ms ({restore / reset:.0f}x below)")
    target("FaaS load: reset-per-request p99 <= 1/100 of boot-per-request p99",
           reset <= boot / 100,
           f"{reset:.3g} vs {boot:.4g} ms ({boot / reset:.0f}x below)")
    start, end, peak = faas["rss_start_mib"], faas["rss_end_mib"], faas["rss_max_mib"]
    n = modes["reset"]["requests"]
    fds = (modes["reset"]["fds_before"], modes["reset"]["fds_after"])
    target(f"FaaS load: server memory flat over {n} requests (reset mode)",
           n >= 100000 and end <= start * 1.05 + 8 and fds[1] <= fds[0] + 2,
           f"resident {start:.1f} MiB in the first tenth of the run, {end:.1f} MiB in the "
           f"last (peak {peak:.1f}); descriptors {fds[0]:.0f} -> {fds[1]:.0f}"
           + ("" if n >= 100000 else "; fewer than 100k requests in this run"))
    return out


def faas_rows(faas):
    rows = []
    for mode, r in faas["modes"].items():
        starts = ", ".join(f"{k} {v}" for k, v in sorted(r["starts"].items()))
        rows.append({"section": "FaaS load test", "name": f"{mode} per request" if mode in
                     ("boot", "restore", "reset") else "warm reuse",
                     "value": r["p50_ms"], "unit": "ms", "baseline": "", "ratio": None,
                     "note": f"p99 {r['p99_ms']:.3g} ms, p99.9 {r['p999_ms']:.3g} ms; "
                             f"{r['throughput_rps']:.0f} req/s; {r['requests']} requests, "
                             f"{r['errors']} errors; starts: {starts}"})
    b = faas["burst"]
    rows.append({"section": "FaaS load test", "name": "burst: 18 clients, 2 provisioned, 6 reserved",
                 "value": b["p50_ms"], "unit": "ms", "baseline": "", "ratio": None,
                 "note": f"p99 {b['p99_ms']:.3g} ms; statuses "
                         + ", ".join(f"{k}: {v}" for k, v in sorted(b["statuses"].items()))
                         + "; starts " + ", ".join(f"{k} {v}" for k, v in sorted(b["starts"].items()))})
    return rows


def stress_targets_and_rows(stress):
    """tests/stress_test.cc's lines (THAW_STRESS_OUT): per engine, restores
    from 8 threads with descriptors and resident memory before and after."""
    flat = all(s["failures"] == 0 and s["fds_after"] == s["fds_before"]
               and s["rss_after_mib"] < s["rss_before_mib"] + 64 for s in stress)
    n = stress[0]["restores"] if stress else 0
    goal = {"target": f"Stress: {n} restores per engine from 8 threads, no failure, "
                      "descriptors unchanged, resident memory within 64 MiB",
            "pass": bool(stress) and flat,
            "detail": "; ".join(f"{s['engine']}: fds {s['fds_before']} -> {s['fds_after']}, "
                                f"RSS {s['rss_before_mib']} -> {s['rss_after_mib']} MiB"
                                for s in stress)}
    rows = [{"section": "Stress (tests/stress_test.cc)",
             "name": f"{s['engine']}: {s['restores']} restores + calls, {s['threads']} threads",
             "value": s["seconds"] * 1000 / s["restores"], "unit": "ms", "baseline": "",
             "ratio": None,
             "note": f"per restore (wall, {s['threads']} threads on {CPUS['n']} CPUs); "
                     f"{s['failures']} failures; descriptors {s['fds_before']} -> "
                     f"{s['fds_after']}; resident {s['rss_before_mib']} -> "
                     f"{s['rss_after_mib']} MiB"}
            for s in stress]
    return [goal], rows


LINUX_VM_SECTION = "Linux VMs on KVM (nested inside QEMU: ratios only)"


def linux_vm_rows(path):
    """benchmarks/linux_vm_bench.cc's JSON from the QEMU harness (scripts/
    bench.sh): boot to the agent, restore + first call per engine, and
    reset + call, each against the boot of the same run."""
    def row(name, value, ratio, baseline, note):
        return {"section": LINUX_VM_SECTION, "name": name, "value": value, "unit": "ms",
                "baseline": baseline, "ratio": ratio, "note": note}
    if not os.path.exists(path):
        return [row("not run", None, None, "", f"{path} is missing: the harness run failed "
                    "(scripts/bench.sh printed why)")]
    with open(path) as f:
        data = json.load(f)
    date = data.get("context", {}).get("date", "?")
    boot, rows = None, []
    for b in data.get("benchmarks", []):
        name = b["name"].split("/iterations")[0]
        if b.get("error_occurred"):
            rows.append(row(name, None, None, "", "skipped: " + b.get("error_message", "")))
            continue
        ms = b["real_time"] * {"ns": 1e-6, "us": 1e-3, "ms": 1, "s": 1e3}[b["time_unit"]]
        hangs = f"{int(b.get('hangs', 0))} attempts dropped for the nested interrupt hang"
        if name == "linux_vm/boot_to_agent_and_first_call":
            boot = ms
            rows.append(row("create + boot to the agent + first echo call", ms, None, "",
                            f"kernel entry to init {fmt_ms(b['kernel_to_init_ms'])}, init to "
                            f"agent ready {fmt_ms(b['init_to_agent_ms'])}; {hangs}; run {date}"))
        elif name.startswith("linux_vm/restore_and_first_call"):
            rows.append(row(f"restore + first call (with the agent's reseed), {b.get('label', '?')}",
                            ms, ms / boot if boot else None, "boot to the agent + first call",
                            hangs))
        elif name == "linux_vm/reset_and_call":
            rows.append(row("reset (shared base) + next call", ms, ms / boot if boot else None,
                            "boot to the agent + first call",
                            f"{int(b.get('pages_reset', 0))} pages put back; {hangs}"))
    return rows


def write_markdown(path, context, sizes, rows, goals, smoke):
    lines = ["# thaw benchmarks", ""]
    lines.append(f"Run {context.get('date', '?')} on {context.get('host_name', '?')}, "
                 f"{context.get('num_cpus', '?')} CPUs"
                 + (" — **smoke run** (one iteration, small sizes: not a measurement)" if smoke else "")
                 + ". Ratios compare figures from this one run; a benchmark whose "
                 "iterations were each recorded (restores, resets, request cycles, "
                 "the `work` calls) is its median iteration.")
    lines += ["", "## Targets", "", "| target | result | detail |", "| --- | --- | --- |"]
    for g in goals:
        lines.append(f"| {g['target']} | {'PASS' if g['pass'] else 'FAIL'} | {g['detail']} |")
    section = None
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            lines += ["", f"## {section}", "", "| what | value | ratio | against | note |",
                      "| --- | --- | --- | --- | --- |"]
        value = r["value"]
        if value is None:
            shown = "—"
        else:
            shown = fmt_ms(value) if r["unit"] == "ms" else f"{value:.3g} {r['unit']}"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else ""
        lines.append(f"| {r['name']} | {shown} | {ratio} | {r['baseline']} | {r['note']} |")
    if any(r["section"] == LINUX_VM_SECTION for r in rows):
        lines += ["", "The Linux VM rows come from `benchmarks/linux_vm_bench.cc` run inside "
                  "the QEMU harness (`tests/kvm-vm/run.sh`): real KVM, nested under QEMU's "
                  "emulation, where every exit and guest page fault is emulated, so only "
                  "their ratios mean anything; absolute times wait for a host with KVM."]
    if any(r["section"] == "FaaS load test" for r in rows):
        lines += ["", "The load test's latencies by mode and the server's resident memory "
                  "over the reset run (`benchmarks/faas_load.py`):", "",
                  "![FaaS load test](faas-load.png)"]
    lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def plot(path, results, sizes, samples):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = ["eager", "lazy", "prefetch", "shared_1st", "shared_nth", "firecracker"]
    fig, (bars, cdf) = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.8 / max(1, len(sizes))
    for i, size in enumerate(sizes):
        values = [results.get(f"restore/{e}/first_call/{size}", {}).get("ms", 0) for e in engines]
        xs = [x + i * width for x in range(len(engines))]
        bars.bar(xs, values, width, label=f"{size} restore + first call")
        cold = results.get(f"cold_boot_init/{size}", {}).get("ms")
        if cold:
            bars.axhline(cold, linestyle="--", linewidth=1, color=f"C{i}",
                         label=f"{size} cold boot + init")
    bars.set_xticks([x + width * (len(sizes) - 1) / 2 for x in range(len(engines))])
    bars.set_xticklabels(engines, rotation=20)
    bars.set_yscale("log")
    bars.set_ylabel("ms (log scale)")
    bars.set_title("Restore latency by engine and guest size")
    bars.legend(fontsize=8)

    big = sizes[-1] if sizes else ""
    for e in engines:
        values = sorted(samples.get(f"restore/{e}/first_call/{big}", []))
        if not values:
            continue
        ys = [(k + 1) / len(values) for k in range(len(values))]
        cdf.step(values, ys, where="post", label=e)
    cdf.set_xscale("log")
    cdf.set_xlabel("restore + first call, ms (log scale)")
    cdf.set_ylabel("fraction of restores")
    cdf.set_title(f"Time to first call, CDF ({big})")
    cdf.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--raw", required=True)
    parser.add_argument("--samples", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--faas", help="benchmarks/faas_load.py's JSON, if run")
    parser.add_argument("--stress", help="tests/stress_test.cc's JSON lines, if run")
    parser.add_argument("--linux-vm", help="benchmarks/linux_vm_bench.cc's JSON from the "
                        "QEMU harness (scripts/bench.sh)")
    args = parser.parse_args()
    context, results = load_results(args.raw)
    CPUS["n"] = context.get("num_cpus")
    with open(args.samples) as f:
        samples = json.load(f)
    # Where every iteration was recorded, the median iteration stands for
    # the benchmark: a burst of noise from the host (these machines have
    # them) moves a mean, not a median.
    for name, values in samples.items():
        if name in results and len(values) >= 3:
            ordered = sorted(values)
            mid = len(ordered) // 2
            median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
            results[name]["mean_ms"] = results[name]["ms"]
            results[name]["ms"] = median
    sizes, rows = build(results)
    goals = targets(results, sizes)
    if args.faas and os.path.exists(args.faas):
        with open(args.faas) as f:
            faas = json.load(f)
        goals += faas_targets(faas)
        rows += faas_rows(faas)
    if args.stress and os.path.exists(args.stress):
        with open(args.stress) as f:
            stress = [json.loads(line) for line in f if line.strip()]
        stress_goals, stress_rows = stress_targets_and_rows(stress)
        goals += stress_goals
        rows += stress_rows
    if args.linux_vm:
        rows += linux_vm_rows(args.linux_vm)
    with open(args.out + ".json", "w") as f:
        json.dump({"context": context, "smoke": args.smoke, "sizes": sizes,
                   "rows": rows, "targets": goals, "benchmarks": results,
                   "samples": samples}, f, indent=1)
    write_markdown(args.out + ".md", context, sizes, rows, goals, args.smoke)
    plot(args.out + ".png", results, sizes, samples)
    passed = sum(g["pass"] for g in goals)
    print(f"report: {args.out}.json, .md, .png — {passed} of {len(goals)} targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
