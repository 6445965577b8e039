// Restore latency: cold boot + init (what a snapshot replaces), every
// restore engine to its first instruction and through its first call, the
// Firecracker-style baseline, shared-base clones and reset.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "benchmarks/scenario.h"
#include "lib/vm_internal.h"

namespace thaw::bench {
namespace {

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

void CheckReply(const absl::StatusOr<std::string>& reply, const Scenario& s) {
  if (!reply.ok()) Die("first call", reply.status());
  if (*reply != s.work_reply) {
    Die("first call", absl::DataLossError("restored Vm answered differently"));
  }
}

void ColdBoot(benchmark::State& state, uint64_t size) {
  const Scenario& s = GetScenario(size);
  for (auto _ : state) {
    absl::Time start = absl::Now();
    auto vm = Vm::Create(BenchConfig(size));
    if (!vm.ok()) Die("create", vm.status());
    if (auto st = (*vm)->LoadGuest(THAW_BENCH_GUEST); !st.ok()) Die("load", st);
    if (auto st = (*vm)->Boot(); !st.ok()) Die("boot", st);
    state.SetIterationTime(Seconds(absl::Now() - start));
  }
  state.counters["memory_MiB"] = size >> 20;
  state.counters["data_MiB"] = s.data_bytes >> 20;
  state.counters["snapshot_MiB"] = s.snapshot_bytes / 1048576.0;
  state.counters["prefetch_snapshot_MiB"] = s.prefetch_bytes / 1048576.0;
  state.counters["working_set_chunks"] = s.working_set_chunks;
}

// Page faults (minor + major) so far: of the calling thread, which runs the
// vCPU and so waits for every fault the guest takes, and of the process.
struct Faults {
  double thread = 0, process = 0;
  static Faults Now() {
    rusage self{}, thread{};
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_THREAD, &thread);
    return {static_cast<double>(thread.ru_minflt + thread.ru_majflt),
            static_cast<double>(self.ru_minflt + self.ru_majflt)};
  }
};

// One timed iteration: `restore()` and, with `first_call`, the first call
// (checked against the booted Vm's reply); the sample goes to the CDF, the
// faults the first call took to the counters (averaged over iterations).
// The restored Vm is returned so its destruction is not timed.
template <typename RestoreFn>
std::unique_ptr<Vm> TimeRestore(benchmark::State& state,
                                const std::string& name, const Scenario& s,
                                bool first_call, RestoreFn restore) {
  absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<Vm>> vm = restore();
  if (!vm.ok()) Die("restore", vm.status());
  const Faults before = Faults::Now();
  if (first_call) CheckReply((*vm)->Call("work", ""), s);
  const Faults after = Faults::Now();
  const absl::Duration took = absl::Now() - start;
  state.SetIterationTime(Seconds(took));
  RecordSample(name, absl::ToDoubleMilliseconds(took));
  if (first_call) {
    // Summed here; divided by the iterations when reported.
    auto add = [&](const char* name, double faults) {
      benchmark::Counter& c = state.counters[name];
      c = benchmark::Counter(c.value + faults,
                             benchmark::Counter::kAvgIterations);
    };
    add("call_faults_vcpu_thread", after.thread - before.thread);
    add("call_faults_process", after.process - before.process);
  }
  return *std::move(vm);
}

// Drops `path` from the page cache, as on a host that never read it: what a
// restore then needs comes from the disk.
void EvictFromPageCache(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) Die("open to evict", absl::InternalError(path));
  // Safe: written back first, so DONTNEED really drops every page.
  fdatasync(fd);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  close(fd);
}

// Reserves `pages` more 2 MiB huge pages (vm.nr_hugepages) while it lives,
// where the process may (root); puts the setting back.
class HugePageReservation {
 public:
  explicit HugePageReservation(uint64_t pages) {
    std::ifstream in(kPath);
    if (!(in >> old_)) return;
    std::ofstream out(kPath);
    out << old_ + pages << "\n";
    changed_ = true;
  }
  ~HugePageReservation() {
    if (!changed_) return;
    std::ofstream out(kPath);
    out << old_ << "\n";
  }

 private:
  static constexpr const char* kPath = "/proc/sys/vm/nr_hugepages";
  uint64_t old_ = 0;
  bool changed_ = false;
};

// One engine, timed to the first instruction (Restore returns) or through
// the first call; `cold`: with the snapshot file evicted from the page cache
// before each restore; `huge`: guest memory in 2 MiB pages (reserved ones
// where this process may reserve them, else transparent).
void Restore(benchmark::State& state, std::string name, uint64_t size,
             RestoreEngine engine, bool first_call, bool cold, bool huge,
             bool worker) {
  const Scenario& s = GetScenario(size);
  const std::string& path =
      engine == RestoreEngine::kLazyPrefetch ? s.prefetch : s.snapshot;
  RestoreOptions options = BenchRestoreOptions(size, engine);
  options.huge_pages = huge;
  // In a worker process of its own: the process start, its confinement
  // and the descriptors it is handed are in the time.
  options.worker_process = worker;
  std::optional<HugePageReservation> reservation;
  if (huge && geteuid() == 0) reservation.emplace(size / (2ull << 20) + 8);
  RestoreStats stats;
  for (auto _ : state) {
    if (cold) EvictFromPageCache(path);
    // Vm::Restore opens the file each time and keeps no shared base: a
    // cold restore of every engine, as a process restoring once would see.
    std::unique_ptr<Vm> vm = TimeRestore(
        state, name, s, first_call, [&] { return Vm::Restore(path, options); });
    stats = vm->restore_stats();
  }
  state.counters["faults"] = stats.faults;
  state.counters["prefetch_waits"] = stats.prefetch_waits;
  state.counters["chunks_read"] = stats.chunks_read;
  state.counters["MiB_read"] = stats.bytes_read / 1048576.0;
  state.counters["populated_pages"] = stats.populated_pages;
  state.counters["pages_made_private"] = stats.pages_made_private;
  if (huge) {
    state.SetLabel(stats.memory_pages);
  }
}

// The n-th shared-base clone: restored through a Snapshot handle that
// already built its base (the file was parsed once, at Open).
void SharedNth(benchmark::State& state, std::string name, uint64_t size,
               bool first_call) {
  const Scenario& s = GetScenario(size);
  const RestoreOptions options =
      BenchRestoreOptions(size, RestoreEngine::kSharedBase);
  auto snapshot = Snapshot::Open(s.snapshot);
  if (!snapshot.ok()) Die("open", snapshot.status());
  auto keeper = snapshot->Restore(options);
  if (!keeper.ok()) Die("restore", keeper.status());
  for (auto _ : state) {
    TimeRestore(state, name, s, first_call,
                [&] { return snapshot->Restore(options); });
  }
}

// Firecracker's way: the raw memory file mapped MAP_PRIVATE; `cold`: with
// the memory file and the snapshot (its vCPU state) evicted first.
void Firecracker(benchmark::State& state, std::string name, uint64_t size,
                 bool first_call, bool cold) {
  const Scenario& s = GetScenario(size);
  int fd = open(s.raw_memory.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) Die("open raw memory", absl::InternalError(s.raw_memory));
  const RestoreOptions options =
      BenchRestoreOptions(size, RestoreEngine::kEager);
  for (auto _ : state) {
    if (cold) {
      EvictFromPageCache(s.raw_memory);
      EvictFromPageCache(s.snapshot);
    }
    TimeRestore(state, name, s, first_call,
                [&]() -> absl::StatusOr<std::unique_ptr<Vm>> {
                  // Like Vm::Restore: the snapshot's state is read each time.
                  auto snapshot = Snapshot::Open(s.snapshot);
                  if (!snapshot.ok()) return snapshot.status();
                  return internal::VmAccess::RestoreOverMemoryFile(*snapshot,
                                                                   fd, options);
                });
  }
  close(fd);
  state.counters["file_MiB"] = s.data_bytes / 1048576.0;
}

// A warm n-th shared-base clone that has served its first call and been
// reset once (so its working set is mapped), as a pool would keep it.
std::unique_ptr<Vm> WarmClone(const Scenario& s, uint64_t size,
                              const Snapshot& snapshot) {
  auto vm =
      snapshot.Restore(BenchRestoreOptions(size, RestoreEngine::kSharedBase));
  if (!vm.ok()) Die("restore", vm.status());
  CheckReply((*vm)->Call("work", ""), s);
  if (auto st = (*vm)->Reset(); !st.ok()) Die("reset", st);
  return *std::move(vm);
}

Snapshot OpenSnapshot(const std::string& path) {
  auto snapshot = Snapshot::Open(path);
  if (!snapshot.ok()) Die("open", snapshot.status());
  return *std::move(snapshot);
}

// Reset of a warm shared-base Vm after a call that dirtied 16 pages.
void Reset(benchmark::State& state, uint64_t size) {
  const Scenario& s = GetScenario(size);
  Snapshot snapshot = OpenSnapshot(s.snapshot);
  std::unique_ptr<Vm> vm = WarmClone(s, size, snapshot);
  uint64_t pages = 0;
  for (auto _ : state) {
    if (auto r = vm->Call("dirty", "16"); !r.ok()) Die("dirty", r.status());
    absl::Time start = absl::Now();
    if (auto st = vm->Reset(); !st.ok()) Die("reset", st);
    const absl::Duration took = absl::Now() - start;
    state.SetIterationTime(Seconds(took));
    RecordSample(absl::StrCat("reset/dirty16/", SizeName(size)),
                 absl::ToDoubleMilliseconds(took));
    pages = vm->restore_stats().pages_reset;
  }
  state.counters["pages_reset"] = pages;
}

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

// Reset after 16 dirtied pages on the smallest and the largest scenario,
// interleaved (one of each per iteration) so that the host's noise falls on
// both alike: whether a reset grows with guest memory. The iteration time is
// the largest's; the counter `smallest_us` is the smallest's median.
void ResetAcrossSizes(benchmark::State& state) {
  const uint64_t small = ScenarioSizes().front();
  const uint64_t large = ScenarioSizes().back();
  const Scenario& s_small = GetScenario(small);
  const Scenario& s_large = GetScenario(large);
  Snapshot snap_small = OpenSnapshot(s_small.snapshot);
  Snapshot snap_large = OpenSnapshot(s_large.snapshot);
  std::unique_ptr<Vm> vm_small = WarmClone(s_small, small, snap_small);
  std::unique_ptr<Vm> vm_large = WarmClone(s_large, large, snap_large);
  auto time_reset = [](Vm& vm) {
    if (auto r = vm.Call("dirty", "16"); !r.ok()) Die("dirty", r.status());
    absl::Time start = absl::Now();
    if (auto st = vm.Reset(); !st.ok()) Die("reset", st);
    return absl::Now() - start;
  };
  std::vector<double> smallest;
  for (auto _ : state) {
    smallest.push_back(absl::ToDoubleMicroseconds(time_reset(*vm_small)));
    const absl::Duration took = time_reset(*vm_large);
    state.SetIterationTime(Seconds(took));
    RecordSample("reset/dirty16_across_sizes",
                 absl::ToDoubleMilliseconds(took));
  }
  state.counters["smallest_us"] = Median(smallest);
}

// A request cycle as TinyKVM's request isolation serves it: a call that
// dirties 16 pages, then a reset, timed together.
void RequestCycle(benchmark::State& state, uint64_t size) {
  const Scenario& s = GetScenario(size);
  Snapshot snapshot = OpenSnapshot(s.snapshot);
  std::unique_ptr<Vm> vm = WarmClone(s, size, snapshot);
  for (auto _ : state) {
    absl::Time start = absl::Now();
    if (auto r = vm->Call("dirty", "16"); !r.ok()) Die("dirty", r.status());
    if (auto st = vm->Reset(); !st.ok()) Die("reset", st);
    const absl::Duration took = absl::Now() - start;
    state.SetIterationTime(Seconds(took));
    RecordSample(absl::StrCat("request_cycle/dirty16/", SizeName(size)),
                 absl::ToDoubleMilliseconds(took));
  }
}

// The `work` call right after a reset, against the same call on a Vm that
// is never reset, interleaved (one of each per iteration) so that the
// host's bursts of noise fall on both alike: a reset that dropped pages
// would show here as faults coming back. The iteration time is the call
// after the reset; the counter `never_reset_ms` is the other's median.
void CallAfterReset(benchmark::State& state, uint64_t size) {
  const Scenario& s = GetScenario(size);
  Snapshot snapshot = OpenSnapshot(s.snapshot);
  std::unique_ptr<Vm> reset = WarmClone(s, size, snapshot);
  std::unique_ptr<Vm> kept = WarmClone(s, size, snapshot);
  CheckReply(reset->Call("work", ""), s);
  CheckReply(kept->Call("work", ""), s);
  auto time_work = [&](Vm& vm) {
    absl::Time start = absl::Now();
    if (auto reply = vm.Call("work", ""); !reply.ok()) {
      Die("work", reply.status());
    }
    return absl::Now() - start;
  };
  std::vector<double> never_reset;
  for (auto _ : state) {
    never_reset.push_back(absl::ToDoubleMilliseconds(time_work(*kept)));
    if (auto st = reset->Reset(); !st.ok()) Die("reset", st);
    const absl::Duration took = time_work(*reset);
    state.SetIterationTime(Seconds(took));
    RecordSample(absl::StrCat("call/work_after_reset/", SizeName(size)),
                 absl::ToDoubleMilliseconds(took));
  }
  state.counters["never_reset_ms"] = Median(never_reset);
}

// Lazy+prefetch against the Firecracker-style restore, restore + first
// call, interleaved (one of each per iteration) for the same reason. The
// iteration time is prefetch's; the counter `firecracker_ms` is the
// baseline's median.
void PrefetchAgainstFirecracker(benchmark::State& state, uint64_t size) {
  const Scenario& s = GetScenario(size);
  int fd = open(s.raw_memory.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) Die("open raw memory", absl::InternalError(s.raw_memory));
  const RestoreOptions prefetch =
      BenchRestoreOptions(size, RestoreEngine::kLazyPrefetch);
  const RestoreOptions eager = BenchRestoreOptions(size, RestoreEngine::kEager);
  auto time_first_call = [&](auto restore) {
    absl::Time start = absl::Now();
    absl::StatusOr<std::unique_ptr<Vm>> vm = restore();
    if (!vm.ok()) Die("restore", vm.status());
    CheckReply((*vm)->Call("work", ""), s);
    const absl::Duration took = absl::Now() - start;
    vm->reset();  // not timed
    return took;
  };
  auto time_firecracker = [&] {
    return time_first_call([&]() -> absl::StatusOr<std::unique_ptr<Vm>> {
      auto snapshot = Snapshot::Open(s.snapshot);
      if (!snapshot.ok()) return snapshot.status();
      return internal::VmAccess::RestoreOverMemoryFile(*snapshot, fd, eager);
    });
  };
  auto time_prefetch = [&] {
    return time_first_call([&] { return Vm::Restore(s.prefetch, prefetch); });
  };
  // The order alternates (ABBA), so that neither side always follows the
  // other's teardown.
  std::vector<double> firecracker;
  bool firecracker_first = true;
  for (auto _ : state) {
    absl::Duration took;
    if (firecracker_first) {
      firecracker.push_back(absl::ToDoubleMilliseconds(time_firecracker()));
      took = time_prefetch();
    } else {
      took = time_prefetch();
      firecracker.push_back(absl::ToDoubleMilliseconds(time_firecracker()));
    }
    firecracker_first = !firecracker_first;
    state.SetIterationTime(Seconds(took));
    RecordSample(
        absl::StrCat("paired/prefetch_vs_firecracker/", SizeName(size)),
        absl::ToDoubleMilliseconds(took));
  }
  close(fd);
  state.counters["firecracker_ms"] = Median(firecracker);
}

}  // namespace

void RegisterRestoreBenchmarks() {
  using benchmark::RegisterBenchmark;
  if (ScenarioSizes().size() > 1) {
    RegisterBenchmark("reset/dirty16_across_sizes", ResetAcrossSizes)
        ->Iterations(Iterations(200))
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  for (uint64_t size : ScenarioSizes()) {
    const std::string n = SizeName(size);
    RegisterBenchmark(("cold_boot_init/" + n).c_str(), ColdBoot, size)
        ->Iterations(Iterations(size >= (1ull << 30) ? 3 : 5))
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
    const std::pair<const char*, RestoreEngine> engines[] = {
        {"eager", RestoreEngine::kEager},
        {"lazy", RestoreEngine::kLazy},
        {"prefetch", RestoreEngine::kLazyPrefetch},
        {"shared_1st", RestoreEngine::kSharedBase}};
    for (bool call : {false, true}) {
      const char* phase = call ? "first_call" : "first_instruction";
      for (const auto& [name, engine] : engines) {
        const int iterations = engine == RestoreEngine::kEager ||
                                       engine == RestoreEngine::kSharedBase
                                   ? (size >= (1ull << 30) ? 5 : 10)
                                   : 30;
        const std::string bench =
            absl::StrCat("restore/", name, "/", phase, "/", n);
        RegisterBenchmark(bench.c_str(), Restore, bench, size, engine, call,
                          /*cold=*/false, /*huge=*/false, /*worker=*/false)
            ->Iterations(Iterations(iterations))
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
      }
      const std::string nth =
          absl::StrCat("restore/shared_nth/", phase, "/", n);
      RegisterBenchmark(nth.c_str(), SharedNth, nth, size, call)
          ->Iterations(Iterations(30))
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
      const std::string fc =
          absl::StrCat("restore/firecracker/", phase, "/", n);
      RegisterBenchmark(fc.c_str(), Firecracker, fc, size, call,
                        /*cold=*/false)
          ->Iterations(Iterations(10))
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
    // The same restores with the Vm in a worker process (emulated only: a
    // KVM guest is not put in one).
    if (BenchConfig(size).backend == BackendKind::kEmulated) {
      for (const auto& [name, engine] :
           {std::pair{"eager", RestoreEngine::kEager},
            std::pair{"prefetch", RestoreEngine::kLazyPrefetch}}) {
        const std::string bench =
            absl::StrCat("restore_worker/", name, "/first_call/", n);
        RegisterBenchmark(bench.c_str(), Restore, bench, size, engine,
                          /*first_call=*/true, /*cold=*/false, /*huge=*/false,
                          /*worker=*/true)
            ->Iterations(Iterations(engine == RestoreEngine::kEager ? 10 : 30))
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
    // Guest memory in 2 MiB pages.
    for (const auto& [name, engine] :
         {std::pair{"eager", RestoreEngine::kEager},
          std::pair{"lazy", RestoreEngine::kLazy},
          std::pair{"prefetch", RestoreEngine::kLazyPrefetch}}) {
      const std::string bench =
          absl::StrCat("restore_huge/", name, "/first_call/", n);
      RegisterBenchmark(bench.c_str(), Restore, bench, size, engine,
                        /*first_call=*/true, /*cold=*/false, /*huge=*/true,
                        /*worker=*/false)
          ->Iterations(Iterations(engine == RestoreEngine::kEager ? 5 : 10))
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
    // Cold page cache: the files come from the disk.
    for (const auto& [name, engine] :
         {std::pair{"lazy", RestoreEngine::kLazy},
          std::pair{"prefetch", RestoreEngine::kLazyPrefetch}}) {
      const std::string bench =
          absl::StrCat("restore_cold/", name, "/first_call/", n);
      RegisterBenchmark(bench.c_str(), Restore, bench, size, engine,
                        /*first_call=*/true, /*cold=*/true, /*huge=*/false,
                        /*worker=*/false)
          ->Iterations(Iterations(10))
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
    const std::string fc_cold =
        absl::StrCat("restore_cold/firecracker/first_call/", n);
    RegisterBenchmark(fc_cold.c_str(), Firecracker, fc_cold, size,
                      /*first_call=*/true, /*cold=*/true)
        ->Iterations(Iterations(10))
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
    RegisterBenchmark(("reset/dirty16/" + n).c_str(), Reset, size)
        ->Iterations(Iterations(200))
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
    RegisterBenchmark(("request_cycle/dirty16/" + n).c_str(), RequestCycle,
                      size)
        ->Iterations(Iterations(200))
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
    RegisterBenchmark(("call/work_after_reset/" + n).c_str(), CallAfterReset,
                      size)
        ->Iterations(Iterations(30))
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
    RegisterBenchmark(("paired/prefetch_vs_firecracker/" + n).c_str(),
                      PrefetchAgainstFirecracker, size)
        ->Iterations(Iterations(20))
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace thaw::bench
