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
  // run, boot, snapshot, restore, inspect, verify, keygen, push, pull
  std::string command;
  std::string target;        // GUEST.elf, PROGRAM, the snapshot FILE or URL
  std::string destination;   // push FILE URL, pull URL FILE: the second
  std::string function;      // --call
  std::string input_file;    // --input: empty, a path, or "-" for stdin
  std::string output;        // -o FILE (snapshot)
  VmConfig config;           // --backend --memory --timeout-ms
  SnapshotOptions snapshot;  // --level --chunk-size --threads
  RestoreOptions restore;    // --engine --backend --timeout-ms
  bool record_working_set = false;
  // --sign KEYFILE (a secret key; snapshot, and restore with
  // --record-working-set) and --key KEYFILE.pub (restore, verify): loaded
  // by the command, so that a bad key file is an error, not a usage error.
  std::string signing_key_file;
  std::string verify_key_file;
  // A Linux program instead of a function guest: --program, or implied by
  // --fs, --env, --cwd, --trace-syscalls or arguments after "--".
  bool program = false;
  ProgramOptions program_options;  // --fs HOST[:GUEST] --env K=V --cwd DIR
  // boot: a Linux VM (--kernel --initrd --cmdline --vcpus --memory).
  std::string kernel;
  std::string initrd;
  LinuxBootOptions boot;
};

// Parses argv after "thaw" for every command; InvalidArgument naming the
// argument for anything a command does not take.
absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& argv);

}  // namespace thaw::cli

#endif  // THAW_EXAMPLES_CLI_ARGS_H_
