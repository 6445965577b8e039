// Command-line parsing for the thaw CLI: small, strict, and with errors that
// name the offending argument.
#ifndef THAW_EXAMPLES_CLI_ARGS_H_
#define THAW_EXAMPLES_CLI_ARGS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "thaw/vm.h"

namespace thaw::cli {

struct RunArgs {
  std::string guest;
  std::string function;
  std::string input_file;  // empty: no input; "-": standard input
  VmConfig config;
};

// Parses `thaw run GUEST.elf --call NAME [--input FILE] [--backend B]
// [--memory MIB] [--timeout-ms N]` (argv without "thaw run").
absl::StatusOr<RunArgs> ParseRunArgs(const std::vector<std::string>& args);

}  // namespace thaw::cli

#endif  // THAW_EXAMPLES_CLI_ARGS_H_
