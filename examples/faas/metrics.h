// Counters of the FaaS server in Prometheus' text format (GET /metrics):
// invocations by function, start kind and outcome, a latency histogram per
// function, inits, each pool's state, and the process's memory and file
// descriptors (to watch that they stay flat under load).
#ifndef THAW_EXAMPLES_FAAS_METRICS_H_
#define THAW_EXAMPLES_FAAS_METRICS_H_

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "thaw/pool.h"

namespace thaw::faas {

class Metrics {
 public:
  // outcome: "ok", "function_error", "fault", "timeout", "throttled",
  // "payload_too_large", "error".
  void Invocation(const std::string& function, const std::string& start,
                  const std::string& outcome, absl::Duration duration);
  void Init(const std::string& function, bool ok, absl::Duration duration);
  void AsyncEvent(const std::string& function, const std::string& outcome);

  // Everything, with the pools' current stats.
  std::string Text(
      const std::vector<std::pair<std::string, PoolStats>>& pools) const;

 private:
  struct Histogram {
    std::vector<uint64_t> buckets;  // cumulative counts per bound
    double sum = 0;
    uint64_t count = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t>
      invocations_;
  std::map<std::string, Histogram> latency_;
  std::map<std::pair<std::string, std::string>, uint64_t> inits_;
  std::map<std::pair<std::string, std::string>, uint64_t> async_;
};

// Resident memory of this process in bytes, and its open descriptors.
uint64_t ResidentBytes();
int OpenFileDescriptors();

}  // namespace thaw::faas

#endif  // THAW_EXAMPLES_FAAS_METRICS_H_
