#include "examples/faas/metrics.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace thaw::faas {
namespace {

// Latency histogram bounds, seconds: 0.25 ms to 10 s.
constexpr double kBounds[] = {0.00025, 0.0005, 0.001, 0.0025, 0.005,
                              0.01,    0.025,  0.05,  0.1,    0.25,
                              0.5,     1,      2.5,   5,      10};

std::string Label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

void Metrics::Invocation(const std::string& function, const std::string& start,
                         const std::string& outcome, absl::Duration duration) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++invocations_[{function, start, outcome}];
  if (outcome == "throttled" || outcome == "payload_too_large") return;
  Histogram& h = latency_[function];
  if (h.buckets.empty()) h.buckets.assign(std::size(kBounds), 0);
  const double seconds = absl::ToDoubleSeconds(duration);
  for (size_t i = 0; i < std::size(kBounds); ++i) {
    if (seconds <= kBounds[i]) ++h.buckets[i];
  }
  h.sum += seconds;
  ++h.count;
}

void Metrics::Init(const std::string& function, bool ok, absl::Duration) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++inits_[{function, ok ? "success" : "error"}];
}

void Metrics::AsyncEvent(const std::string& function,
                         const std::string& outcome) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++async_[{function, outcome}];
}

std::string Metrics::Text(
    const std::vector<std::pair<std::string, PoolStats>>& pools) const {
  std::string out;
  std::lock_guard<std::mutex> lock(mutex_);
  out +=
      "# HELP thaw_invocations_total Invocations by function, start kind "
      "and outcome.\n# TYPE thaw_invocations_total counter\n";
  for (const auto& [key, n] : invocations_) {
    const auto& [function, start, outcome] = key;
    absl::StrAppendFormat(
        &out,
        "thaw_invocations_total{function=\"%s\",start=\"%s\",outcome=\"%s\"} "
        "%d\n",
        Label(function), Label(start), Label(outcome), n);
  }
  out +=
      "# HELP thaw_invocation_duration_seconds Time from the request to the "
      "reply, sandbox start included.\n"
      "# TYPE thaw_invocation_duration_seconds histogram\n";
  for (const auto& [function, h] : latency_) {
    for (size_t i = 0; i < std::size(kBounds); ++i) {
      absl::StrAppendFormat(&out,
                            "thaw_invocation_duration_seconds_bucket{function="
                            "\"%s\",le=\"%g\"} %d\n",
                            Label(function), kBounds[i], h.buckets[i]);
    }
    absl::StrAppendFormat(
        &out,
        "thaw_invocation_duration_seconds_bucket{function=\"%s\",le=\"+Inf\"} "
        "%d\nthaw_invocation_duration_seconds_sum{function=\"%s\"} %.6f\n"
        "thaw_invocation_duration_seconds_count{function=\"%s\"} %d\n",
        Label(function), h.count, Label(function), h.sum, Label(function),
        h.count);
  }
  out +=
      "# HELP thaw_inits_total Inits (deploys) by outcome.\n"
      "# TYPE thaw_inits_total counter\n";
  for (const auto& [key, n] : inits_) {
    absl::StrAppendFormat(
        &out, "thaw_inits_total{function=\"%s\",status=\"%s\"} %d\n",
        Label(key.first), key.second, n);
  }
  out +=
      "# HELP thaw_async_events_total Asynchronous events by outcome.\n"
      "# TYPE thaw_async_events_total counter\n";
  for (const auto& [key, n] : async_) {
    absl::StrAppendFormat(
        &out, "thaw_async_events_total{function=\"%s\",outcome=\"%s\"} %d\n",
        Label(key.first), key.second, n);
  }
  out +=
      "# HELP thaw_pool_sandboxes Sandboxes of a function's pool now.\n"
      "# TYPE thaw_pool_sandboxes gauge\n";
  for (const auto& [function, s] : pools) {
    for (auto [state, n] : {std::pair<const char*, int>{"idle", s.idle},
                            {"leased", s.leased},
                            {"starting", s.starting}}) {
      absl::StrAppendFormat(
          &out, "thaw_pool_sandboxes{function=\"%s\",state=\"%s\"} %d\n",
          Label(function), state, n);
    }
  }
  out +=
      "# HELP thaw_pool_events_total What a function's pool did.\n"
      "# TYPE thaw_pool_events_total counter\n";
  for (const auto& [function, s] : pools) {
    for (auto [event, n] :
         {std::pair<const char*, uint64_t>{"warm_start", s.warm_starts},
          {"restored_start", s.restored_starts},
          {"cold_start", s.cold_starts},
          {"background_restore", s.background_restores},
          {"queue_wait", s.queue_waits},
          {"throttle", s.throttles},
          {"reset", s.resets},
          {"discard", s.discards},
          {"reclaim", s.reclaimed},
          {"start_failure", s.start_failures}}) {
      absl::StrAppendFormat(
          &out, "thaw_pool_events_total{function=\"%s\",event=\"%s\"} %d\n",
          Label(function), event, n);
    }
  }
  absl::StrAppendFormat(
      &out,
      "# HELP process_resident_memory_bytes Resident memory.\n"
      "# TYPE process_resident_memory_bytes gauge\n"
      "process_resident_memory_bytes %d\n"
      "# HELP process_open_fds Open file descriptors.\n"
      "# TYPE process_open_fds gauge\nprocess_open_fds %d\n",
      ResidentBytes(), OpenFileDescriptors());
  return out;
}

uint64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

int OpenFileDescriptors() {
  std::error_code error;
  int n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", error);
       !error && it != std::filesystem::directory_iterator();
       it.increment(error)) {
    ++n;
  }
  return n;
}

}  // namespace thaw::faas
