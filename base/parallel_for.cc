#include "base/parallel_for.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

namespace thaw {

unsigned UsableCores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    return static_cast<unsigned>(std::max(1, CPU_COUNT(&set)));
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

void ParallelFor(uint64_t count, unsigned threads,
                 const std::function<void(uint64_t, unsigned)>& body) {
  threads = static_cast<unsigned>(std::min<uint64_t>(threads, count));
  if (threads <= 1) {
    for (uint64_t i = 0; i < count; ++i) body(i, 0);
    return;
  }
  std::atomic<uint64_t> next{0};
  auto run = [&](unsigned worker) {
    for (uint64_t i = next++; i < count; i = next++) body(i, worker);
  };
  std::vector<std::thread> helpers;
  helpers.reserve(threads - 1);
  for (unsigned t = 1; t < threads; ++t) helpers.emplace_back(run, t);
  run(0);
  for (std::thread& t : helpers) t.join();
}

}  // namespace thaw
