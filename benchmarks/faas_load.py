#!/usr/bin/env python3
"""The FaaS load test: examples/faas serving examples/guests/snapstart_fn.c
(an init of about a second, a call that answers from its tables) on
loopback, driven by thaw-faas-load with N concurrent clients, one function
per isolation mode side by side:

  boot     every request boots the guest and runs its init (no snapshot)
  restore  every request restores the snapshot (lazy+prefetch)
  reuse    provisioned sandboxes reused warm, state kept between requests
  reset    provisioned sandboxes reset to the snapshot after every request

then a burst above the provisioned count (restores fill in, throttling past
the reserved concurrency), and the server's resident memory and descriptors
sampled over the reset run (100k requests). Writes
benchmarks/results/faas-load.json (report.py puts it into latest.md) and
faas-load.png. Bounded: every run has a request count and a time limit.

  benchmarks/faas_load.py --build build [--smoke] [--out PREFIX]
"""
import argparse
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request

CLIENTS = 4


def run_server(build, state, log):
    out = open(log, "wb")
    proc = subprocess.Popen(
        [os.path.join(build, "examples/thaw-faas"), "--state", state,
         "--listen", "127.0.0.1:0"], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        with open(log, errors="replace") as f:
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", f.read())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            raise SystemExit("faas_load: the server exited: " + open(log).read())
        time.sleep(0.05)
    raise SystemExit("faas_load: the server did not start")


def call(url, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method)
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.status, r.read()


def metric(url, name):
    _, text = call(url, "GET", "/metrics")
    m = re.search(rf"^{name} (\S+)$", text.decode(), re.M)
    return float(m.group(1))


def deploy(url, name, guest, isolation, provisioned, reserved):
    status, body = call(url, "PUT", f"/functions/{name}", {
        "guest": guest, "handler": "is_prime", "memory_mb": 64,
        "backend": os.environ.get("THAW_FAAS_BACKEND", "auto"),
        "isolation": isolation, "provisioned_concurrency": provisioned,
        "reserved_concurrency": reserved, "timeout_ms": 60000,
    })
    if status != 201:
        raise SystemExit(f"faas_load: deploy {name}: {status} {body}")
    return json.loads(body)


def load(build, url, function, clients, requests, seconds):
    out = subprocess.run(
        [os.path.join(build, "examples/thaw-faas-load"), "--url", url,
         "--function", function, "--clients", str(clients),
         "--requests", str(requests), "--seconds", str(seconds),
         "--payload", "7919"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


class Sampler:
    """Samples the server's RSS and descriptors every `period` seconds."""

    def __init__(self, url, period):
        self.url, self.period, self.samples = url, period, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        start = time.time()
        while not self.stop.is_set():
            self.samples.append({
                "t": time.time() - start,
                "rss_mib": metric(self.url, "process_resident_memory_bytes") / 2**20,
                "fds": metric(self.url, "process_open_fds"),
            })
            self.stop.wait(self.period)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *args):
        self.stop.set()
        self.thread.join()


def plot(path, modes, rss):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = list(modes)
    for i, (key, label) in enumerate([("p50_ms", "p50"), ("p99_ms", "p99"),
                                      ("p999_ms", "p99.9")]):
        a.bar([x + i * 0.27 for x in range(len(names))],
              [max(modes[n][key], 1e-3) for n in names], 0.27, label=label)
    a.set_xticks([x + 0.27 for x in range(len(names))])
    a.set_xticklabels([f"{n}\n{modes[n]['throughput_rps']:.0f} req/s"
                       for n in names])
    a.set_yscale("log")
    a.set_ylabel("latency (ms, log)")
    a.set_title(f"{CLIENTS} clients, one function per mode")
    a.legend()
    b.plot([s["t"] for s in rss], [s["rss_mib"] for s in rss])
    b.set_xlabel("seconds into the reset run")
    b.set_ylabel("server resident memory (MiB)")
    b.set_ylim(bottom=0)
    b.set_title("resident memory under load")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="benchmarks/results/faas-load")
    ap.add_argument("--smoke", action="store_true",
                    help="a few requests per mode (CI)")
    args = ap.parse_args()
    guest = os.path.join(args.build, "examples/snapstart_fn.elf")
    n = {"boot": 2, "restore": 40, "reuse": 400, "reset": 1000} if args.smoke \
        else {"boot": 8, "restore": 400, "reuse": 20000, "reset": 100000}
    with tempfile.TemporaryDirectory(prefix="thaw-faas-load-") as tmp:
        proc, url = run_server(args.build, os.path.join(tmp, "state"),
                               os.path.join(tmp, "server.log"))
        try:
            deployed = {}
            for mode in ["boot", "restore", "reuse", "reset"]:
                provisioned = CLIENTS if mode in ("reuse", "reset") else 0
                deployed[mode] = deploy(url, mode, guest, mode, provisioned,
                                        CLIENTS)
            modes, rss = {}, []
            for mode in ["boot", "restore", "reuse", "reset"]:
                fds_before = metric(url, "process_open_fds")
                if mode == "reset":
                    with Sampler(url, 0.5) as sampler:
                        modes[mode] = load(args.build, url, mode, CLIENTS,
                                           n[mode], 900)
                    rss = sampler.samples
                else:
                    modes[mode] = load(args.build, url, mode, CLIENTS, n[mode],
                                       300)
                modes[mode]["init_ms"] = deployed[mode]["init_ms"]
                modes[mode]["fds_before"] = fds_before
                modes[mode]["fds_after"] = metric(url, "process_open_fds")
            # A burst: three times the provisioned sandboxes' worth of
            # clients against a function with 2 provisioned and 6 reserved.
            deploy(url, "burst", guest, "reset", 2, 6)
            burst = load(args.build, url, "burst", 18, 300 if args.smoke else 3000,
                         60)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
    tenth = max(1, len(rss) // 10)
    result = {
        "clients": CLIENTS,
        "function": "examples/guests/snapstart_fn.c is_prime, 64 MiB",
        "smoke": args.smoke,
        "modes": modes,
        "burst": burst,
        "rss": rss,
        "rss_start_mib": sum(s["rss_mib"] for s in rss[:tenth]) / tenth if rss else None,
        "rss_end_mib": sum(s["rss_mib"] for s in rss[-tenth:]) / tenth if rss else None,
        "rss_max_mib": max((s["rss_mib"] for s in rss), default=None),
    }
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    try:
        plot(args.out + ".png", modes, rss)
    except ImportError:
        print("faas_load: matplotlib missing, no plot")
    for mode, r in modes.items():
        print(f"{mode:8s} {r['requests']:7d} requests {r['throughput_rps']:9.1f} "
              f"req/s p50 {r['p50_ms']:9.3f} p99 {r['p99_ms']:9.3f} "
              f"p99.9 {r['p999_ms']:9.3f} ms errors {r['errors']}")
    print(f"burst    {burst['statuses']} starts {burst['starts']}")
    print(f"rss {result['rss_start_mib']:.1f} -> {result['rss_end_mib']:.1f} MiB "
          f"(max {result['rss_max_mib']:.1f}) over {modes['reset']['requests']} requests")


if __name__ == "__main__":
    main()
