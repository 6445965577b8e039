// Snapshot writing: MB of guest memory per second and compression ratio, by
// zstd level and chunk size, on the smallest scenario's booted guest.
#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "benchmarks/scenario.h"

namespace thaw::bench {
namespace {

Vm& BootedVm(uint64_t size) {
  static std::unique_ptr<Vm> vm;
  if (!vm) {
    GetScenario(size);  // prepared first, so its log comes first
    auto created = Vm::Create(BenchConfig(size));
    if (!created.ok()) Die("create", created.status());
    if (auto s = (*created)->LoadGuest(THAW_BENCH_GUEST); !s.ok())
      Die("load", s);
    if (auto s = (*created)->Boot(); !s.ok()) Die("boot", s);
    vm = *std::move(created);
  }
  return *vm;
}

void Write(benchmark::State& state, uint64_t size, int level, uint32_t chunk) {
  Vm& vm = BootedVm(size);
  const std::string path = ScratchDir() + "/write.thaw";
  SnapshotOptions options;
  options.compression_level = level;
  options.chunk_size = chunk;
  for (auto _ : state) {
    absl::Time start = absl::Now();
    if (auto s = vm.Snapshot(path, options); !s.ok()) Die("snapshot", s);
    state.SetIterationTime(absl::ToDoubleSeconds(absl::Now() - start));
  }
  auto info = InspectSnapshot(path);
  if (!info.ok()) Die("inspect", info.status());
  const uint64_t data = (info->chunks - info->zero_chunks) * uint64_t{chunk};
  state.SetBytesProcessed(state.iterations() * size);  // guest memory
  state.counters["memory_over_file"] = info->compression_ratio();
  state.counters["data_over_stored"] =
      info->stored_bytes ? static_cast<double>(data) / info->stored_bytes : 0;
  state.counters["file_MiB"] = info->file_size / 1048576.0;
  std::filesystem::remove(path);
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

// Dense memory: a guest whose memory is mostly non-zero, compressible data
// (bench_fn's `densify`), written at the default level by the
// single-threaded writer and with every core, interleaved (one of each per
// iteration) so that the host's noise falls on both alike. The iteration
// time is every core's; the counters are both medians in MB/s of guest
// memory.
void WriteDense(benchmark::State& state, uint64_t size) {
  auto vm = Vm::Create(BenchConfig(size));
  if (!vm.ok()) Die("create", vm.status());
  if (auto s = (*vm)->LoadGuest(THAW_BENCH_GUEST); !s.ok()) Die("load", s);
  if (auto s = (*vm)->Boot(); !s.ok()) Die("boot", s);
  if (auto r = (*vm)->Call("densify", ""); !r.ok()) Die("densify", r.status());
  const std::string path = ScratchDir() + "/dense.thaw";
  auto write = [&](unsigned threads) {
    SnapshotOptions options;
    options.threads = threads;
    absl::Time start = absl::Now();
    if (auto s = (*vm)->Snapshot(path, options); !s.ok()) Die("snapshot", s);
    return absl::ToDoubleSeconds(absl::Now() - start);
  };
  std::vector<double> one, all;
  for (auto _ : state) {
    one.push_back(write(1));
    all.push_back(write(0));
    state.SetIterationTime(all.back());
  }
  auto info = InspectSnapshot(path);
  if (!info.ok()) Die("inspect", info.status());
  state.counters["one_thread_MBps"] = size / Median(one) / 1e6;
  state.counters["all_threads_MBps"] = size / Median(all) / 1e6;
  state.counters["memory_over_file"] = info->compression_ratio();
  state.counters["dense_fraction"] =
      static_cast<double>(info->chunks - info->zero_chunks) / info->chunks;
  std::filesystem::remove(path);
}

}  // namespace

void RegisterSnapshotBenchmarks() {
  const uint64_t size = ScenarioSizes().front();
  auto add = [&](int level, uint32_t chunk, int iterations) {
    benchmark::RegisterBenchmark(
        absl::StrCat("snapshot_write/level:", level, "/chunk:", chunk >> 10,
                     "KiB/", SizeName(size))
            .c_str(),
        Write, size, level, chunk)
        ->Iterations(Iterations(iterations))
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  };
  for (int level : {1, 3, 9, 19}) add(level, 64u << 10, level >= 19 ? 1 : 3);
  for (uint32_t chunk : {16u << 10, 256u << 10, 1u << 20}) add(3, chunk, 3);
  benchmark::RegisterBenchmark(
      absl::StrCat("snapshot_write_dense/", SizeName(size)).c_str(), WriteDense,
      size)
      ->Iterations(Iterations(5))
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

}  // namespace thaw::bench
