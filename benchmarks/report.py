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
import re
import sys

UNIT_TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def load_results(path):
    with open(path) as f:
        raw = json.load(f)
    results = {}
    for b in raw["benchmarks"]:
        if b.get("run_type") == "aggregate":
            continue
        name = re.sub(r"/iterations:\d+.*$", "", b["name"])
        entry = dict(b)
        entry["ms"] = b["real_time"] * UNIT_TO_MS[b["time_unit"]]
        results[name] = entry
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
    uffd_zero = get("floor/uffd_zeropage_page")
    uring = get("floor/io_uring_read_64KiB")
    row("floor", "memcpy bandwidth", memcpy / 1e9, "GB/s", "", None)
    row("floor", "userfaultfd fault, UFFDIO_COPY 4 KiB", uffd_copy * 1000, "µs/page", "", None)
    row("floor", "userfaultfd fault, UFFDIO_ZEROPAGE", uffd_zero * 1000, "µs/page", "", None)
    row("floor", "io_uring 64 KiB read (cached, QD1)", uring * 1000, "µs", "", None)

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
                row(f"restore {size}", label, ms, "ms",
                    "cold boot + init", cold / ms if ms else None,
                    (f"{fc_call / ms:.2f}x vs Firecracker-style"
                     if phase == "first_call" and fc_call and engine != "firecracker" else ""))
        lazy = get(f"fault_service/lazy_per_page/{size}")
        if lazy is not None and uffd_copy:
            row(f"restore {size}", "lazy fault service per page (64 KiB chunks)",
                lazy * 1000, "µs/page", "raw userfaultfd COPY",
                uffd_copy / lazy if lazy else None)
        reset = get(f"reset/dirty16/{size}")
        nth = get(f"restore/shared_nth/first_instruction/{size}")
        if reset is not None and nth:
            row(f"restore {size}", "reset after 16 dirtied pages", reset * 1000,
                "µs", "n-th shared clone to first instruction", nth / reset)

    for name, r in sorted(results.items()):
        m = re.match(r"snapshot_write/level:(\d+)/chunk:(\d+)KiB/(.+)", name)
        if not m:
            continue
        mbps = r.get("bytes_per_second", 0) / 1e6
        row("snapshot write", f"level {m.group(1)}, {m.group(2)} KiB chunks ({m.group(3)})",
            mbps, "MB/s of guest memory", "memcpy", mbps * 1e6 / memcpy if memcpy else None,
            f"memory/file {r.get('memory_over_file', 0):.1f}x, data/stored "
            f"{r.get('data_over_stored', 0):.2f}x")

    empty = get("call/empty")
    host = get("call/host_round_trip_x100")
    row("calls", "empty call round trip", empty * 1000, "µs", "", None)
    if host is not None:
        row("calls", "host function round trip", host * 1000 / 100, "µs", "empty call",
            empty / (host / 100) if host else None)
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
    out = []

    def target(what, value, limit, better, detail):
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
        out.append({"target": what, "pass": ok, "detail": f"{margin}; {detail}"})

    cold = get(f"cold_boot_init/{big}")
    prefetch = get(f"restore/prefetch/first_call/{big}")
    target(f"lazy+prefetch restore+first call <= 1/10 of cold boot+init ({big})",
           prefetch, cold / 10 if cold else None, "lower",
           f"cold boot+init {cold:.0f} ms (init must compute >= 500 ms: "
           f"{'yes' if cold and cold >= 500 else 'no'})" if cold else "")
    fc = get(f"restore/firecracker/first_call/{big}")
    cold_row = results.get(f"cold_boot_init/{big}", {})
    snap_mib = cold_row.get("prefetch_snapshot_MiB")
    plain_mib = cold_row.get("snapshot_MiB")
    memory_mib = cold_row.get("memory_MiB")
    target(f"lazy+prefetch restore+first call <= Firecracker-style ({big})",
           prefetch, fc, "lower", "")
    target(f"the prefetch snapshot file >= 4x smaller than guest memory ({big})",
           memory_mib / snap_mib if snap_mib else None, 4, "higher",
           f"{snap_mib:.1f} MiB file (working set stored raw; {plain_mib:.1f} MiB "
           f"before it was recorded) for {memory_mib:.0f} MiB" if snap_mib else "")
    lazy = get(f"fault_service/lazy_per_page/{big}")
    raw = get("floor/uffd_copy_page")
    target("lazy fault service per page <= 1.5x raw userfaultfd fault",
           lazy, 1.5 * raw if raw else None, "lower", "decompression included")
    for size in sizes:
        nth = get(f"restore/shared_nth/first_call/{size}")
        pf = get(f"restore/prefetch/first_call/{size}")
        target(f"n-th shared clone restore+first call <= 1/3 of lazy+prefetch ({size})",
               nth, pf / 3 if pf else None, "lower", "")
    for size in sizes:
        reset = get(f"reset/dirty16/{size}")
        nth_i = get(f"restore/shared_nth/first_instruction/{size}")
        target(f"reset (16 dirty pages) <= 1/20 of n-th shared clone to first instruction ({size})",
               reset, nth_i / 20 if nth_i else None, "lower", "")
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


def write_markdown(path, context, sizes, rows, goals, smoke):
    lines = ["# thaw benchmarks", ""]
    lines.append(f"Run {context.get('date', '?')} on {context.get('host_name', '?')}, "
                 f"{context.get('num_cpus', '?')} CPUs"
                 + (" — **smoke run** (one iteration, small sizes: not a measurement)" if smoke else "")
                 + ". Ratios compare figures from this one run.")
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
        shown = fmt_ms(value) if r["unit"] == "ms" else f"{value:.3g} {r['unit']}"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else ""
        lines.append(f"| {r['name']} | {shown} | {ratio} | {r['baseline']} | {r['note']} |")
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
    args = parser.parse_args()
    context, results = load_results(args.raw)
    with open(args.samples) as f:
        samples = json.load(f)
    sizes, rows = build(results)
    goals = targets(results, sizes)
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
