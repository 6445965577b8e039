#include "examples/faas/lambda_log.h"

#include <sys/random.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace thaw::faas {

int64_t BilledMilliseconds(absl::Duration d) {
  const double ms = absl::ToDoubleMilliseconds(d);
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(ms)));
}

std::string NewRequestId() {
  uint8_t b[16] = {};
  // getrandom of 16 bytes does not block once the pool is initialized and
  // is never cut short.
  (void)!getrandom(b, sizeof(b), 0);
  return absl::StrFormat(
      "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
      b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
      b[12], b[13], b[14], b[15]);
}

std::string StartLine(absl::string_view request_id) {
  return absl::StrCat("START RequestId: ", request_id, " Version: $LATEST");
}

std::string EndLine(absl::string_view request_id) {
  return absl::StrCat("END RequestId: ", request_id);
}

std::string ReportLine(const InvocationReport& r) {
  std::string line = absl::StrFormat(
      "REPORT RequestId: %s\tFunction: %s\tDuration: %.2f ms\tBilled "
      "Duration: %d ms\tMemory Size: %d MB\tStart: %s",
      r.request_id, r.function, absl::ToDoubleMilliseconds(r.duration),
      BilledMilliseconds(r.duration), r.memory_mb, r.start);
  if (r.start == "restored") {
    absl::StrAppendFormat(&line,
                          "\tRestore Duration: %.2f ms\tBilled Restore "
                          "Duration: %d ms",
                          absl::ToDoubleMilliseconds(r.start_duration),
                          BilledMilliseconds(r.start_duration));
  } else if (r.start == "cold") {
    absl::StrAppendFormat(&line, "\tInit Duration: %.2f ms",
                          absl::ToDoubleMilliseconds(r.start_duration));
  }
  if (!r.status.empty()) absl::StrAppend(&line, "\tStatus: ", r.status);
  return line;
}

std::string InitReportLine(absl::string_view function, absl::Duration init,
                           absl::string_view status,
                           absl::string_view error_type) {
  std::string line = absl::StrFormat(
      "INIT_REPORT Function: %s\tInit Duration: %.2f ms\tPhase: init\t"
      "Status: %s",
      function, absl::ToDoubleMilliseconds(init), status);
  if (!error_type.empty()) absl::StrAppend(&line, "\tError Type: ", error_type);
  return line;
}

std::string RestoreReportLine(absl::string_view function,
                              absl::Duration restore) {
  return absl::StrFormat(
      "RESTORE_REPORT Function: %s\tRestore Duration: %.2f ms", function,
      absl::ToDoubleMilliseconds(restore));
}

LogSink::LogSink(const std::string& path) {
  if (!path.empty()) file_ = std::fopen(path.c_str(), "ae");
}

LogSink::~LogSink() {
  if (file_) std::fclose(file_);
}

void LogSink::Write(absl::string_view line) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (file_) {
    std::fwrite(line.data(), 1, line.size(), file_);
    std::fputc('\n', file_);
    std::fflush(file_);
  }
}

}  // namespace thaw::faas
