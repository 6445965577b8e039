// Call overhead on a warm Vm: an empty call, and host-function round trips.
#include <memory>
#include <string>

#include "benchmark/benchmark.h"
#include "benchmarks/scenario.h"

namespace thaw::bench {
namespace {

// `worker`: the Vm lives in a worker process of its own
// (VmSettings::worker_process), for what that costs per call.
Vm& WarmVm(bool worker = false) {
  static std::unique_ptr<Vm> vms[2];
  std::unique_ptr<Vm>& vm = vms[worker ? 1 : 0];
  if (!vm) {
    VmConfig config = BenchConfig(64ull << 20);
    if (worker) {
      config.backend = BackendKind::kEmulated;
      config.worker_process = true;
    }
    auto created = Vm::Create(config);
    if (!created.ok()) Die("create", created.status());
    if (auto s = (*created)->LoadGuest(THAW_BENCH_GUEST); !s.ok())
      Die("load", s);
    if (auto s = (*created)->Boot(); !s.ok()) Die("boot", s);
    (void)(*created)->RegisterHostFunction(
        "ping", [](absl::string_view) -> absl::StatusOr<std::string> {
          return std::string("y");
        });
    vm = *std::move(created);
  }
  return *vm;
}

void EmptyCall(benchmark::State& state, bool worker) {
  Vm& vm = WarmVm(worker);
  for (auto _ : state) {
    auto reply = vm.Call("empty", "");
    if (!reply.ok()) Die("empty", reply.status());
  }
}

// 100 host calls per guest call; reported per round trip.
void HostRoundTrip(benchmark::State& state, bool worker) {
  Vm& vm = WarmVm(worker);
  constexpr int kPerCall = 100;
  for (auto _ : state) {
    auto reply = vm.Call("ping_host", std::to_string(kPerCall));
    if (!reply.ok()) Die("ping_host", reply.status());
  }
  state.SetItemsProcessed(state.iterations() * kPerCall);
  state.SetLabel("100 round trips per iteration");
}

}  // namespace

void RegisterCallBenchmarks() {
  // Microseconds each, so a burst of noise from the host moves one run by
  // 2x: five runs, and the report takes the median.
  for (bool worker : {false, true}) {
    const std::string suffix = worker ? "/worker_process" : "";
    benchmark::RegisterBenchmark(("call/empty" + suffix).c_str(), EmptyCall,
                                 worker)
        ->Iterations(Iterations(20000))
        ->Repetitions(Smoke() ? 1 : 5)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("call/host_round_trip_x100" + suffix).c_str(),
                                 HostRoundTrip, worker)
        ->Iterations(Iterations(500))
        ->Repetitions(Smoke() ? 1 : 5)
        ->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace thaw::bench
