// snapstart: what thaw is for, in one run. Boots a function whose init is
// expensive (a prime sieve and an index over it), snapshots it at its park
// point, then serves "cold starts" by restoring the snapshot instead of
// booting, N times per restore engine, and prints boot+init against
// restore+call.
//
//   snapstart [--restores N] [--engine eager|lazy|prefetch|shared|all]
//             [--backend auto|kvm|emulated] [GUEST.elf]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "thaw/snapshot.h"
#include "thaw/vm.h"

namespace {

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

int Die(const absl::Status& status) {
  std::fprintf(stderr, "snapstart: %s\n",
               std::string(status.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int restores = 1000;
  std::string engines = "all";
  std::string guest = THAW_SNAPSTART_GUEST;
  thaw::BackendKind backend = thaw::BackendKind::kAuto;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--restores" && i + 1 < argc) {
      if (!absl::SimpleAtoi(argv[++i], &restores) || restores < 1) {
        std::fprintf(stderr, "snapstart: --restores needs a positive number\n");
        return 2;
      }
    } else if (arg == "--engine" && i + 1 < argc) {
      engines = argv[++i];
    } else if (arg == "--backend" && i + 1 < argc) {
      auto kind = thaw::ParseBackendName(argv[++i]);
      if (!kind.ok()) return Die(kind.status());
      backend = *kind;
    } else if (!arg.empty() && arg[0] != '-') {
      guest = arg;
    } else {
      std::fprintf(
          stderr,
          "usage: snapstart [--restores N] [--engine "
          "eager|lazy|prefetch|shared|all] [--backend B] [GUEST.elf]\n");
      return 2;
    }
  }
  std::vector<thaw::RestoreEngine> list;
  if (engines == "all") {
    list = {thaw::RestoreEngine::kEager, thaw::RestoreEngine::kLazy,
            thaw::RestoreEngine::kLazyPrefetch,
            thaw::RestoreEngine::kSharedBase};
  } else {
    auto engine = thaw::ParseRestoreEngine(engines);
    if (!engine.ok()) return Die(engine.status());
    list = {*engine};
  }

  // 1. The cold start a snapshot replaces: create, load, boot, init, call.
  thaw::VmConfig config;
  config.backend = backend;
  config.memory_size = 128ull << 20;
  absl::Time start = absl::Now();
  auto vm = thaw::Vm::Create(config);
  if (!vm.ok()) return Die(vm.status());
  if (auto s = (*vm)->LoadGuest(guest); !s.ok()) return Die(s);
  if (auto s = (*vm)->Boot(); !s.ok()) return Die(s);
  auto first = (*vm)->Call("is_prime", "1000003");
  if (!first.ok()) return Die(first.status());
  const absl::Duration cold = absl::Now() - start;
  std::printf("backend: %s\n",
              std::string(thaw::BackendName((*vm)->backend())).c_str());
  std::printf("cold start (create+load+boot+init+call): %.1f ms  -> \"%s\"\n",
              Ms(cold), first->c_str());

  // 2. The snapshot, taken at the park point after init (before the call
  // above would matter: the guest keeps no state between calls).
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("snapstart-" + std::to_string(getpid()) + ".thaw"))
                               .string();
  if (auto s = (*vm)->Snapshot(path); !s.ok()) return Die(s);
  auto info = thaw::InspectSnapshot(path);
  if (!info.ok()) return Die(info.status());
  std::printf(
      "snapshot: %.1f ms, %.1f MiB file for %llu MiB of memory (%.1fx)\n",
      Ms((*vm)->report().snapshot), info->file_size / 1048576.0,
      static_cast<unsigned long long>(info->memory_size >> 20),
      info->compression_ratio());
  vm->reset();

  // 3. Record the working set once, for the prefetch engine.
  {
    thaw::RestoreOptions options;
    options.backend = backend;
    options.engine = thaw::RestoreEngine::kLazy;
    options.record_working_set = true;
    auto recorder = thaw::Vm::Restore(path, options);
    if (!recorder.ok()) return Die(recorder.status());
    if (auto r = (*recorder)->Call("is_prime", "1000003"); !r.ok())
      return Die(r.status());
    if (auto s = (*recorder)->WriteWorkingSet(); !s.ok()) return Die(s);
  }

  // 4. Warm starts: restore + call, `restores` times per engine, through
  // one Snapshot handle (the file is parsed once; the shared base is built
  // by the first shared restore and kept by the handle).
  auto snapshot = thaw::Snapshot::Open(path);
  if (!snapshot.ok()) return Die(snapshot.status());
  std::printf("\n%-9s %8s %12s %12s %12s %10s\n", "engine", "restores",
              "p50 ms", "p99 ms", "mean ms", "vs cold");
  for (thaw::RestoreEngine engine : list) {
    thaw::RestoreOptions options;
    options.backend = backend;
    options.engine = engine;
    std::vector<double> times;
    times.reserve(restores);
    for (int i = 0; i < restores; ++i) {
      absl::Time t0 = absl::Now();
      auto clone = snapshot->Restore(options);
      if (!clone.ok()) return Die(clone.status());
      auto reply = (*clone)->Call("is_prime", std::to_string(1000003 + 2 * i));
      if (!reply.ok()) return Die(reply.status());
      times.push_back(Ms(absl::Now() - t0));
    }
    std::sort(times.begin(), times.end());
    double sum = 0;
    for (double t : times) sum += t;
    const double mean = sum / times.size();
    std::printf("%-9s %8d %12.3f %12.3f %12.3f %9.0fx\n",
                std::string(thaw::RestoreEngineName(engine)).c_str(), restores,
                times[times.size() / 2], times[times.size() * 99 / 100], mean,
                Ms(cold) / mean);
  }
  std::filesystem::remove(path);
  return 0;
}
