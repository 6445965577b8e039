// Snapshot writing: MB of guest memory per second and compression ratio, by
// zstd level and chunk size, on the smallest scenario's booted guest.
#include <filesystem>
#include <memory>
#include <string>

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

// Dense memory: a guest whose memory is mostly non-zero, compressible data
// (bench_fn's `densify`), written at the default level with `threads`
// compressing threads (1: the single-threaded writer; 0: every core).
void WriteDense(benchmark::State& state, uint64_t size, unsigned threads) {
  static std::unique_ptr<Vm> vm;
  if (!vm) {
    auto created = Vm::Create(BenchConfig(size));
    if (!created.ok()) Die("create", created.status());
    if (auto s = (*created)->LoadGuest(THAW_BENCH_GUEST); !s.ok())
      Die("load", s);
    if (auto s = (*created)->Boot(); !s.ok()) Die("boot", s);
    if (auto r = (*created)->Call("densify", ""); !r.ok())
      Die("densify", r.status());
    vm = *std::move(created);
  }
  const std::string path = ScratchDir() + "/dense.thaw";
  SnapshotOptions options;
  options.threads = threads;
  for (auto _ : state) {
    absl::Time start = absl::Now();
    if (auto s = vm->Snapshot(path, options); !s.ok()) Die("snapshot", s);
    state.SetIterationTime(absl::ToDoubleSeconds(absl::Now() - start));
  }
  auto info = InspectSnapshot(path);
  if (!info.ok()) Die("inspect", info.status());
  state.SetBytesProcessed(state.iterations() * size);
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
  for (unsigned threads : {1u, 0u}) {
    benchmark::RegisterBenchmark(
        absl::StrCat("snapshot_write_dense/threads:",
                     threads == 0 ? "all" : "1", "/", SizeName(size))
            .c_str(),
        WriteDense, size, threads)
        ->Iterations(Iterations(3))
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace thaw::bench
