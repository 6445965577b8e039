// Linux program guests: a call's and a system call's round trip on a warm
// program, and the SnapStart case for Python — boot+init of a Python
// function (examples/python-function) against restore + first call per
// engine.
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "benchmarks/scenario.h"

namespace thaw::bench {
namespace {

VmConfig ProgramConfig(uint64_t memory) {
  VmConfig config = BenchConfig(memory);
  config.guest_kind = GuestKind::kLinuxProgram;
  config.call_timeout = absl::Minutes(5);
  return config;
}

Vm& WarmProgram() {
  static std::unique_ptr<Vm> vm;
  if (!vm) {
    auto created = Vm::Create(ProgramConfig(64ull << 20));
    if (!created.ok()) Die("create", created.status());
    if (auto s = (*created)->LoadProgram(THAW_BENCH_PROGRAM); !s.ok()) {
      Die("load program", s);
    }
    if (auto s = (*created)->Boot(); !s.ok()) Die("boot program", s);
    vm = *std::move(created);
  }
  return *vm;
}

void ProgramEmptyCall(benchmark::State& state) {
  Vm& vm = WarmProgram();
  for (auto _ : state) {
    if (auto r = vm.Call("empty", ""); !r.ok()) Die("empty", r.status());
  }
}

// 100 getpid calls per call; reported per system call.
void Getpid(benchmark::State& state) {
  Vm& vm = WarmProgram();
  for (auto _ : state) {
    if (auto r = vm.Call("getpid", "100"); !r.ok()) Die("getpid", r.status());
  }
  state.SetItemsProcessed(state.iterations() * 100);
  state.SetLabel("100 system calls per iteration");
}

ProgramOptions PythonFunction() {
  ProgramOptions program;
  program.args = {THAW_BENCH_PYTHON, "/app/function.py"};
  program.env = {"PYTHONPATH=/thaw", "PYTHONDONTWRITEBYTECODE=1",
                 "OPENBLAS_NUM_THREADS=1"};
  program.files = {{"/usr", "/usr"},
                   {"/usr/lib/x86_64-linux-gnu", "/lib64"},
                   {"/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"},
                   // Debian's alternatives: libblas.so.3 links through it.
                   {"/etc/alternatives", "/etc/alternatives"},
                   {THAW_BENCH_FUNCTION_DIR, "/app"},
                   {THAW_BENCH_GUEST_PYTHON_DIR, "/thaw"}};
  return program;
}

constexpr char kPythonInput[] = "3 14 15 92 65";

// A Python function created, loaded and booted (its imports done).
std::unique_ptr<Vm> BootPython() {
  auto vm = Vm::Create(ProgramConfig(256ull << 20));
  if (!vm.ok()) Die("create python", vm.status());
  if (auto s = (*vm)->LoadProgram(THAW_BENCH_PYTHON, PythonFunction());
      !s.ok()) {
    Die("load python", s);
  }
  if (auto s = (*vm)->Boot(); !s.ok()) Die("boot python", s);
  return *std::move(vm);
}

// The snapshot of a booted Python function, made once per run.
const std::string& PythonSnapshot() {
  static std::string* path = [] {
    std::unique_ptr<Vm> vm = BootPython();
    auto* out = new std::string(ScratchDir() + "/python-function.thaw");
    if (auto s = vm->Snapshot(*out); !s.ok()) Die("snapshot python", s);
    return out;
  }();
  return *path;
}

void PythonBootInit(benchmark::State& state) {
  for (auto _ : state) {
    absl::Time start = absl::Now();
    std::unique_ptr<Vm> vm = BootPython();
    if (auto r = vm->Call("handle", kPythonInput); !r.ok()) {
      Die("python call", r.status());
    }
    state.SetIterationTime(absl::ToDoubleSeconds(absl::Now() - start));
  }
}

void PythonRestore(benchmark::State& state, RestoreEngine engine) {
  auto snapshot = Snapshot::Open(PythonSnapshot());
  if (!snapshot.ok()) Die("open python snapshot", snapshot.status());
  const RestoreOptions options = BenchRestoreOptions(256ull << 20, engine);
  // With a handle, the shared engine's first restore builds the base; the
  // ones measured are n-th clones.
  if (engine == RestoreEngine::kSharedBase) (void)snapshot->Restore(options);
  for (auto _ : state) {
    absl::Time start = absl::Now();
    auto vm = snapshot->Restore(options);
    if (!vm.ok()) Die("restore python", vm.status());
    if (auto r = (*vm)->Call("handle", kPythonInput); !r.ok()) {
      Die("python first call", r.status());
    }
    state.SetIterationTime(absl::ToDoubleSeconds(absl::Now() - start));
  }
}

}  // namespace

void RegisterProgramBenchmarks() {
  benchmark::RegisterBenchmark("program/empty_call", ProgramEmptyCall)
      ->Iterations(Iterations(5000))
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("program/getpid_x100", Getpid)
      ->Iterations(Iterations(500))
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("program/python/boot_init_call", PythonBootInit)
      ->Iterations(Iterations(2))
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  for (RestoreEngine engine : {RestoreEngine::kEager, RestoreEngine::kLazy,
                               RestoreEngine::kSharedBase}) {
    benchmark::RegisterBenchmark(
        ("program/python/restore_first_call/" +
         std::string(RestoreEngineName(engine)))
            .c_str(),
        [engine](benchmark::State& state) { PythonRestore(state, engine); })
        ->Iterations(Iterations(5))
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace thaw::bench
