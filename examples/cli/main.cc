// thaw: the command-line tool.
//
//   thaw run GUEST.elf --call NAME [--input FILE|-] [--backend auto|kvm|emulated]
//            [--memory MIB] [--timeout-ms N]
//
// The guest's reply goes to stdout, byte for byte; diagnostics, the console
// and the phase report go to stderr. Any error exits 1 with a one-line
// reason (2 for a usage error); never by a signal.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "examples/cli/args.h"
#include "thaw/vm.h"

namespace {

constexpr char kUsage[] =
    "usage: thaw run GUEST.elf --call NAME [--input FILE|-] "
    "[--backend auto|kvm|emulated] [--memory MIB] [--timeout-ms N]\n";

int Fail(const std::string& message) {
  std::fprintf(stderr, "thaw: %s\n", message.c_str());
  return 1;
}

absl::StatusOr<std::string> ReadInput(const std::string& path) {
  if (path.empty()) return std::string();
  if (path == "-") {
    return std::string((std::istreambuf_iterator<char>(std::cin)),
                       std::istreambuf_iterator<char>());
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::NotFoundError("cannot open input file \"" + path +
                               "\": " + std::strerror(errno));
  }
  return std::string((std::istreambuf_iterator<char>(file)),
                     std::istreambuf_iterator<char>());
}

int Run(const std::vector<std::string>& argv) {
  auto args = thaw::cli::ParseRunArgs(argv);
  if (!args.ok()) {
    std::fprintf(stderr, "thaw run: %s\n%s",
                 std::string(args.status().message()).c_str(), kUsage);
    return 2;
  }
  auto input = ReadInput(args->input_file);
  if (!input.ok()) return Fail(std::string(input.status().message()));
  auto vm = thaw::Vm::Create(args->config);
  if (!vm.ok()) return Fail(std::string(vm.status().message()));
  std::fprintf(stderr, "thaw: backend %s\n",
               std::string(thaw::BackendName((*vm)->backend())).c_str());
  if (absl::Status kvm = thaw::CheckKvm();
      !kvm.ok() && (*vm)->backend() != thaw::BackendKind::kKvm) {
    std::fprintf(stderr, "thaw: KVM not used: %s\n", std::string(kvm.message()).c_str());
  }
  if (auto s = (*vm)->LoadGuest(args->guest); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  absl::Status status = (*vm)->Boot();
  absl::StatusOr<std::string> reply =
      status.ok() ? (*vm)->Call(args->function, *input)
                  : absl::StatusOr<std::string>(status);
  std::string console = (*vm)->console();
  if (!console.empty()) std::fprintf(stderr, "--- guest console ---\n%s", console.c_str());
  std::fprintf(stderr, "--- phase report ---\n%s", (*vm)->report().ToString().c_str());
  if (!reply.ok()) return Fail(std::string(reply.status().message()));
  if (std::fwrite(reply->data(), 1, reply->size(), stdout) != reply->size() ||
      std::fflush(stdout) != 0) {
    return Fail(std::string("writing the reply to stdout: ") + std::strerror(errno));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "run") return Run({args.begin() + 1, args.end()});
  std::fprintf(stderr, "thaw: unknown command \"%s\"\n%s", args[0].c_str(), kUsage);
  return 2;
}
