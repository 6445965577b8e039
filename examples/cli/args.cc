#include "examples/cli/args.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace thaw::cli {

absl::StatusOr<RunArgs> ParseRunArgs(const std::vector<std::string>& args) {
  RunArgs out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value = [&]() -> absl::StatusOr<std::string> {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat(arg, " needs a value"));
      }
      return args[++i];
    };
    auto number = [&](uint64_t min, uint64_t max) -> absl::StatusOr<uint64_t> {
      auto text = value();
      if (!text.ok()) return text.status();
      uint64_t n = 0;
      if (!absl::SimpleAtoi(*text, &n) || n < min || n > max) {
        return absl::InvalidArgumentError(absl::StrCat(
            arg, " ", *text, ": expected a number from ", min, " to ", max));
      }
      return n;
    };
    if (arg == "--call") {
      auto v = value();
      if (!v.ok()) return v.status();
      out.function = *v;
    } else if (arg == "--input") {
      auto v = value();
      if (!v.ok()) return v.status();
      out.input_file = *v;
    } else if (arg == "--backend") {
      auto v = value();
      if (!v.ok()) return v.status();
      auto kind = ParseBackendName(*v);
      if (!kind.ok()) return kind.status();
      out.config.backend = *kind;
    } else if (arg == "--memory") {
      auto n = number(4, 64 * 1024);
      if (!n.ok()) return n.status();
      out.config.memory_size = *n << 20;
    } else if (arg == "--timeout-ms") {
      auto n = number(1, 24ull * 3600 * 1000);
      if (!n.ok()) return n.status();
      out.config.call_timeout = absl::Milliseconds(*n);
    } else if (!arg.empty() && arg[0] == '-' && arg != "-") {
      return absl::InvalidArgumentError(absl::StrCat("unknown option ", arg));
    } else if (out.guest.empty()) {
      out.guest = arg;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument \"", arg, "\""));
    }
  }
  if (out.guest.empty()) {
    return absl::InvalidArgumentError("missing GUEST.elf");
  }
  if (out.function.empty()) {
    return absl::InvalidArgumentError("missing --call NAME");
  }
  return out;
}

}  // namespace thaw::cli
