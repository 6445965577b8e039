// Restores from a remote store (issue: snapshots served to a fleet): nginx
// on loopback behind thaw_fault_proxy adding a round-trip time, against
// downloading the whole file first and restoring it locally, with a cold
// and a warm host cache, and a second version of the function restored on
// a host that has the first. Writes a Markdown table and JSON:
//
//   remote_bench OUT_PREFIX   (OUT_PREFIX.md, OUT_PREFIX.json)
//
// THAW_BENCH_SMOKE=1: a small guest, one round-trip time, one iteration.
// Every reply is checked against the booted guest's; times are medians.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "benchmarks/scenario.h"
#include "remote/chunk_cache.h"
#include "remote/http_client.h"
#include "snapshot/snapshot_file.h"
#include "tests/remote/servers.h"
#include "thaw/remote.h"
#include "thaw/snapshot.h"
#include "thaw/vm.h"

namespace thaw::bench {
namespace {

namespace fs = std::filesystem;

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

void Check(const absl::StatusOr<std::string>& reply, const Scenario& s,
           const std::string& what) {
  if (!reply.ok()) Die(what, reply.status());
  if (*reply != s.work_reply) {
    Die(what, absl::DataLossError("the restored Vm answered differently"));
  }
}

struct Row {
  std::string name;
  double ms = 0;
  uint64_t bytes = 0;  // from the store
  std::string note;
};

// The baseline: the whole file downloaded (8 MiB ranges, 8 at once, as
// PullSnapshot does), then restored from the local file.
absl::Duration DownloadThenRestore(const std::string& url,
                                   const std::string& local, const Scenario& s,
                                   uint64_t* bytes) {
  const absl::Time start = absl::Now();
  remote::HttpClient client(remote::HttpOptions{});
  auto head = client.Do(remote::RangeRequest(url, 0, 1));
  if (!head.ok()) Die("download", head.status());
  const uint64_t total = head->total_size;
  std::vector<remote::HttpRequest> pieces;
  for (uint64_t at = 0; at < total; at += 8ull << 20) {
    pieces.push_back(remote::RangeRequest(
        url, at, std::min<uint64_t>(8ull << 20, total - at)));
  }
  {
    std::ofstream out(local, std::ios::binary | std::ios::trunc);
    fs::resize_file(local, total);
  }
  FILE* f = std::fopen(local.c_str(), "r+b");
  absl::Status st =
      client.Run(pieces, [&](size_t i, const remote::HttpResponse& r) {
        std::fseek(f, *pieces[i].range_first, SEEK_SET);
        std::fwrite(r.body.data(), 1, r.body.size(), f);
        return absl::OkStatus();
      });
  std::fclose(f);
  if (!st.ok()) Die("download", st);
  *bytes = client.counters().bytes_received.load();
  auto vm = Vm::Restore(
      local, BenchRestoreOptions(s.memory_size, RestoreEngine::kLazyPrefetch));
  if (!vm.ok()) Die("restore the downloaded file", vm.status());
  Check((*vm)->Call("work", ""), s, "first call after download");
  return absl::Now() - start;
}

// Open(url) + Restore + first call; the store's bytes in *bytes.
// The parts of the last RemoteRestore, for the report's notes.
std::string last_split;

// `trusted`: the host may use what it has without asking the store (as a
// store's Cache-Control max-age allows).
absl::Duration RemoteRestore(const std::string& url, const std::string& cache,
                             RestoreEngine engine, const Scenario& s,
                             uint64_t* bytes, bool trusted = false) {
  OpenOptions options;
  options.remote.cache_dir = cache;
  if (trusted) options.remote.manifest_max_age = absl::Hours(1);
  const absl::Time start = absl::Now();
  auto snapshot = Snapshot::Open(url, options);
  if (!snapshot.ok()) Die("open " + url, snapshot.status());
  const absl::Time opened = absl::Now();
  auto vm = snapshot->Restore(BenchRestoreOptions(s.memory_size, engine));
  if (!vm.ok()) Die("restore " + url, vm.status());
  const absl::Time restored = absl::Now();
  Check((*vm)->Call("work", ""), s, "first call from the store");
  const absl::Time end = absl::Now();
  const RemoteStats stats = snapshot->remote_stats();
  *bytes = stats.bytes_fetched;
  // Cache entries are written in the background, each under a claim until
  // it is in: the next restore on this host should find a settled cache,
  // as a host's next request usually does.
  if (auto c = remote::ChunkCache::Open(cache, RemoteOptions{}.cache_max_bytes);
      c.ok()) {
    (*c)->WaitForAllClaims();
  }
  last_split = absl::StrFormat(
      "open %.1f + restore %.1f + first call %.1f ms; %d requests",
      Ms(opened - start), Ms(restored - opened), Ms(end - restored),
      stats.requests);
  return end - start;
}

// Open(path) + Restore + first call from the local file.
absl::Duration LocalRestore(const std::string& path, const Scenario& s) {
  const absl::Time start = absl::Now();
  auto snapshot = Snapshot::Open(path);
  if (!snapshot.ok()) Die("open local", snapshot.status());
  auto vm = snapshot->Restore(
      BenchRestoreOptions(s.memory_size, RestoreEngine::kLazyPrefetch));
  if (!vm.ok()) Die("restore local", vm.status());
  Check((*vm)->Call("work", ""), s, "local first call");
  return absl::Now() - start;
}

// Of v2's non-zero chunks, the share whose content v1 also holds.
double SharedChunks(const std::string& v1, const std::string& v2) {
  auto a = snapshot::SnapshotImage::Open(v1);
  auto b = snapshot::SnapshotImage::Open(v2);
  if (!a.ok() || !b.ok())
    Die("open versions", a.ok() ? b.status() : a.status());
  std::vector<std::pair<uint64_t, uint64_t>> have;
  for (uint64_t c = 0; c < (*a)->chunk_count(); ++c) {
    if ((*a)->Locate(c).zero()) continue;
    const auto h = (*a)->ChunkContentHash(c);
    have.push_back({h.low, h.high});
  }
  std::sort(have.begin(), have.end());
  uint64_t shared = 0, total = 0;
  for (uint64_t c = 0; c < (*b)->chunk_count(); ++c) {
    if ((*b)->Locate(c).zero()) continue;
    ++total;
    const auto h = (*b)->ChunkContentHash(c);
    shared += std::binary_search(have.begin(), have.end(),
                                 std::make_pair(h.low, h.high));
  }
  return total == 0 ? 0 : 100.0 * shared / total;
}

int Main(const std::string& out) {
  const uint64_t size = Smoke() ? (64ull << 20) : (512ull << 20);
  const int iterations = Smoke() ? 1 : 3;
  // The warm restores take milliseconds, so each iteration takes several,
  // each right after a restore of the local file they are compared with:
  // a burst of noise from the host then moves both sides of a ratio.
  const int warm_samples = Smoke() ? 1 : 5;
  const std::vector<int> rtts =
      Smoke() ? std::vector<int>{20} : std::vector<int>{1, 20};
  const Scenario& s = GetScenario(size);
  const std::string root = ScratchDir() + "/remote";
  const std::string www = root + "/www";
  fs::create_directories(www + "/fns");
  fs::copy_file(s.snapshot, www + "/fns/fn.thaw");
  fs::copy_file(s.prefetch, www + "/fns/fn-ws.thaw");
  // Version 2: the same function with a tenth of its data changed (one
  // byte in every tenth 64 KiB block), as a new release that shares most
  // of its state with the last.
  const std::string v2 = root + "/fn-v2.thaw";
  {
    auto vm = Vm::Restore(s.snapshot,
                          BenchRestoreOptions(size, RestoreEngine::kLazy));
    if (!vm.ok()) Die("restore for v2", vm.status());
    if (auto r = (*vm)->Call("revise", "10"); !r.ok())
      Die("revise", r.status());
    if (auto st = (*vm)->Snapshot(v2); !st.ok()) Die("snapshot v2", st);
  }
  fs::copy_file(v2, www + "/fns/fn-v2.thaw");
  const double shared = SharedChunks(s.snapshot, v2);
  auto nginx = testing::Nginx::Start(www, root + "/nginx");
  if (!nginx.ok()) Die("start nginx", nginx.status());

  std::vector<Row> rows;
  std::map<std::string, double> json;
  auto file_size = [](const std::string& p) { return fs::file_size(p); };
  // The local file, for the warm-cache comparisons (its row comes first;
  // its samples are taken beside each warm remote restore below).
  LocalRestore(s.prefetch, s);  // warms the page cache
  std::vector<double> local_all;
  rows.push_back({"local file, lazy+prefetch: open + restore + first call", 0,
                  0, "page cache warm"});
  const size_t local_row = rows.size() - 1;
  for (int rtt : rtts) {
    int port = 0;
    auto proxy = testing::StartFaultProxy(
        (*nginx)->port(), {"--delay-ms", absl::StrCat(rtt / 2.0)}, &port);
    if (!proxy.ok()) Die("start proxy", proxy.status());
    const std::string base = absl::StrCat("http://127.0.0.1:", port, "/fns/");
    const std::string tag = absl::StrCat(rtt, "ms");
    std::vector<double> dl, cold_pf, cold_lazy, warm_pf, trusted_pf, local;
    std::string pf_split, lazy_split, warm_split, trusted_split;
    uint64_t dl_bytes = 0, pf_bytes = 0, lazy_bytes = 0, warm_bytes = 0,
             trusted_bytes = 0;
    for (int i = 0; i < iterations; ++i) {
      dl.push_back(Ms(DownloadThenRestore(
          base + "fn-ws.thaw", root + "/downloaded.thaw", s, &dl_bytes)));
      fs::remove(root + "/downloaded.thaw");
      const std::string cache = absl::StrCat(root, "/cache-", tag, "-", i);
      cold_pf.push_back(
          Ms(RemoteRestore(base + "fn-ws.thaw", cache,
                           RestoreEngine::kLazyPrefetch, s, &pf_bytes)));
      pf_split = last_split;
      for (int k = 0; k < warm_samples; ++k) {
        local.push_back(Ms(LocalRestore(s.prefetch, s)));
        warm_pf.push_back(
            Ms(RemoteRestore(base + "fn-ws.thaw", cache,
                             RestoreEngine::kLazyPrefetch, s, &warm_bytes)));
        warm_split = last_split;
        local.push_back(Ms(LocalRestore(s.prefetch, s)));
        trusted_pf.push_back(
            Ms(RemoteRestore(base + "fn-ws.thaw", cache,
                             RestoreEngine::kLazyPrefetch, s, &trusted_bytes,
                             /*trusted=*/true)));
        trusted_split = last_split;
      }
      const std::string cache2 =
          absl::StrCat(root, "/cache-lazy-", tag, "-", i);
      cold_lazy.push_back(Ms(RemoteRestore(
          base + "fn.thaw", cache2, RestoreEngine::kLazy, s, &lazy_bytes)));
      lazy_split = last_split;
      fs::remove_all(cache);
      fs::remove_all(cache2);
    }
    const std::string rtt_label = absl::StrCat(rtt, " ms RTT");
    local_all.insert(local_all.end(), local.begin(), local.end());
    const double local_ms = Median(local);
    json["local_prefetch_ms_" + tag] = local_ms;
    rows.push_back(
        {absl::StrCat(rtt_label,
                      ": download whole file, then "
                      "lazy+prefetch restore + first call"),
         Median(dl), dl_bytes,
         absl::StrFormat("file %.1f MiB", file_size(s.prefetch) / 1048576.0)});
    rows.push_back(
        {absl::StrCat(rtt_label, ": remote lazy+prefetch, cold cache"),
         Median(cold_pf), pf_bytes,
         absl::StrFormat("%.2fx of download-then-restore (last: %s)",
                         Median(cold_pf) / Median(dl), pf_split)});
    rows.push_back({absl::StrCat(rtt_label, ": remote lazy, cold cache"),
                    Median(cold_lazy), lazy_bytes,
                    absl::StrCat("last: ", lazy_split)});
    rows.push_back(
        {absl::StrCat(rtt_label,
                      ": remote lazy+prefetch, warm cache "
                      "(open included: one round trip)"),
         Median(warm_pf), warm_bytes,
         absl::StrFormat("%.2fx of the local file (%.1f ms beside "
                         "it; last: %s)",
                         Median(warm_pf) / local_ms, local_ms, warm_split)});
    json["download_then_restore_ms_" + tag] = Median(dl);
    json["cold_prefetch_ms_" + tag] = Median(cold_pf);
    json["cold_lazy_ms_" + tag] = Median(cold_lazy);
    rows.push_back(
        {absl::StrCat(rtt_label,
                      ": remote lazy+prefetch, warm cache, the store allowing "
                      "the host to keep what it read (no round trip)"),
         Median(trusted_pf), trusted_bytes,
         absl::StrFormat("%.2fx of the local file (%.1f ms beside it; "
                         "last: %s)",
                         Median(trusted_pf) / local_ms, local_ms,
                         trusted_split)});
    json["warm_prefetch_ms_" + tag] = Median(warm_pf);
    json["warm_trusted_prefetch_ms_" + tag] = Median(trusted_pf);
    json["cold_prefetch_bytes_" + tag] = pf_bytes;
    json["download_bytes_" + tag] = dl_bytes;
  }
  rows[local_row].ms = Median(local_all);
  json["local_prefetch_ms"] = Median(local_all);
  // A warm handle: restores through an already open Snapshot (the manifest
  // fetched once per host), against the local file.
  {
    int port = 0;
    auto proxy = testing::StartFaultProxy(
        (*nginx)->port(), {"--delay-ms", absl::StrCat(rtts.back() / 2.0)},
        &port);
    if (!proxy.ok()) Die("start proxy", proxy.status());
    const std::string url =
        absl::StrCat("http://127.0.0.1:", port, "/fns/fn-ws.thaw");
    OpenOptions options;
    options.remote.cache_dir = root + "/cache-handle";
    auto remote_handle = Snapshot::Open(url, options);
    auto local_handle = Snapshot::Open(s.prefetch);
    if (!remote_handle.ok() || !local_handle.ok()) {
      Die("open handles",
          remote_handle.ok() ? local_handle.status() : remote_handle.status());
    }
    std::vector<double> r, l;
    for (int i = 0; i < iterations * warm_samples + 1; ++i) {
      for (auto* h : {&*remote_handle, &*local_handle}) {
        const absl::Time start = absl::Now();
        auto vm =
            h->Restore(BenchRestoreOptions(size, RestoreEngine::kLazyPrefetch));
        if (!vm.ok()) Die("restore via handle", vm.status());
        Check((*vm)->Call("work", ""), s, "first call via handle");
        if (i > 0)
          (h == &*remote_handle ? r : l).push_back(Ms(absl::Now() - start));
      }
    }
    rows.push_back(
        {"open handle, local file: restore + first call", Median(l), 0, ""});
    rows.push_back(
        {absl::StrCat("open handle, remote (", rtts.back(),
                      " ms RTT), warm cache: restore + first call"),
         Median(r), 0,
         absl::StrFormat("%.2fx of the local file", Median(r) / Median(l))});
    json["handle_local_ms"] = Median(l);
    json["handle_remote_warm_ms"] = Median(r);
  }
  // Version 2 on a host that has version 1 (eager: every frame).
  {
    const std::string base =
        absl::StrCat("http://127.0.0.1:", (*nginx)->port(), "/fns/");
    const std::string cache = root + "/cache-versions";
    uint64_t b1 = 0, b2 = 0;
    RemoteRestore(base + "fn.thaw", cache, RestoreEngine::kEager, s, &b1);
    OpenOptions options;
    options.remote.cache_dir = cache;
    auto snapshot = Snapshot::Open(base + "fn-v2.thaw", options);
    if (!snapshot.ok()) Die("open v2", snapshot.status());
    auto vm =
        snapshot->Restore(BenchRestoreOptions(size, RestoreEngine::kEager));
    if (!vm.ok()) Die("restore v2", vm.status());
    b2 = snapshot->remote_stats().bytes_fetched;
    rows.push_back({"version 1, eager restore on an empty cache", 0, b1, ""});
    rows.push_back(
        {"version 2 on a host that has version 1", 0, b2,
         absl::StrFormat("%.1f%% of v2's chunks are v1's; %.1f%% of v1's bytes",
                         shared, 100.0 * b2 / b1)});
    json["v1_bytes"] = b1;
    json["v2_bytes"] = b2;
    json["v2_shared_percent"] = shared;
  }

  std::ofstream md(out + ".md");
  md << "# Remote store (benchmarks/remote_bench.cc)\n\n"
     << absl::StrFormat(
            "Guest: benchmarks/guests/bench_fn.c, %d MiB of memory, snapshot "
            "%.1f MiB (with its working set recorded — raw frames for "
            "local maps, packed twins for remote restores — %.1f MiB); nginx "
            "on "
            "loopback behind thaw_fault_proxy adding the round-trip time; "
            "emulated backend; medians of %d (cold restores, downloads) "
            "and %d (warm restores, each right after a restore of the "
            "local file they are compared with); every reply checked.\n\n",
            size >> 20, file_size(s.snapshot) / 1048576.0,
            file_size(s.prefetch) / 1048576.0, iterations,
            iterations * warm_samples)
     << "| what | ms | bytes from the store | note |\n|---|---:|---:|---|\n";
  for (const Row& row : rows) {
    md << absl::StrFormat("| %s | %s | %d | %s |\n", row.name,
                          row.ms == 0 ? "" : absl::StrFormat("%.1f", row.ms),
                          row.bytes, row.note);
  }
  std::ofstream js(out + ".json");
  js << "{";
  bool first = true;
  for (const auto& [k, v] : json) {
    js << (first ? "" : ", ") << "\"" << k << "\": " << v;
    first = false;
  }
  js << "}\n";
  md.close();
  std::ifstream again(out + ".md");
  std::printf("%s",
              std::string(std::istreambuf_iterator<char>(again), {}).c_str());
  return 0;
}

}  // namespace
}  // namespace thaw::bench

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: remote_bench OUT_PREFIX\n");
    return 2;
  }
  return thaw::bench::Main(argv[1]);
}
