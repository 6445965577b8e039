#include "examples/faas/invoker.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "thaw/errors.h"

namespace thaw::faas {
namespace {

using Json = nlohmann::json;

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

}  // namespace

bool HttpReply::succeeded() const {
  if (status != 200) return false;
  for (const auto& [name, value] : headers) {
    if (name == "X-Function-Error") return false;
  }
  return true;
}

HttpReply ErrorReply(int status, const std::string& type,
                     const std::string& message, Json extra) {
  HttpReply reply;
  reply.status = status;
  reply.content_type = "application/json";
  extra["errorType"] = type;
  extra["errorMessage"] = message;
  reply.body = extra.dump();
  return reply;
}

HttpReply Invoker::Invoke(const std::string& name, const std::string& payload,
                          const std::string& request_id) {
  const absl::Time begin = absl::Now();
  std::shared_ptr<const Function> function = functions_.Find(name);
  if (!function) {
    return ErrorReply(404, "ResourceNotFoundException",
                      absl::StrCat("function \"", name, "\" is not deployed"));
  }
  const FunctionSpec& spec = function->spec;
  if (payload.size() > spec.payload_limit) {
    metrics_.Invocation(name, "none", "payload_too_large",
                        absl::ZeroDuration());
    return ErrorReply(
        413, "RequestEntityTooLargeException",
        absl::StrFormat("request payload of %d bytes exceeds the function's "
                        "limit of %d bytes",
                        payload.size(), spec.payload_limit));
  }
  // Lambda throttles a synchronous call at once: no queueing.
  absl::StatusOr<Lease> lease = function->pool->Acquire(absl::Now());
  if (!lease.ok()) {
    if (lease.status().code() == absl::StatusCode::kResourceExhausted) {
      metrics_.Invocation(name, "none", "throttled", absl::ZeroDuration());
      HttpReply reply = ErrorReply(429, "TooManyRequestsException",
                                   std::string(lease.status().message()));
      reply.headers.emplace_back("Retry-After", "1");
      return reply;
    }
    metrics_.Invocation(name, "none", "error", absl::Now() - begin);
    return ErrorReply(500, "Sandbox.StartFailed",
                      std::string(lease.status().message()));
  }
  const std::string start(StartKindName(lease->start()));
  // The invocation's lines go out together at its end: one write, one
  // turn of the log's lock per request instead of four.
  std::string lines = StartLine(request_id);
  if (lease->start() == StartKind::kRestored) {
    absl::StrAppend(&lines, "\n", RestoreReportLine(name, lease->start_time()));
  }
  const absl::Time call_start = absl::Now();
  absl::StatusOr<std::string> result = (*lease)->Call(spec.handler, payload);
  const absl::Duration duration = absl::Now() - call_start;

  HttpReply reply;
  std::string outcome = "ok";
  std::string status_field;
  if (result.ok()) {
    reply.body = *std::move(result);
  } else if (result.status().code() == absl::StatusCode::kDeadlineExceeded) {
    outcome = "timeout";
    status_field = "timeout";
    const PhaseReport report = (*lease)->report();
    reply = ErrorReply(
        504, "Sandbox.Timedout", std::string(result.status().message()),
        {{"report",
          {{"phase", "invoke"},
           {"timeout_ms", absl::ToInt64Milliseconds(spec.timeout)},
           {"start", start},
           {"start_ms", Ms(lease->start_time())},
           {"invoke_ms", Ms(duration)},
           {"restore_ms", Ms(report.restore)},
           {"calls", report.calls}}}});
  } else if (auto fault = GetGuestFault(result.status())) {
    outcome = "fault";
    status_field = "error";
    reply =
        ErrorReply(502, "Sandbox.Fault", std::string(result.status().message()),
                   {{"vector", fault->vector},
                    {"rip", absl::StrFormat("0x%x", fault->rip)},
                    {"cr2", absl::StrFormat("0x%x", fault->cr2)}});
  } else if ((*lease)->failure().ok()) {
    // The function reported an error and its sandbox is fine: as Lambda,
    // 200 with X-Function-Error.
    outcome = "function_error";
    status_field = "error";
    reply = ErrorReply(200, "Function.Error",
                       std::string(result.status().message()));
    reply.headers.emplace_back("X-Function-Error", "Unhandled");
  } else {
    outcome = "error";  // an abort, damaged memory: the sandbox is dropped
    status_field = "error";
    reply = ErrorReply(502, "Sandbox.Error",
                       std::string(result.status().message()));
  }
  InvocationReport report;
  report.request_id = request_id;
  report.function = name;
  report.duration = duration;
  report.memory_mb = spec.memory_mb;
  report.start = start;
  report.start_duration = lease->start_time();
  report.status = status_field;
  absl::StrAppend(&lines, "\n", EndLine(request_id), "\n", ReportLine(report));
  log_.Write(lines);
  reply.headers.emplace_back("X-Request-Id", request_id);
  reply.headers.emplace_back("X-Start", start);
  reply.headers.emplace_back("X-Billed-Duration-Ms",
                             absl::StrCat(BilledMilliseconds(duration)));
  (void)lease->Release();  // reset (or dropped) before the next request
  metrics_.Invocation(name, start, outcome, absl::Now() - begin);
  return reply;
}

}  // namespace thaw::faas
