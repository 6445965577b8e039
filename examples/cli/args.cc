#include "examples/cli/args.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace thaw::cli {
namespace {

// The options each command takes.
std::vector<std::string> OptionsOf(const std::string& command) {
  const std::vector<std::string> program = {"--program", "--fs", "--env",
                                            "--cwd", "--trace-syscalls"};
  auto with_program = [&](std::vector<std::string> options) {
    options.insert(options.end(), program.begin(), program.end());
    return options;
  };
  if (command == "run") {
    return with_program({"--call", "--input", "--backend", "--memory",
                         "--timeout-ms", "--huge-pages", "--worker"});
  }
  if (command == "snapshot") {
    // A function guest or program, or (with --kernel) a Linux VM.
    return with_program(
        {"-o", "--level", "--chunk-size", "--threads", "--backend", "--memory",
         "--timeout-ms", "--huge-pages", "--sign", "--worker", "--kernel",
         "--initrd", "--cmdline", "--vcpus", "--boot-timeout-ms"});
  }
  if (command == "restore") {
    return {"--call",           "--input",      "--engine",
            "--backend",        "--timeout-ms", "--record-working-set",
            "--trace-syscalls", "--huge-pages", "--key",
            "--sign",           "--worker"};
  }
  if (command == "boot") {
    return {"--kernel", "--initrd",     "--cmdline",
            "--memory", "--vcpus",      "--call",
            "--input",  "--timeout-ms", "--boot-timeout-ms",
            "-o",       "--level",      "--chunk-size",
            "--sign"};
  }
  if (command == "verify") return {"--key"};
  return {};  // inspect, keygen, push, pull
}

}  // namespace

absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& argv) {
  Args out;
  if (argv.empty()) return absl::InvalidArgumentError("missing command");
  out.command = argv[0];
  if (out.command != "run" && out.command != "boot" &&
      out.command != "snapshot" && out.command != "restore" &&
      out.command != "inspect" && out.command != "verify" &&
      out.command != "keygen" && out.command != "push" &&
      out.command != "pull") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown command \"", out.command, "\""));
  }
  const std::vector<std::string> allowed = OptionsOf(out.command);
  for (size_t i = 1; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg == "--" && (out.command == "run" || out.command == "snapshot")) {
      // The program's own arguments.
      out.program = true;
      out.program_options.args.assign(argv.begin() + i + 1, argv.end());
      break;
    }
    const bool is_option = arg.size() > 1 && arg[0] == '-';
    if (!is_option) {
      if (!out.target.empty() &&
          (out.command == "push" || out.command == "pull") &&
          out.destination.empty()) {
        out.destination = arg;
        continue;
      }
      if (!out.target.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("unexpected argument \"", arg, "\""));
      }
      out.target = arg;
      continue;
    }
    if (std::find(allowed.begin(), allowed.end(), arg) == allowed.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown option ", arg, " for thaw ", out.command,
          allowed.empty() ? "" : " (takes ", absl::StrJoin(allowed, " "),
          allowed.empty() ? "" : ")"));
    }
    if (arg == "--record-working-set") {
      out.record_working_set = true;
      continue;
    }
    if (arg == "--program") {
      out.program = true;
      continue;
    }
    if (arg == "--huge-pages") {
      out.config.huge_pages = true;
      out.restore.huge_pages = true;
      continue;
    }
    if (arg == "--worker") {
      out.config.worker_process = true;
      out.restore.worker_process = true;
      continue;
    }
    if (arg == "--trace-syscalls") {
      out.program = out.command != "restore";
      out.config.trace_syscalls = true;
      out.restore.trace_syscalls = true;
      continue;
    }
    if (i + 1 >= argv.size()) {
      return absl::InvalidArgumentError(absl::StrCat(arg, " needs a value"));
    }
    const std::string& value = argv[++i];
    auto number = [&](uint64_t min, uint64_t max) -> absl::StatusOr<uint64_t> {
      uint64_t n = 0;
      if (!absl::SimpleAtoi(value, &n) || n < min || n > max) {
        return absl::InvalidArgumentError(absl::StrCat(
            arg, " ", value, ": expected a number from ", min, " to ", max));
      }
      return n;
    };
    if (arg == "--fs") {
      out.program = true;
      const size_t colon = value.find(':');
      FileMount mount;
      mount.host_path = value.substr(0, colon);
      mount.guest_path = colon == std::string::npos ? mount.host_path
                                                    : value.substr(colon + 1);
      out.program_options.files.push_back(mount);
    } else if (arg == "--env") {
      out.program = true;
      if (value.find('=') == std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("--env ", value, ": expected KEY=VALUE"));
      }
      out.program_options.env.push_back(value);
    } else if (arg == "--cwd") {
      out.program = true;
      out.program_options.cwd = value;
    } else if (arg == "--kernel") {
      out.kernel = value;
    } else if (arg == "--initrd") {
      out.initrd = value;
    } else if (arg == "--cmdline") {
      out.boot.cmdline = value;
    } else if (arg == "--vcpus") {
      auto n = number(1, 16);
      if (!n.ok()) return n.status();
      out.config.vcpus = static_cast<int>(*n);
    } else if (arg == "--boot-timeout-ms") {
      auto n = number(1, 24ull * 3600 * 1000);
      if (!n.ok()) return n.status();
      out.boot.boot_timeout = absl::Milliseconds(*n);
    } else if (arg == "--call") {
      out.function = value;
    } else if (arg == "--input") {
      out.input_file = value;
    } else if (arg == "-o") {
      out.output = value;
    } else if (arg == "--sign") {
      out.signing_key_file = value;
    } else if (arg == "--key") {
      out.verify_key_file = value;
    } else if (arg == "--backend") {
      auto kind = ParseBackendName(value);
      if (!kind.ok()) return kind.status();
      out.config.backend = *kind;
      out.restore.backend = *kind;
    } else if (arg == "--engine") {
      auto engine = ParseRestoreEngine(value);
      if (!engine.ok()) return engine.status();
      out.restore.engine = *engine;
    } else if (arg == "--memory") {
      auto n = number(4, 64 * 1024);
      if (!n.ok()) return n.status();
      out.config.memory_size = *n << 20;
    } else if (arg == "--timeout-ms") {
      auto n = number(1, 24ull * 3600 * 1000);
      if (!n.ok()) return n.status();
      out.config.call_timeout = absl::Milliseconds(*n);
      out.restore.call_timeout = absl::Milliseconds(*n);
    } else if (arg == "--threads") {
      auto n = number(0, 1024);
      if (!n.ok()) return n.status();
      out.snapshot.threads = static_cast<unsigned>(*n);
    } else if (arg == "--level") {
      auto n = number(1, 19);
      if (!n.ok()) return n.status();
      out.snapshot.compression_level = static_cast<int>(*n);
    } else if (arg == "--chunk-size") {
      auto n = number(4096, 4u << 20);
      if (!n.ok()) return n.status();
      if ((*n & (*n - 1)) != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("--chunk-size ", value, ": must be a power of two"));
      }
      out.snapshot.chunk_size = static_cast<uint32_t>(*n);
    }
  }
  const bool linux_vm =
      out.command == "boot" || (out.command == "snapshot" &&
                                (!out.kernel.empty() || !out.initrd.empty()));
  if (linux_vm) {
    if (!out.target.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument \"", out.target,
                       "\" (the kernel is --kernel VMLINUX)"));
    }
    if (out.kernel.empty())
      return absl::InvalidArgumentError("missing --kernel");
    if (out.initrd.empty())
      return absl::InvalidArgumentError("missing --initrd");
    if (out.command == "snapshot" && out.output.empty()) {
      return absl::InvalidArgumentError("missing -o FILE");
    }
    if (out.config.memory_size == VmConfig().memory_size) {
      out.config.memory_size = 256ull << 20;  // Debian's kernel needs ~100
    }
    out.config.guest_kind = GuestKind::kLinuxVm;
    out.config.backend = BackendKind::kKvm;
    return out;
  }
  if (!out.boot.cmdline.empty() || out.config.vcpus != 1) {
    return absl::InvalidArgumentError(
        "--cmdline and --vcpus are for a Linux VM (--kernel VMLINUX --initrd "
        "CPIO)");
  }
  if (out.command == "push" || out.command == "pull") {
    if (out.destination.empty()) {
      return absl::InvalidArgumentError(out.command == "push"
                                            ? "push takes FILE URL"
                                            : "pull takes URL FILE");
    }
    return out;
  }
  if (out.target.empty()) {
    return absl::InvalidArgumentError(
        out.command == "run" || out.command == "snapshot" ? "missing GUEST.elf"
        : out.command == "keygen"                         ? "missing KEYFILE"
                                                          : "missing FILE");
  }
  if ((out.command == "run" || out.command == "restore") &&
      out.function.empty()) {
    return absl::InvalidArgumentError("missing --call NAME");
  }
  if (out.command == "snapshot" && out.output.empty()) {
    return absl::InvalidArgumentError("missing -o FILE");
  }
  if (out.record_working_set && out.restore.engine != RestoreEngine::kLazy) {
    return absl::InvalidArgumentError(
        "--record-working-set needs --engine lazy");
  }
  if (out.command == "restore" && !out.signing_key_file.empty() &&
      !out.record_working_set) {
    return absl::InvalidArgumentError(
        "--sign on restore signs the rewritten file: it needs "
        "--record-working-set");
  }
  out.restore.record_working_set = out.record_working_set;
  if (out.program) {
    out.config.guest_kind = GuestKind::kLinuxProgram;
    if (out.program_options.args.empty()) {
      out.program_options.args.push_back(out.target);
    } else {
      out.program_options.args.insert(out.program_options.args.begin(),
                                      out.target);
    }
  }
  return out;
}

}  // namespace thaw::cli
