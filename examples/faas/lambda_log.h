// The log lines of a Lambda-style platform, in Lambda's format (tab
// separated): START / END / REPORT per invocation, INIT_REPORT per init,
// RESTORE_REPORT per restore, written whole under one lock so lines from
// concurrent invocations never interleave.
#ifndef THAW_EXAMPLES_FAAS_LAMBDA_LOG_H_
#define THAW_EXAMPLES_FAAS_LAMBDA_LOG_H_

#include <cstdio>
#include <mutex>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace thaw::faas {

// Rounded up to the next whole millisecond, at least 1 (Lambda's billing).
int64_t BilledMilliseconds(absl::Duration d);

// A new request id: 8-4-4-4-12 hex digits from the kernel's random source.
std::string NewRequestId();

struct InvocationReport {
  std::string request_id;
  std::string function;
  absl::Duration duration;  // the call itself
  uint64_t memory_mb = 0;
  std::string start;              // "warm", "restored" or "cold"
  absl::Duration start_duration;  // restore (or boot) for this request
  std::string status;             // empty when it succeeded, else "timeout",
                                  // "error", ...
};

std::string StartLine(absl::string_view request_id);
std::string EndLine(absl::string_view request_id);
std::string ReportLine(const InvocationReport& report);
// "INIT_REPORT Init Duration: 812.33 ms\tPhase: init\tStatus: success"
std::string InitReportLine(absl::string_view function, absl::Duration init,
                           absl::string_view status,
                           absl::string_view error_type = "");
std::string RestoreReportLine(absl::string_view function,
                              absl::Duration restore);

// Writes lines to stdout and, when opened with a path, appended to a file.
class LogSink {
 public:
  explicit LogSink(const std::string& path = "");
  ~LogSink();
  void Write(absl::string_view line);

 private:
  std::mutex mutex_;
  std::FILE* file_ = nullptr;
};

}  // namespace thaw::faas

#endif  // THAW_EXAMPLES_FAAS_LAMBDA_LOG_H_
