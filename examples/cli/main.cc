// thaw: the command-line tool.
//
//   thaw run GUEST.elf --call NAME [--input FILE|-] [--backend B]
//            [--memory MIB] [--timeout-ms N]
//   thaw boot --kernel VMLINUX --initrd CPIO [--cmdline TEXT] [--memory MIB]
//            [--vcpus N] [--call NAME [--input FILE|-]] [-o SNAPSHOT]
//            (a Linux VM on KVM; its console streams to stderr)
//   thaw snapshot GUEST.elf -o FILE [--level N] [--chunk-size BYTES]
//            [--backend B] [--memory MIB] [--timeout-ms N]
//   thaw restore FILE --call NAME [--input FILE|-] [--engine E]
//            [--backend B] [--timeout-ms N] [--record-working-set]
//   thaw inspect FILE
//   thaw verify FILE [--key KEYFILE.pub]
//   thaw keygen KEYFILE              (writes KEYFILE and KEYFILE.pub)
//   thaw push FILE URL               (http(s)://... or s3://BUCKET/KEY)
//   thaw pull URL FILE
// restore, inspect and verify take a URL as well as a FILE: frames are
// fetched as the restore needs them, through the host's chunk cache
// ($THAW_CACHE_DIR; thaw/remote.h), and `restore` then prints what the
// store cost. S3 credentials come from the AWS_* environment variables.
//
// Signing (thaw/signing.h): snapshot --sign KEYFILE signs the file;
// restore and verify --key KEYFILE.pub refuse a file not signed by it.
//
// A reply goes to stdout, byte for byte; diagnostics, the console and the
// phase report go to stderr. Any error exits 1 with a one-line reason (2 for
// a usage error); never by a signal.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "examples/cli/args.h"
#include "examples/cli/progress.h"
#include "thaw/remote.h"
#include "thaw/signing.h"
#include "thaw/snapshot.h"
#include "thaw/vm.h"

namespace {

constexpr char kUsage[] =
    "usage: thaw run GUEST.elf --call NAME [--input FILE|-]\n"
    "                [--backend auto|kvm|emulated] [--memory MIB] "
    "[--timeout-ms N]\n"
    "       thaw run PROGRAM [--fs HOSTDIR[:GUESTDIR]]... [--env K=V]...\n"
    "                [--cwd DIR] [--trace-syscalls] --call NAME [--input "
    "FILE|-]\n"
    "                [--backend B] [--memory MIB] [--timeout-ms N] [-- "
    "ARGS...]\n"
    "       thaw boot --kernel VMLINUX --initrd CPIO [--cmdline TEXT] "
    "[--memory MIB]\n"
    "                [--vcpus N] [--boot-timeout-ms N] [--call NAME [--input "
    "FILE|-]]\n"
    "                [-o SNAPSHOT [--level N] [--chunk-size BYTES] [--sign "
    "KEYFILE]]\n"
    "                (a Linux VM on KVM, console on stderr; restore its "
    "snapshot with restore)\n"
    "       thaw snapshot GUEST.elf|PROGRAM -o FILE [--level 1-19] "
    "[--chunk-size BYTES]\n"
    "                [--threads N] [--backend B] [--memory MIB] "
    "[--timeout-ms N]\n"
    "                [program options as for run]\n"
    "       thaw snapshot --kernel VMLINUX --initrd CPIO -o FILE [boot "
    "options]\n"
    "                (boots a Linux VM to its agent and snapshots it: "
    "boot -o)\n"
    "       thaw restore FILE --call NAME [--input FILE|-]\n"
    "                [--engine eager|lazy|prefetch|shared] [--backend B]\n"
    "                [--timeout-ms N] [--record-working-set] "
    "[--trace-syscalls]\n"
    "       (run, snapshot and restore take --huge-pages: guest memory in "
    "2 MiB pages;\n"
    "       and --worker: the Vm in a confined worker process, emulated "
    "backend)\n"
    "       thaw inspect FILE\n"
    "       thaw verify FILE [--key KEYFILE.pub]\n"
    "       thaw keygen KEYFILE   (writes KEYFILE, mode 0600, and "
    "KEYFILE.pub)\n"
    "       thaw push FILE URL    (URL: http(s)://HOST/PATH or "
    "s3://BUCKET/KEY)\n"
    "       thaw pull URL FILE\n"
    "       restore, inspect and verify take a URL for FILE (chunk cache: "
    "$THAW_CACHE_DIR;\n"
    "       S3 keys, region and endpoint: AWS_ACCESS_KEY_ID, "
    "AWS_SECRET_ACCESS_KEY,\n"
    "       AWS_REGION, AWS_ENDPOINT_URL)\n"
    "       snapshot --sign KEYFILE signs the file; restore --key "
    "KEYFILE.pub\n"
    "       refuses one not signed by that key (with --record-working-set "
    "it\n"
    "       needs --sign KEYFILE too)\n";

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "thaw: %s\n", std::string(status.message()).c_str());
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

void SayBackend(const thaw::Vm& vm) {
  std::fprintf(stderr, "thaw: backend %s\n",
               std::string(thaw::BackendName(vm.backend())).c_str());
  if (absl::Status kvm = thaw::CheckKvm();
      !kvm.ok() && vm.backend() != thaw::BackendKind::kKvm) {
    std::fprintf(stderr, "thaw: KVM not used: %s\n",
                 std::string(kvm.message()).c_str());
  }
}

// Calls the function, prints console, report and reply; the exit code.
int CallAndReport(thaw::Vm& vm, const thaw::cli::Args& args,
                  absl::Status before) {
  auto input = ReadInput(args.input_file);
  if (!input.ok()) return Fail(input.status());
  absl::StatusOr<std::string> reply = before.ok()
                                          ? vm.Call(args.function, *input)
                                          : absl::StatusOr<std::string>(before);
  std::string console = vm.console();
  if (!console.empty()) {
    std::fprintf(stderr, "--- guest console ---\n%s", console.c_str());
  }
  std::fprintf(stderr, "--- phase report ---\n%s",
               vm.report().ToString().c_str());
  if (vm.config().guest_kind == thaw::GuestKind::kLinuxProgram) {
    const thaw::ProgramStats stats = vm.program_stats();
    std::string unsupported;
    for (const auto& [name, count] : stats.unsupported) {
      unsupported += " " + name + " x" + std::to_string(count);
    }
    std::fprintf(stderr,
                 "--- system calls ---\n%llu served; ENOSYS:%s; path escapes "
                 "refused: %llu\n",
                 static_cast<unsigned long long>(stats.syscalls),
                 unsupported.empty() ? " none" : unsupported.c_str(),
                 static_cast<unsigned long long>(stats.path_escapes));
  }
  if (!reply.ok()) return Fail(reply.status());
  if (std::fwrite(reply->data(), 1, reply->size(), stdout) != reply->size() ||
      std::fflush(stdout) != 0) {
    return Fail(absl::InternalError(
        std::string("writing the reply to stdout: ") + std::strerror(errno)));
  }
  return 0;
}

absl::StatusOr<std::unique_ptr<thaw::Vm>> BootGuest(
    const thaw::cli::Args& args) {
  auto vm = thaw::Vm::Create(args.config);
  if (!vm.ok()) return vm.status();
  SayBackend(**vm);
  absl::Status loaded =
      args.program ? (*vm)->LoadProgram(args.target, args.program_options)
                   : (*vm)->LoadGuest(args.target);
  if (!loaded.ok()) return loaded;
  return vm;
}

int Run(const thaw::cli::Args& args) {
  auto vm = BootGuest(args);
  if (!vm.ok()) return Fail(vm.status());
  return CallAndReport(**vm, args, (*vm)->Boot());
}

// A Linux VM (thaw boot, or thaw snapshot --kernel): boots to its agent
// with the console streamed, then calls and snapshots as asked.
int Boot(thaw::cli::Args args) {
  if (!args.signing_key_file.empty()) {
    auto key = thaw::SigningKey::Load(args.signing_key_file);
    if (!key.ok()) return Fail(key.status());
    args.snapshot.signing_key = *std::move(key);
  }
  args.config.console_sink = [](absl::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stderr);
  };
  auto vm = thaw::Vm::Create(args.config);
  if (!vm.ok()) return Fail(vm.status());
  if (absl::Status s = (*vm)->LoadKernel(args.kernel, args.initrd, args.boot);
      !s.ok()) {
    return Fail(s);
  }
  if (absl::Status s = (*vm)->Boot(); !s.ok()) return Fail(s);
  std::fprintf(stderr, "thaw: the agent is ready\n");
  int code = 0;
  if (!args.function.empty()) {
    auto input = ReadInput(args.input_file);
    if (!input.ok()) return Fail(input.status());
    auto reply = (*vm)->Call(args.function, *input);
    if (!reply.ok()) return Fail(reply.status());
    std::fwrite(reply->data(), 1, reply->size(), stdout);
    std::fflush(stdout);
  }
  if (!args.output.empty()) {
    if (absl::Status s = (*vm)->Snapshot(args.output, args.snapshot); !s.ok()) {
      return Fail(s);
    }
    std::fprintf(stderr, "thaw: wrote %s\n", args.output.c_str());
  }
  std::fprintf(stderr, "--- phase report ---\n%s",
               (*vm)->report().ToString().c_str());
  return code;
}

int Snapshot(thaw::cli::Args args) {
  if (!args.signing_key_file.empty()) {
    auto key = thaw::SigningKey::Load(args.signing_key_file);
    if (!key.ok()) return Fail(key.status());
    args.snapshot.signing_key = *std::move(key);
  }
  auto vm = BootGuest(args);
  if (!vm.ok()) return Fail(vm.status());
  if (absl::Status s = (*vm)->Boot(); !s.ok()) return Fail(s);
  thaw::cli::ProgressBar bar("snapshot");
  args.snapshot.progress = [&bar](uint64_t done, uint64_t total) {
    bar.Update(done, total);
  };
  if (absl::Status s = (*vm)->Snapshot(args.output, args.snapshot); !s.ok()) {
    return Fail(s);
  }
  auto info = thaw::InspectSnapshot(args.output);
  if (!info.ok()) return Fail(info.status());
  std::fprintf(stderr, "--- phase report ---\n%s",
               (*vm)->report().ToString().c_str());
  std::fprintf(
      stderr, "thaw: wrote %s: %llu bytes for %llu bytes of memory (%.1fx)\n",
      args.output.c_str(), static_cast<unsigned long long>(info->file_size),
      static_cast<unsigned long long>(info->memory_size),
      info->compression_ratio());
  return 0;
}

int Restore(thaw::cli::Args args) {
  if (!args.verify_key_file.empty()) {
    auto key = thaw::VerifyKey::Load(args.verify_key_file);
    if (!key.ok()) return Fail(key.status());
    args.restore.verify_key = *key;
  }
  std::optional<thaw::SigningKey> resign;
  if (!args.signing_key_file.empty()) {
    auto key = thaw::SigningKey::Load(args.signing_key_file);
    if (!key.ok()) return Fail(key.status());
    resign = *std::move(key);
  }
  // A URL: through a handle, so that what the store cost can be shown.
  std::optional<thaw::Snapshot> remote;
  if (thaw::IsRemoteLocation(args.target)) {
    thaw::OpenOptions open;
    open.key = args.restore.verify_key;
    auto snapshot = thaw::Snapshot::Open(args.target, open);
    if (!snapshot.ok()) return Fail(snapshot.status());
    remote = *std::move(snapshot);
  }
  auto vm = remote.has_value() ? remote->Restore(args.restore)
                               : thaw::Vm::Restore(args.target, args.restore);
  if (!vm.ok()) return Fail(vm.status());
  SayBackend(**vm);
  int code = CallAndReport(**vm, args, absl::OkStatus());
  const thaw::RestoreStats stats = (*vm)->restore_stats();
  std::fprintf(stderr,
               "restore: engine %s, %llu faults (+%llu waiting on prefetch), "
               "%llu chunks read (%llu bytes), %llu prefetched, %llu mapped "
               "(%llu pages populated, %llu made private), memory in %s "
               "pages\n",
               std::string(thaw::RestoreEngineName(stats.engine)).c_str(),
               static_cast<unsigned long long>(stats.faults),
               static_cast<unsigned long long>(stats.prefetch_waits),
               static_cast<unsigned long long>(stats.chunks_read),
               static_cast<unsigned long long>(stats.bytes_read),
               static_cast<unsigned long long>(stats.prefetched),
               static_cast<unsigned long long>(stats.mapped),
               static_cast<unsigned long long>(stats.populated_pages),
               static_cast<unsigned long long>(stats.pages_made_private),
               stats.memory_pages.c_str());
  if (remote.has_value()) {
    std::fprintf(stderr, "remote: %s\n",
                 remote->remote_stats().ToString().c_str());
  }
  if (code == 0 && args.record_working_set) {
    absl::Status s = resign.has_value() ? (*vm)->WriteWorkingSet(*resign)
                                        : (*vm)->WriteWorkingSet();
    if (!s.ok()) return Fail(s);
    std::fprintf(stderr, "thaw: working set written into %s\n",
                 args.target.c_str());
  }
  return code;
}

int Inspect(const thaw::cli::Args& args) {
  auto info = thaw::InspectSnapshot(args.target);
  if (!info.ok()) return Fail(info.status());
  std::fputs(info->ToString().c_str(), stdout);
  return 0;
}

int Verify(const thaw::cli::Args& args) {
  std::optional<thaw::VerifyKey> key;
  if (!args.verify_key_file.empty()) {
    auto loaded = thaw::VerifyKey::Load(args.verify_key_file);
    if (!loaded.ok()) return Fail(loaded.status());
    key = *loaded;
  }
  thaw::cli::ProgressBar bar("verify");
  absl::Status s = thaw::VerifySnapshot(
      args.target,
      [&bar](uint64_t done, uint64_t total) { bar.Update(done, total); },
      key.has_value() ? &*key : nullptr);
  if (!s.ok()) return Fail(s);
  if (key.has_value()) {
    std::printf("%s: intact, signed by %s\n", args.target.c_str(),
                key->Name().c_str());
  } else {
    std::printf("%s: intact\n", args.target.c_str());
  }
  return 0;
}

int Push(const thaw::cli::Args& args) {
  if (absl::Status s = thaw::PushSnapshot(args.target, args.destination);
      !s.ok()) {
    return Fail(s);
  }
  std::fprintf(stderr, "thaw: pushed %s to %s\n", args.target.c_str(),
               args.destination.c_str());
  return 0;
}

int Pull(const thaw::cli::Args& args) {
  if (absl::Status s = thaw::PullSnapshot(args.target, args.destination);
      !s.ok()) {
    return Fail(s);
  }
  std::fprintf(stderr, "thaw: pulled %s into %s (checked)\n",
               args.target.c_str(), args.destination.c_str());
  return 0;
}

int Keygen(const thaw::cli::Args& args) {
  auto key = thaw::SigningKey::Generate();
  if (!key.ok()) return Fail(key.status());
  const std::string pub = args.target + ".pub";
  if (absl::Status s = key->Save(args.target); !s.ok()) return Fail(s);
  if (absl::Status s = key->verify_key().Save(pub); !s.ok()) return Fail(s);
  std::fprintf(stderr,
               "thaw: wrote the signing key %s (keep it secret) and the "
               "verify key %s\n",
               args.target.c_str(), pub.c_str());
  std::printf("%s\n", key->verify_key().Name().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> argv_list(argv + 1, argv + argc);
  if (argv_list.empty() || argv_list[0] == "--help" || argv_list[0] == "-h") {
    std::fputs(kUsage, argv_list.empty() ? stderr : stdout);
    return argv_list.empty() ? 2 : 0;
  }
  auto args = thaw::cli::ParseArgs(argv_list);
  if (!args.ok()) {
    std::fprintf(stderr, "thaw %s: %s\n%s", argv_list[0].c_str(),
                 std::string(args.status().message()).c_str(), kUsage);
    return 2;
  }
  if (args->command == "run") return Run(*args);
  if (args->command == "boot") return Boot(*args);
  if (args->command == "snapshot") {
    return args->config.guest_kind == thaw::GuestKind::kLinuxVm
               ? Boot(*args)
               : Snapshot(*args);
  }
  if (args->command == "restore") return Restore(*args);
  if (args->command == "inspect") return Inspect(*args);
  if (args->command == "keygen") return Keygen(*args);
  if (args->command == "push") return Push(*args);
  if (args->command == "pull") return Pull(*args);
  return Verify(*args);
}
