// The benchmarks' scenarios: a function guest (guests/bench_fn.c) booted in
// a VM of a given size, snapshotted, with its working set recorded, and its
// memory written raw for the Firecracker-style baseline. Prepared once per
// size and process, in a scratch directory.
#ifndef THAW_BENCHMARKS_SCENARIO_H_
#define THAW_BENCHMARKS_SCENARIO_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "thaw/snapshot.h"
#include "thaw/vm.h"

namespace thaw::bench {

struct Scenario {
  uint64_t memory_size = 0;
  std::string name;             // "128MiB", "1GiB"
  std::string snapshot;         // plain snapshot, no working set
  std::string prefetch;         // the same with the working set recorded
  std::string raw_memory;       // sparse raw image (Firecracker's memory file)
  uint64_t snapshot_bytes = 0;  // file size of `snapshot`
  uint64_t prefetch_bytes = 0;  // file size of `prefetch` (raw working set)
  uint64_t data_bytes = 0;      // bytes in non-zero chunks
  uint64_t working_set_chunks = 0;
  std::string work_reply;    // the first call's reply on the booted VM
  absl::Duration boot_init;  // boot+init of the VM that was snapshotted
};

// Benchmark settings: THAW_BENCH_SMOKE=1 runs every scenario once at a
// small size (CI); otherwise the full sizes and iteration counts.
bool Smoke();
std::vector<uint64_t> ScenarioSizes();
int Iterations(int full);

// The scratch directory (THAW_BENCH_DIR, else /var/tmp/thaw-bench-<pid>),
// removed at exit.
const std::string& ScratchDir();

VmConfig BenchConfig(uint64_t memory_size);
// Restores of a `memory_size` scenario with `engine`, on BenchConfig's
// backend, with a call timeout long enough for sanitizer builds.
RestoreOptions BenchRestoreOptions(uint64_t memory_size, RestoreEngine engine);
std::string SizeName(uint64_t bytes);

// Prepares (once) and returns the scenario of `memory_size`. Aborts the
// benchmark run with a message if preparation fails.
const Scenario& GetScenario(uint64_t memory_size);

// Per-iteration samples (milliseconds) by benchmark name, for the CDF.
void RecordSample(const std::string& name, double ms);
const std::map<std::string, std::vector<double>>& Samples();

// Ends the run with a message (a benchmark cannot go on without its setup).
[[noreturn]] void Die(const std::string& what, const absl::Status& status);

}  // namespace thaw::bench

#endif  // THAW_BENCHMARKS_SCENARIO_H_
