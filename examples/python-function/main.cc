// python-function: the SnapStart case for a Python function. Boots Debian's
// python3 with a handler whose init imports json, decimal, email, http, re,
// datetime, sqlite3 and numpy (function.py), snapshots it after that init, then
// serves "cold starts" by restoring instead of booting, N times per restore
// engine, and prints boot+init against restore+first call.
//
//   python-function [--restores N] [--backend auto|kvm|emulated]
#include <algorithm>
#include <cstdio>
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
  std::fprintf(stderr, "python-function: %s\n",
               std::string(status.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int restores = 20;
  thaw::BackendKind backend = thaw::BackendKind::kAuto;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    if (arg == "--restores" && absl::SimpleAtoi(argv[i + 1], &restores) &&
        restores > 0) {
      continue;
    }
    if (arg == "--backend") {
      auto kind = thaw::ParseBackendName(argv[i + 1]);
      if (!kind.ok()) return Die(kind.status());
      backend = *kind;
      continue;
    }
    std::fprintf(stderr,
                 "usage: python-function [--restores N] [--backend B]\n");
    return 2;
  }
  thaw::VmConfig config;
  config.guest_kind = thaw::GuestKind::kLinuxProgram;
  config.backend = backend;
  config.memory_size = 256ull << 20;
  config.call_timeout = absl::Seconds(120);
  thaw::ProgramOptions program;
  program.args = {THAW_PYTHON, "/app/function.py"};
  program.env = {"PYTHONPATH=/thaw", "PYTHONDONTWRITEBYTECODE=1",
                 "OPENBLAS_NUM_THREADS=1"};
  program.files = {{"/usr", "/usr"},
                   {"/usr/lib/x86_64-linux-gnu", "/lib64"},
                   {"/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"},
                   // Debian's alternatives: libblas.so.3 links through it.
                   {"/etc/alternatives", "/etc/alternatives"},
                   {THAW_FUNCTION_DIR, "/app"},
                   {THAW_GUEST_PYTHON_DIR, "/thaw"}};
  const std::string input = "3 14 15 92 65";

  // 1. A cold start: create, load, boot (the imports), first call.
  absl::Time t0 = absl::Now();
  auto vm = thaw::Vm::Create(config);
  if (!vm.ok()) return Die(vm.status());
  if (auto s = (*vm)->LoadProgram(THAW_PYTHON, program); !s.ok()) return Die(s);
  if (auto s = (*vm)->Boot(); !s.ok()) return Die(s);
  auto reply = (*vm)->Call("handle", input);
  if (!reply.ok()) return Die(reply.status());
  const absl::Duration cold = absl::Now() - t0;
  std::printf("backend: %s\n%s",
              std::string(thaw::BackendName((*vm)->backend())).c_str(),
              (*vm)->console().c_str());
  std::printf("reply: %s\n", reply->c_str());
  std::printf("cold start (boot+init+call): %.1f ms (boot+init %.1f ms)\n",
              Ms(cold), Ms((*vm)->report().boot));

  // 2. The snapshot, taken where the function waits for its next request.
  const std::string path =
      (std::filesystem::temp_directory_path() / "thaw-python-function.thaw")
          .string();
  if (auto s = (*vm)->Snapshot(path); !s.ok()) return Die(s);
  auto snapshot = thaw::Snapshot::Open(path);
  if (!snapshot.ok()) return Die(snapshot.status());
  std::printf(
      "snapshot: %.1f MiB file for %llu MiB of memory\n",
      snapshot->Info().file_size / 1048576.0,
      static_cast<unsigned long long>(snapshot->Info().memory_size >> 20));

  // 3. Warm starts: restore + first call through one handle, per engine.
  std::printf("\n%-9s %8s %10s %10s %10s\n", "engine", "restores", "p50 ms",
              "mean ms", "vs cold");
  for (thaw::RestoreEngine engine :
       {thaw::RestoreEngine::kEager, thaw::RestoreEngine::kLazy,
        thaw::RestoreEngine::kSharedBase}) {
    thaw::RestoreOptions options;
    options.backend = backend;
    options.engine = engine;
    options.call_timeout = absl::Seconds(120);
    std::vector<double> times;
    for (int i = 0; i < restores; ++i) {
      absl::Time start = absl::Now();
      auto clone = snapshot->Restore(options);
      if (!clone.ok()) return Die(clone.status());
      auto r = (*clone)->Call("handle", input);
      if (!r.ok()) return Die(r.status());
      if (*r != *reply) {
        return Die(absl::InternalError("a restored reply differs: " + *r));
      }
      times.push_back(Ms(absl::Now() - start));
    }
    std::sort(times.begin(), times.end());
    double sum = 0;
    for (double t : times) sum += t;
    const double mean = sum / times.size();
    std::printf("%-9s %8d %10.2f %10.2f %9.0fx\n",
                std::string(thaw::RestoreEngineName(engine)).c_str(), restores,
                times[times.size() / 2], mean, Ms(cold) / mean);
  }
  std::filesystem::remove(path);
  return 0;
}
