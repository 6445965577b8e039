// thaw_bench: every benchmark of benchmarks/, in one run so that every ratio
// compares figures measured side by side. Google Benchmark's own flags work
// (--benchmark_out=FILE --benchmark_out_format=json, --benchmark_filter=...);
// --samples_out=FILE also writes each restore's per-iteration times (ms), for
// the time-to-first-call CDF. THAW_BENCH_SMOKE=1 runs everything once, small.
// scripts/bench.sh runs this and benchmarks/report.py.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "benchmark/benchmark.h"
#include "benchmarks/scenario.h"

namespace thaw::bench {
void RegisterFloorBenchmarks();
void RegisterRestoreBenchmarks();
void RegisterSnapshotBenchmarks();
void RegisterCallBenchmarks();
void RegisterProgramBenchmarks();
}  // namespace thaw::bench

int main(int argc, char** argv) {
  std::string samples_out;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--samples_out=", 14) == 0) {
      samples_out = argv[i] + 14;
      for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
      --argc;
      break;
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  thaw::bench::RegisterFloorBenchmarks();
  thaw::bench::RegisterCallBenchmarks();
  thaw::bench::RegisterSnapshotBenchmarks();
  thaw::bench::RegisterRestoreBenchmarks();
  thaw::bench::RegisterProgramBenchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (!samples_out.empty()) {
    std::ofstream out(samples_out);
    out << "{";
    bool first = true;
    for (const auto& [name, samples] : thaw::bench::Samples()) {
      out << (first ? "" : ",") << "\n  \"" << name << "\": [";
      for (size_t i = 0; i < samples.size(); ++i) {
        out << (i ? ", " : "") << samples[i];
      }
      out << "]";
      first = false;
    }
    out << "\n}\n";
    if (!out) {
      std::fprintf(stderr, "thaw_bench: cannot write %s\n",
                   samples_out.c_str());
      return 1;
    }
  }
  return 0;
}
