// One invocation: find the function, check the payload, lease a sandbox
// from its pool, call the handler, and turn the outcome into the HTTP
// status a Lambda user expects, with START/END/REPORT lines and metrics.
#ifndef THAW_EXAMPLES_FAAS_INVOKER_H_
#define THAW_EXAMPLES_FAAS_INVOKER_H_

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "examples/faas/functions.h"
#include "examples/faas/lambda_log.h"
#include "examples/faas/metrics.h"

namespace thaw::faas {

struct HttpReply {
  int status = 200;
  std::string body;
  std::string content_type = "application/octet-stream";
  std::vector<std::pair<std::string, std::string>> headers;

  // The invocation succeeded and the function returned no error.
  bool succeeded() const;
};

// A JSON error body: {"errorType": ..., "errorMessage": ...} and the fields
// of `extra` (a JSON object).
HttpReply ErrorReply(int status, const std::string& type,
                     const std::string& message,
                     nlohmann::json extra = nlohmann::json::object());

class Invoker {
 public:
  Invoker(Functions& functions, LogSink& log, Metrics& metrics)
      : functions_(functions), log_(log), metrics_(metrics) {}

  // 200 with the reply (X-Function-Error set when the function reported an
  // error); 404 unknown function; 413 payload over the limit; 429 over the
  // function's concurrency; 504 timeout (with the phase report); 502 guest
  // fault (vector, RIP) or abort; 500 a sandbox that could not start.
  HttpReply Invoke(const std::string& function, const std::string& payload,
                   const std::string& request_id);

 private:
  Functions& functions_;
  LogSink& log_;
  Metrics& metrics_;
};

}  // namespace thaw::faas

#endif  // THAW_EXAMPLES_FAAS_INVOKER_H_
