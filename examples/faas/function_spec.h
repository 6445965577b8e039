// What a deploy asks for: the guest, its memory, limits and concurrency, as
// the JSON body of PUT /functions/NAME carries it.
#ifndef THAW_EXAMPLES_FAAS_FUNCTION_SPEC_H_
#define THAW_EXAMPLES_FAAS_FUNCTION_SPEC_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "thaw/pool.h"

namespace thaw::faas {

struct FunctionSpec {
  std::string name;
  // Exactly one of: a function guest (ELF against thaw's SDK) and the
  // function in it to call, or a Linux program (with args, env, files).
  std::string guest;
  std::string handler;
  std::string program;
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::vector<std::pair<std::string, std::string>> files;  // host, guest

  uint64_t memory_mb = 64;
  absl::Duration timeout = absl::Seconds(3);
  int reserved_concurrency = 4;        // the pool's max_concurrency
  int provisioned_concurrency = 0;     // kept restored
  uint64_t payload_limit = 256 << 10;  // bytes of request
  Isolation isolation = Isolation::kResetPerRequest;
  BackendKind backend = BackendKind::kAuto;
  // Each sandbox in a confined worker process of its own
  // (VmSettings::worker_process; emulated backend only).
  bool worker_process = false;
};

// A name usable in a URL and as a file name: 1-64 of [A-Za-z0-9_-].
bool IsValidFunctionName(absl::string_view name);

// Parses a deploy body. InvalidArgument names the field that is wrong
// ("memory_mb: must be a multiple of 2 from 4 to 65536").
absl::StatusOr<FunctionSpec> ParseFunctionSpec(absl::string_view name,
                                               absl::string_view json);

// The spec as JSON, as ParseFunctionSpec reads it (kept on disk so a
// restarted server finds its functions again).
std::string FunctionSpecJson(const FunctionSpec& spec);

}  // namespace thaw::faas

#endif  // THAW_EXAMPLES_FAAS_FUNCTION_SPEC_H_
