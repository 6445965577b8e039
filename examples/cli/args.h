// Command-line parsing for the thaw CLI: small, strict, and with errors that
// name the offending argument.
#ifndef THAW_EXAMPLES_CLI_ARGS_H_
#define THAW_EXAMPLES_CLI_ARGS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "thaw/snapshot.h"
#include "thaw/vm.h"

namespace thaw::cli {

struct Args {
  std::string command;       // run, snapshot, restore, inspect, verify
  std::string target;        // GUEST.elf or the snapshot FILE
  std::string function;      // --call
  std::string input_file;    // --input: empty, a path, or "-" for stdin
  std::string output;        // -o FILE (snapshot)
  VmConfig config;           // --backend --memory --timeout-ms
  SnapshotOptions snapshot;  // --level --chunk-size
  RestoreOptions restore;    // --engine --backend --timeout-ms
  bool record_working_set = false;
};

// Parses argv after "thaw" for every command; InvalidArgument naming the
// argument for anything a command does not take.
absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& argv);

}  // namespace thaw::cli

#endif  // THAW_EXAMPLES_CLI_ARGS_H_
