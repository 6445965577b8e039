#include "lib/linux/linux_program.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/linux/program_image.h"
#include "lib/x86/user_mode.h"
#include "snapshot/manifest.pb.h"
#include "thaw/abi.h"
#include "thaw/program.h"

namespace thaw {
namespace {

constexpr uint64_t kMinStack = 1ull << 20;
constexpr uint64_t kMinMemory = 8ull << 20;
constexpr uint64_t kMaxFunctionName = 4096;

uint64_t StackSize(const VmConfig& config) {
  return std::max(config.stack_size, kMinStack);
}

}  // namespace

absl::Status CheckProgramConfig(const VmConfig& c) {
  if (c.memory_size < kMinMemory || c.memory_size > (64ull << 30) ||
      c.memory_size % (2ull << 20) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "VmConfig.memory_size %d: a Linux program needs a multiple of 2 MiB "
        "from 8 MiB to 64 GiB",
        c.memory_size));
  }
  if (c.call_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("VmConfig.call_timeout must be positive");
  }
  if (c.input_buffer_size == 0 || c.output_buffer_size == 0 ||
      c.console_limit == 0) {
    return absl::InvalidArgumentError(
        "VmConfig: the buffer sizes and console_limit must be positive");
  }
  if (StackSize(c) >= c.memory_size / 2) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "VmConfig.stack_size %d: more than half of guest memory",
        c.stack_size));
  }
  return absl::OkStatus();
}

std::vector<FileMount> SavedMounts(const snapshot::proto::LinuxProgram& saved) {
  std::vector<FileMount> mounts;
  for (const auto& mount : saved.mounts()) {
    mounts.push_back({mount.host_path(), mount.guest_path()});
  }
  return mounts;
}

absl::Status LinuxProgram::Load(absl::Span<const uint8_t> elf,
                                absl::string_view name,
                                const ProgramOptions& options,
                                backend::Backend& backend) {
  if (!options.files.empty()) {
    auto view = linux_abi::MakeFileSource(options.files);
    if (!view.ok()) return view.status();
    view_ = *std::move(view);
    mounts_ = options.files;
  }
  const uint64_t stack_top = memory_.size();
  const uint64_t stack_limit = stack_top - StackSize(config_);
  auto image = linux_abi::LoadProgram(elf, name, memory_, x86::kUserMemoryStart,
                                      stack_limit);
  if (!image.ok()) return image.status();
  linux_abi::ProgramHost& host = *this;
  syscalls_ = std::make_unique<linux_abi::Syscalls>(
      memory_, host,
      linux_abi::Syscalls::Layout{image->image_end, stack_limit,
                                  StackSize(config_)},
      view_, options.cwd);
  uint64_t entry = image->entry;
  uint64_t interpreter_base = 0;
  if (!image->interpreter.empty()) {
    auto interpreter = LoadInterpreter(name, image->interpreter);
    if (!interpreter.ok()) return interpreter.status();
    interpreter_base = interpreter->first;
    entry = interpreter->second;
  }
  std::vector<std::string> argv = options.args;
  if (argv.empty()) argv.push_back(std::string(name));
  uint8_t random[16];
  if (getrandom(random, sizeof(random), 0) != sizeof(random)) {
    return absl::InternalError("getrandom for AT_RANDOM failed");
  }
  auto rsp =
      linux_abi::BuildInitialStack(memory_, stack_top, stack_limit, *image,
                                   interpreter_base, argv, options.env, random);
  if (!rsp.ok()) return rsp.status();
  auto state = x86::BuildUserModeBootState(memory_, entry, *rsp);
  if (!state.ok()) return state.status();
  if (absl::Status s = backend.SetState(*state); !s.ok()) return s;
  name_ = std::string(name);
  return absl::OkStatus();
}

absl::StatusOr<std::pair<uint64_t, uint64_t>> LinuxProgram::LoadInterpreter(
    absl::string_view program, const std::string& path) {
  auto refuse = [&](absl::string_view why) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "program \"%s\" is dynamically linked and needs its interpreter "
        "%s, %s (give it a file view that holds it: ProgramOptions::files)",
        program, path, why));
  };
  if (view_ == nullptr) return refuse("but it has no file view");
  auto file = view_->Open("/", path, O_RDONLY);
  if (!file.ok() || file->virtual_dir) {
    return refuse(
        absl::StrCat("which it cannot open: ",
                     file.ok() ? "a directory" : file.status().message()));
  }
  struct stat st;
  if (fstat(file->fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      st.st_size > (64 << 20)) {
    return refuse("which is not a regular file of at most 64 MiB");
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  for (size_t done = 0; done < bytes.size();) {
    ssize_t n = pread(file->fd.get(), bytes.data() + done, bytes.size() - done,
                      static_cast<off_t>(done));
    if (n <= 0) return refuse("which cannot be read");
    done += static_cast<size_t>(n);
  }
  const absl::Span<const uint8_t> elf(
      reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  auto span = linux_abi::LoadSpan(elf, path);
  if (!span.ok()) return span.status();
  // Placed among the program's mappings, as Linux puts ld.so at mmap base.
  const uint64_t base = syscalls_->Reserve(*span);
  if (base == 0) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "program \"%s\": no room in guest memory for its interpreter %s",
        program, path));
  }
  auto image =
      linux_abi::LoadProgram(elf, path, memory_, base, base + *span, base);
  if (!image.ok()) return image.status();
  if (!image->interpreter.empty()) {
    return refuse("which itself names an interpreter");
  }
  return std::make_pair(base, image->entry);
}

absl::Status LinuxProgram::BeginBoot() {
  request_ = Request::kBoot;
  return absl::OkStatus();
}

absl::Status LinuxProgram::Send(uint16_t kind, absl::string_view name,
                                absl::string_view input) {
  thaw_program_request header{};
  header.magic = THAW_PROGRAM_REQUEST_MAGIC;
  header.kind = kind;
  header.flags = restored_ ? THAW_PROGRAM_FLAG_RESTORED : 0;
  header.name_size = static_cast<uint32_t>(name.size());
  header.input_size = static_cast<uint32_t>(input.size());
  pending_.assign(reinterpret_cast<const char*>(&header), sizeof(header));
  pending_.append(name.data(), name.size());
  pending_.append(input.data(), input.size());
  pending_at_ = 0;
  reply_.clear();
  reply_too_large_ = false;
  restored_ = false;
  if (!parked_) {
    return absl::FailedPreconditionError(
        "the program is not waiting for a request");
  }
  parked_ = false;
  return backend_->SetReturnValue(Deliver(parked_address_, parked_size_));
}

uint64_t LinuxProgram::Deliver(uint64_t address, uint64_t size) {
  const uint64_t n = std::min<uint64_t>(size, pending_.size() - pending_at_);
  // Checked by the syscall layer; Write journals it for Reset.
  (void)memory_.Write(
      address,
      absl::MakeConstSpan(
          reinterpret_cast<const uint8_t*>(pending_.data() + pending_at_), n),
      "request");
  pending_at_ += n;
  return n;
}

absl::Status LinuxProgram::BeginCall(absl::string_view function,
                                     absl::string_view input) {
  if (function.empty() || function.size() > kMaxFunctionName) {
    return absl::InvalidArgumentError(
        absl::StrFormat("function name \"%s\": must be 1 to %d bytes",
                        function.substr(0, 80), kMaxFunctionName));
  }
  if (input.size() > config_.input_buffer_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "call \"%s\": input of %d bytes exceeds the input buffer size of %d "
        "bytes (VmConfig::input_buffer_size)",
        function, input.size(), config_.input_buffer_size));
  }
  request_ = Request::kCall;
  function_ = std::string(function);
  return Send(THAW_PROGRAM_CALL, function, input);
}

absl::Status LinuxProgram::BeginBeforeSnapshot() {
  request_ = Request::kBeforeSnapshot;
  return Send(THAW_PROGRAM_BEFORE_SNAPSHOT, "", "");
}

backend::SyscallResult LinuxProgram::ReadRequest(uint64_t address,
                                                 uint64_t size) {
  backend::SyscallResult result;
  if (pending_at_ < pending_.size()) {
    result.value = Deliver(address, size);
    return result;
  }
  // Nothing left to read: the program waits for the next request. The run
  // stops here; Send() gives this read its bytes.
  parked_ = true;
  parked_address_ = address;
  parked_size_ = size;
  result.park = true;
  return result;
}

int64_t LinuxProgram::WriteReply(absl::Span<const uint8_t> bytes) {
  if (request_ != Request::kCall && request_ != Request::kBeforeSnapshot) {
    return -EPIPE;  // no request to answer
  }
  const uint64_t limit =
      config_.output_buffer_size + sizeof(thaw_program_reply);
  if (reply_.size() + bytes.size() > limit) {
    reply_too_large_ = true;
  } else {
    reply_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  return static_cast<int64_t>(bytes.size());
}

backend::HypercallResult LinuxProgram::Handle(const backend::Hypercall&) {
  // Ring 3 cannot reach the hypercall port (no I/O privilege); this is
  // never called, and would end the run if it were.
  return {0, true};
}

backend::SyscallResult LinuxProgram::HandleSyscall(
    const backend::Syscall& call) {
  backend::SyscallResult result = syscalls_->Dispatch(call);
  if (config_.trace_syscalls) {
    std::string line =
        absl::StrFormat("[syscall] %s(0x%x, 0x%x, 0x%x, 0x%x) = ",
                        linux_abi::Syscalls::Name(call.number), call.args[0],
                        call.args[1], call.args[2], call.args[3]);
    const int64_t value = static_cast<int64_t>(result.value);
    if (result.park) {
      absl::StrAppend(&line, "? (waits for a request)");
    } else if (value < 0 && value > -4096) {
      absl::StrAppendFormat(&line, "-%d %s", -value, strerror(-value));
    } else {
      absl::StrAppendFormat(&line, "0x%x", result.value);
    }
    console_.Write(line + "\n");
  }
  return result;
}

GuestRuntime::Outcome LinuxProgram::Finish(absl::string_view what) {
  const Request request = std::exchange(request_, Request::kNone);
  if (syscalls_->exited()) {
    return {absl::AbortedError(
                absl::StrFormat("%s: the program exited with status %d", what,
                                syscalls_->exit_status())),
            false};
  }
  if (!syscalls_->fatal().ok()) {
    return {
        absl::Status(syscalls_->fatal().code(),
                     absl::StrCat(what, ": ", syscalls_->fatal().message())),
        false};
  }
  if (!parked_) {
    return {absl::InternalError(absl::StrCat(
                what, ": the program stopped without waiting for a request")),
            false};
  }
  if (request == Request::kBoot || request == Request::kNone) {
    return {std::string(), true};
  }
  if (reply_too_large_) {
    return {absl::ResourceExhaustedError(absl::StrFormat(
                "%s: the program's reply exceeds the output buffer size of %d "
                "bytes (VmConfig::output_buffer_size)",
                what, config_.output_buffer_size)),
            true};
  }
  thaw_program_reply header{};
  if (reply_.size() < sizeof(header)) {
    return {absl::InvalidArgumentError(absl::StrFormat(
                "%s: the program read its next request after writing %d "
                "bytes, not a whole reply (include/thaw/program.h)",
                what, reply_.size())),
            true};
  }
  std::memcpy(&header, reply_.data(), sizeof(header));
  const uint64_t body = reply_.size() - sizeof(header);
  if (header.magic != THAW_PROGRAM_REPLY_MAGIC || header.size != body) {
    return {absl::InvalidArgumentError(absl::StrFormat(
                "%s: malformed reply (magic 0x%x, size %d, %d bytes after "
                "the header)",
                what, header.magic, header.size, body)),
            true};
  }
  std::string bytes = reply_.substr(sizeof(header));
  if (request == Request::kBeforeSnapshot) {
    if (header.status != 0) {
      return {
          absl::AbortedError(absl::StrFormat(
              "before-snapshot hook replied with status %d", header.status)),
          true};
    }
    return {std::string(), true};
  }
  if (header.status == THAW_PROGRAM_NO_SUCH_FUNCTION) {
    return {absl::NotFoundError(absl::StrCat(
                "program \"", name_, "\" has no function \"", function_, "\"")),
            true};
  }
  if (header.status != 0) {
    return {absl::AbortedError(absl::StrFormat(
                "%s: the program's function failed with status %d: %s", what,
                header.status, bytes.substr(0, 1024))),
            true};
  }
  return {std::move(bytes), true};
}

std::string LinuxProgram::ConsoleTail() const {
  std::string text = console_.Contents();
  if (text.empty()) return "";
  constexpr size_t kTail = 600;
  if (text.size() > kTail) {
    text = absl::StrCat("...", text.substr(text.size() - kTail));
  }
  return absl::StrCat("; its last output:\n", text);
}

absl::Status LinuxProgram::Save(snapshot::proto::Manifest& m) const {
  if (syscalls_ == nullptr || !parked_) {
    return absl::FailedPreconditionError(
        "Snapshot: the program is not parked in a read of its request "
        "channel");
  }
  m.mutable_config()->set_memory_size(config_.memory_size);
  m.mutable_config()->set_input_buffer_size(config_.input_buffer_size);
  m.mutable_config()->set_output_buffer_size(config_.output_buffer_size);
  m.mutable_config()->set_stack_size(config_.stack_size);
  m.mutable_config()->set_guest_kind(1);
  m.mutable_abi()->set_abi_version(THAW_ABI_VERSION);
  m.mutable_abi()->set_restore_generation(generation_);
  m.mutable_abi()->set_guest_name(name_);
  snapshot::proto::LinuxProgram& p = *m.mutable_program();
  p.set_name(name_);
  syscalls_->Save(p);
  for (const FileMount& mount : mounts_) {
    auto* saved = p.add_mounts();
    saved->set_host_path(mount.host_path);
    saved->set_guest_path(mount.guest_path.empty() ? mount.host_path
                                                   : mount.guest_path);
  }
  p.set_parked_address(parked_address_);
  p.set_parked_size(parked_size_);
  p.set_restore_generation(generation_);
  return absl::OkStatus();
}

absl::Status LinuxProgram::Restore(const snapshot::proto::Manifest& m,
                                   absl::string_view path) {
  auto corrupt = [&](absl::string_view what) {
    return absl::DataLossError(
        absl::StrCat("snapshot \"", path, "\": Linux program state: ", what));
  };
  if (!m.has_program()) return corrupt("missing");
  const snapshot::proto::LinuxProgram& p = m.program();
  const uint64_t size = memory_.size();
  if (p.brk_start() < x86::kUserMemoryStart || p.brk_start() > p.mmap_top() ||
      p.mmap_top() > size || p.stack_size() > size ||
      p.parked_address() < x86::kUserMemoryStart || p.parked_address() > size ||
      p.parked_size() > size - p.parked_address()) {
    return corrupt("layout outside guest memory");
  }
  name_ = p.name();
  generation_ = p.restore_generation();
  mounts_ = SavedMounts(p);
  if (!mounts_.empty()) {
    auto view = linux_abi::MakeFileSource(mounts_);
    if (!view.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("restore \"", path, "\": ", view.status().message()));
    }
    view_ = *std::move(view);
  }
  saved_ = std::make_unique<snapshot::proto::LinuxProgram>(p);
  return Rewind();
}

absl::Status LinuxProgram::Rewind() {
  if (saved_ == nullptr) {
    return absl::FailedPreconditionError("the program was not restored");
  }
  const snapshot::proto::LinuxProgram& p = *saved_;
  linux_abi::ProgramHost& host = *this;
  auto syscalls = std::make_unique<linux_abi::Syscalls>(
      memory_, host,
      linux_abi::Syscalls::Layout{p.brk_start(), p.mmap_top(), p.stack_size()},
      view_, p.cwd());
  if (absl::Status s = syscalls->Restore(p, name_); !s.ok()) return s;
  syscalls_ = std::move(syscalls);
  parked_ = true;
  parked_address_ = p.parked_address();
  parked_size_ = p.parked_size();
  pending_.clear();
  pending_at_ = 0;
  reply_.clear();
  request_ = Request::kNone;
  return absl::OkStatus();
}

VcpuState LinuxProgram::SnapshotState(const VcpuState& live) const {
  return x86::AsUserState(live);
}

absl::StatusOr<VcpuState> LinuxProgram::ResumeState(const VcpuState& saved) {
  if ((saved.cs.selector & 3) != 3) {
    return absl::DataLossError(
        "a Linux program snapshot whose vCPU is not in user mode");
  }
  return x86::ResumeThroughEntryPage(memory_, saved);
}

ProgramStats LinuxProgram::program_stats() const {
  ProgramStats stats;
  if (syscalls_ == nullptr) return stats;
  stats.syscalls = syscalls_->calls();
  for (const auto& [number, count] : syscalls_->unsupported()) {
    stats.unsupported[linux_abi::Syscalls::Name(number)] += count;
  }
  stats.path_escapes = view_ ? view_->escapes() : 0;
  return stats;
}

PageRuns LinuxProgram::HostOwnedPages() const {
  return {{x86::kUserEntryPage / 4096, x86::kUserEntryPage / 4096 + 1}};
}

absl::Status LinuxProgram::NewIdentity(uint64_t generation) {
  generation_ = generation;
  restored_ = true;
  return absl::OkStatus();
}

void LinuxProgram::RegisterHostFunction(std::string, HostFunction) {
  // Accepted so code written for both kinds works; programs have no way to
  // call host functions yet.
}

absl::StatusOr<uint64_t> LinuxProgram::FindSymbol(
    absl::string_view name) const {
  return absl::NotFoundError(absl::StrCat(
      "guest symbol \"", name, "\": symbol lookup is for function guests"));
}

}  // namespace thaw
