// Linux VMs on KVM (doc/linux-vm.md): boot to the agent against restore +
// first call per engine. Needs a /dev/kvm that runs Linux guests and the
// kernel and initramfs of examples/linux-vm/build.sh in THAW_LINUX_VM_DIR;
// elsewhere every row is skipped with the reason. Run inside the QEMU
// harness as benchmarks/results/kvm-in-qemu.md shows; nested there, the
// times prove behaviour and give ratios only.
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "thaw/snapshot.h"
#include "thaw/vm.h"

namespace {

std::string Dir() {
  const char* dir = std::getenv("THAW_LINUX_VM_DIR");
  return dir ? dir : "";
}

thaw::VmConfig Config() {
  thaw::VmConfig config;
  config.guest_kind = thaw::GuestKind::kLinuxVm;
  config.backend = thaw::BackendKind::kKvm;
  config.memory_size = 256ull << 20;
  config.call_timeout = absl::Seconds(30);
  return config;
}

absl::StatusOr<std::unique_ptr<thaw::Vm>> Boot() {
  auto vm = thaw::Vm::Create(Config());
  if (!vm.ok()) return vm.status();
  thaw::LinuxBootOptions options;
  options.boot_timeout = absl::Seconds(60);
  if (absl::Status s = (*vm)->LoadKernel(Dir() + "/vmlinuz",
                                         Dir() + "/initramfs.cpio", options);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = (*vm)->Boot(); !s.ok()) return s;
  return vm;
}

// The nested harness now and then delivers an interrupt twice and the
// guest hangs (doc/platform-facts.md): such an attempt is not a sample. It
// is dropped, counted ("hangs") and tried again, up to five times.
bool IsNestedInterruptHang(const absl::Status& s) {
  return s.code() == absl::StatusCode::kDeadlineExceeded ||
         s.message().find("Fatal exception in interrupt") != std::string::npos;
}

// Runs `attempt` (which returns the seconds one sample took) until it
// succeeds or fails otherwise; false after skipping the benchmark.
bool Sample(benchmark::State& state, int& hangs,
            const std::function<absl::StatusOr<double>()>& attempt) {
  for (int tries = 0; tries < 5; ++tries) {
    auto seconds = attempt();
    if (seconds.ok()) {
      state.SetIterationTime(*seconds);
      return true;
    }
    if (!IsNestedInterruptHang(seconds.status()) || tries == 4) {
      state.SkipWithError(std::string(seconds.status().message()).c_str());
      return false;
    }
    ++hangs;
  }
  return false;
}

bool Usable(benchmark::State& state) {
  if (absl::Status kvm = thaw::CheckKvm(); !kvm.ok()) {
    state.SkipWithError(std::string(kvm.message()).c_str());
    return false;
  }
  if (Dir().empty()) {
    state.SkipWithError("THAW_LINUX_VM_DIR is not set");
    return false;
  }
  return true;
}

// Snapshots a booted VM into `file`, then records the working set of a
// restore + echo call into it (what kLazyPrefetch fetches first).
absl::Status SnapshotWithWorkingSet(const std::string& file) {
  {
    auto vm = Boot();
    if (!vm.ok()) return vm.status();
    if (absl::Status s = (*vm)->Snapshot(file); !s.ok()) return s;
  }
  thaw::RestoreOptions record;
  record.engine = thaw::RestoreEngine::kLazy;
  record.record_working_set = true;
  record.call_timeout = absl::Seconds(30);
  auto vm = thaw::Vm::Restore(file, record);
  if (!vm.ok()) return vm.status();
  if (auto reply = (*vm)->Call("echo", "x"); !reply.ok()) return reply.status();
  return (*vm)->WriteWorkingSet();
}

// That snapshot, taken once per process; empty if it failed five times.
const std::string& BootedSnapshot() {
  static const std::string path = [] {
    const std::string file =
        absl::StrCat(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp",
                     "/linux_vm_bench.thaw");
    for (int tries = 0; tries < 5; ++tries) {
      if (SnapshotWithWorkingSet(file).ok()) return file;
    }
    return std::string();
  }();
  return path;
}

// Create + load + boot until the agent serves calls, then one echo call.
void BM_BootToAgentAndFirstCall(benchmark::State& state) {
  if (!Usable(state)) return;
  double kernel_ms = 0, agent_ms = 0;
  int hangs = 0;
  for (auto _ : state) {
    const bool ok = Sample(state, hangs, [&]() -> absl::StatusOr<double> {
      const absl::Time start = absl::Now();
      auto vm = Boot();
      if (!vm.ok()) return vm.status();
      auto reply = (*vm)->Call("echo", "x");
      if (!reply.ok()) return reply.status();
      const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
      kernel_ms += absl::ToDoubleMilliseconds((*vm)->report().kernel_to_init);
      agent_ms += absl::ToDoubleMilliseconds((*vm)->report().init_to_agent);
      return seconds;
    });
    if (!ok) return;
  }
  state.counters["hangs"] = hangs;
  state.counters["kernel_to_init_ms"] =
      benchmark::Counter(kernel_ms / state.iterations());
  state.counters["init_to_agent_ms"] =
      benchmark::Counter(agent_ms / state.iterations());
}
BENCHMARK(BM_BootToAgentAndFirstCall)
    ->Name("linux_vm/boot_to_agent_and_first_call")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);

// Restore of a booted VM's snapshot (taken once, with a recorded working
// set) + the first echo call (which includes the agent's reseed).
void BM_RestoreAndFirstCall(benchmark::State& state) {
  if (!Usable(state)) return;
  const thaw::RestoreEngine engine = thaw::kRestoreEngines[state.range(0)];
  const std::string& path = BootedSnapshot();
  if (path.empty()) {
    state.SkipWithError("booting and snapshotting the VM failed");
    return;
  }
  auto snapshot = thaw::Snapshot::Open(path);
  if (!snapshot.ok()) {
    state.SkipWithError(std::string(snapshot.status().message()).c_str());
    return;
  }
  thaw::RestoreOptions options;
  options.engine = engine;
  options.call_timeout = absl::Seconds(30);
  int hangs = 0;
  for (auto _ : state) {
    const bool ok = Sample(state, hangs, [&]() -> absl::StatusOr<double> {
      const absl::Time start = absl::Now();
      auto vm = snapshot->Restore(options);
      if (!vm.ok()) return vm.status();
      auto reply = (*vm)->Call("echo", "x");
      if (!reply.ok()) return reply.status();
      return absl::ToDoubleSeconds(absl::Now() - start);
    });
    if (!ok) return;
  }
  state.counters["hangs"] = hangs;
  state.SetLabel(std::string(thaw::RestoreEngineName(engine)));
}
BENCHMARK(BM_RestoreAndFirstCall)
    ->Name("linux_vm/restore_and_first_call")
    ->DenseRange(0, 3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5);

// The request cycle of a shared-base Vm: Reset (the machine rebuilt, the
// pages the last request wrote put back) + the next echo call (with the
// agent's reseed). Each request writes a file in the guest first, as a
// request leaves state behind.
void BM_ResetAndCall(benchmark::State& state) {
  if (!Usable(state)) return;
  const std::string& path = BootedSnapshot();
  if (path.empty()) {
    state.SkipWithError("booting and snapshotting the VM failed");
    return;
  }
  thaw::RestoreOptions options;
  options.engine = thaw::RestoreEngine::kSharedBase;
  options.call_timeout = absl::Seconds(30);
  auto vm = thaw::Vm::Restore(path, options);
  if (!vm.ok()) {
    state.SkipWithError(std::string(vm.status().message()).c_str());
    return;
  }
  int hangs = 0;
  for (auto _ : state) {
    const bool ok = Sample(state, hangs, [&]() -> absl::StatusOr<double> {
      if (auto put = (*vm)->Call("put", "left behind"); !put.ok()) {
        (void)(*vm)->Reset();  // a hang here leaves a failed Vm
        return put.status();
      }
      const absl::Time start = absl::Now();
      if (absl::Status s = (*vm)->Reset(); !s.ok()) return s;
      auto reply = (*vm)->Call("echo", "x");
      if (!reply.ok()) {
        (void)(*vm)->Reset();
        return reply.status();
      }
      return absl::ToDoubleSeconds(absl::Now() - start);
    });
    if (!ok) return;
  }
  state.counters["hangs"] = hangs;
  state.counters["pages_reset"] =
      static_cast<double>((*vm)->restore_stats().pages_reset);
}
BENCHMARK(BM_ResetAndCall)
    ->Name("linux_vm/reset_and_call")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5);

}  // namespace

BENCHMARK_MAIN();
