// The monitor: Vm::Impl (lib/vm_impl.h) ties guest memory, a backend, the
// boot state, the ELF loader and the hypercall dispatcher together and runs
// the vCPU loop. Snapshots, restores and resets are in lib/vm_snapshot.cc.
#include "thaw/vm.h"

#include <sys/random.h>

#include <cerrno>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "lib/backend/backend.h"
#include "lib/elf_loader.h"
#include "lib/errno_status.h"
#include "lib/vm_impl.h"
#include "lib/watchdog.h"
#include "thaw/errors.h"

namespace thaw {
namespace {

constexpr uint64_t kMinMemory = 4ull << 20;

uint64_t AlignDown(uint64_t value, uint64_t alignment) {
  return value & ~(alignment - 1);
}
uint64_t AlignUp(uint64_t value, uint64_t alignment) {
  return AlignDown(value + alignment - 1, alignment);
}

}  // namespace

absl::StatusOr<Layout> ComputeLayout(const VmConfig& c) {
  if (c.memory_size < kMinMemory || c.memory_size > x86::kMaxMemorySize ||
      c.memory_size % (2ull << 20) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "VmConfig.memory_size %d: must be a multiple of 2 MiB from 4 MiB to "
        "64 GiB",
        c.memory_size));
  }
  if (c.vcpu_count != 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "VmConfig.vcpu_count %d: function guests run on exactly 1 vCPU",
        c.vcpu_count));
  }
  if (c.call_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("VmConfig.call_timeout must be positive");
  }
  if (c.stack_size < kGuestPage || c.input_buffer_size == 0 ||
      c.output_buffer_size == 0 || c.console_limit == 0) {
    return absl::InvalidArgumentError(
        "VmConfig: stack_size must be at least 4 KiB, and the buffer sizes "
        "and console_limit must be positive");
  }
  const uint64_t room = c.memory_size - THAW_IMAGE_BASE;
  const uint64_t wanted = AlignUp(c.stack_size, kGuestPage) +
                          AlignUp(c.input_buffer_size, kGuestPage) +
                          AlignUp(c.output_buffer_size, kGuestPage);
  if (c.stack_size > room || c.input_buffer_size > room ||
      c.output_buffer_size > room || wanted >= room) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "VmConfig: stack (%d) + input buffer (%d) + output buffer (%d) bytes "
        "do not fit in %d bytes of guest memory above the image base",
        c.stack_size, c.input_buffer_size, c.output_buffer_size, room));
  }
  Layout layout;
  layout.stack_top = c.memory_size;
  layout.input_addr =
      AlignDown(layout.stack_top - AlignUp(c.stack_size, kGuestPage) -
                    c.input_buffer_size,
                kGuestPage);
  layout.output_addr =
      AlignDown(layout.input_addr - c.output_buffer_size, kGuestPage);
  return layout;
}

absl::Status CheckKvm() { return backend::KvmRunsGuests(); }

absl::string_view BackendName(BackendKind kind) {
  switch (kind) {
    case BackendKind::kAuto:
      return "auto";
    case BackendKind::kKvm:
      return "kvm";
    case BackendKind::kEmulated:
      return "emulated";
  }
  return "unknown";
}

absl::StatusOr<BackendKind> ParseBackendName(absl::string_view name) {
  for (BackendKind kind :
       {BackendKind::kAuto, BackendKind::kKvm, BackendKind::kEmulated}) {
    if (name == BackendName(kind)) return kind;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown backend \"", name, "\" (expected auto, kvm or emulated)"));
}

std::string PhaseReport::ToString() const {
  auto ms = [](absl::Duration d) { return absl::ToDoubleMilliseconds(d); };
  std::string out = absl::StrFormat("backend: %s\ncreate: %.3f ms\n",
                                    BackendName(backend), ms(create));
  if (restore != absl::ZeroDuration()) {
    absl::StrAppendFormat(&out, "restore: %.3f ms\n", ms(restore));
  } else {
    absl::StrAppendFormat(&out, "load: %.3f ms\nboot+init: %.3f ms\n", ms(load),
                          ms(boot));
  }
  absl::StrAppendFormat(&out, "calls: %d (last %.3f ms, total %.3f ms)\n",
                        calls, ms(last_call), ms(total_calls));
  if (snapshot != absl::ZeroDuration()) {
    absl::StrAppendFormat(&out, "snapshot: %.3f ms\n", ms(snapshot));
  }
  if (reset != absl::ZeroDuration()) {
    absl::StrAppendFormat(&out, "reset: %.3f ms\n", ms(reset));
  }
  return out;
}

absl::Status Vm::Impl::LoadImage(absl::Span<const uint8_t> elf,
                                 absl::string_view name) {
  if (state_ != State::kCreated) {
    return absl::FailedPreconditionError(
        "LoadGuest: a guest is already loaded in this Vm");
  }
  absl::Time start = absl::Now();
  auto image =
      LoadElf(elf, name, *memory_, THAW_IMAGE_BASE, layout_.output_addr);
  if (!image.ok()) return image.status();
  symbols_ = std::move(image->symbols);
  guest_name_ = std::string(name);

  auto info = memory_->As<thaw_boot_info>(THAW_BOOT_INFO_ADDR, "boot info");
  if (!info.ok()) return info.status();
  boot_info_ = *info;
  *boot_info_ = thaw_boot_info{};
  boot_info_->magic = THAW_BOOT_INFO_MAGIC;
  boot_info_->abi_version = THAW_ABI_VERSION;
  boot_info_->memory_size = config_.memory_size;
  boot_info_->heap_start = AlignUp(image->image_end, kGuestPage);
  boot_info_->heap_end = layout_.output_addr;
  boot_info_->input_addr = layout_.input_addr;
  boot_info_->input_capacity = config_.input_buffer_size;
  boot_info_->output_addr = layout_.output_addr;
  boot_info_->output_capacity = config_.output_buffer_size;
  boot_info_->stack_top = layout_.stack_top;
  boot_info_->restore_generation = 0;
  if (getrandom(boot_info_->entropy, sizeof(boot_info_->entropy), 0) !=
      static_cast<ssize_t>(sizeof(boot_info_->entropy))) {
    return ErrnoStatus("getrandom for guest entropy", errno);
  }

  backend::VcpuState state = boot_state_;
  state.rip = image->entry;
  state.rsp = layout_.stack_top;
  state.rdi = THAW_BOOT_INFO_ADDR;
  if (absl::Status s = backend_->SetState(state); !s.ok()) return s;
  state_ = State::kLoaded;
  std::lock_guard<std::mutex> lock(report_mutex_);
  report_.load = absl::Now() - start;
  return absl::OkStatus();
}

absl::Status Vm::Impl::Boot() {
  if (state_ != State::kLoaded) {
    return absl::FailedPreconditionError(
        state_ == State::kCreated
            ? "Boot: no guest loaded (call LoadGuest first)"
            : "Boot: the guest was already booted");
  }
  absl::Time start = absl::Now();
  dispatcher_.Begin(/*in_call=*/false);
  absl::Status status = RunGuest("boot");
  {
    std::lock_guard<std::mutex> lock(report_mutex_);
    report_.boot = absl::Now() - start;
  }
  if (!status.ok()) return Failed(status);
  const auto& outcome = dispatcher_.outcome();
  if (outcome.kind == HypercallDispatcher::Outcome::Kind::kFailed) {
    return Failed(outcome.error);
  }
  state_ = State::kReady;
  return absl::OkStatus();
}

absl::StatusOr<std::string> Vm::Impl::Call(absl::string_view function,
                                           absl::string_view input) {
  if (state_ == State::kFailed) {
    return absl::FailedPreconditionError(
        absl::StrCat("this Vm failed earlier and accepts no more calls: ",
                     failure_.message()));
  }
  if (state_ != State::kReady) {
    return absl::FailedPreconditionError("Call: the guest has not been booted");
  }
  if (function.empty() || function.size() > THAW_FUNCTION_NAME_MAX ||
      function.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "function name \"%s\": must be 1 to %d bytes without NUL",
        function.substr(0, 80), THAW_FUNCTION_NAME_MAX));
  }
  if (input.size() > config_.input_buffer_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "call \"%s\": input of %d bytes exceeds the input buffer size of %d "
        "bytes (VmConfig::input_buffer_size)",
        function, input.size(), config_.input_buffer_size));
  }
  absl::Time start = absl::Now();
  if (!input.empty()) {
    if (absl::Status s = memory_->Write(
            layout_.input_addr,
            absl::Span<const uint8_t>(
                reinterpret_cast<const uint8_t*>(input.data()), input.size()),
            "call input");
        !s.ok()) {
      return s;
    }
  }
  boot_info_->request = THAW_REQUEST_CALL;
  std::memset(boot_info_->function_name, 0, sizeof(boot_info_->function_name));
  std::memcpy(boot_info_->function_name, function.data(), function.size());
  boot_info_->input_size = input.size();

  dispatcher_.Begin(/*in_call=*/true);
  absl::Status status = RunGuest(absl::StrCat("call \"", function, "\""));
  if (status.ok() && pager_) {
    // Chunks mapped from the file must have passed their check before a
    // result computed from them leaves the Vm.
    status = pager_->WaitForVerification();
    if (!status.ok()) {
      status = absl::Status(
          status.code(),
          absl::StrCat("call \"", function, "\": ", status.message()));
    }
  }
  RecordCall(absl::Now() - start);
  if (recording_) {
    working_set_ = pager_->StopRecording();
    recording_ = false;
  }
  if (!status.ok()) return Failed(status);

  const auto& outcome = dispatcher_.outcome();
  if (outcome.kind == HypercallDispatcher::Outcome::Kind::kFailed) {
    absl::Status error(
        outcome.error.code(),
        absl::StrCat("call \"", function, "\": ", outcome.error.message()));
    if (!outcome.vm_usable) return Failed(error);
    return error;
  }
  if (outcome.reply_status == THAW_REPLY_NO_SUCH_FUNCTION) {
    return absl::NotFoundError(
        absl::StrCat("guest has no function \"", function, "\""));
  }
  if (outcome.reply_status != 0) {
    return absl::AbortedError(absl::StrFormat(
        "call \"%s\": guest function failed with status %d: %s", function,
        outcome.reply_status, outcome.reply.substr(0, 1024)));
  }
  return outcome.reply;
}

absl::Duration Vm::Impl::WaitWhilePaused() {
  std::unique_lock<std::mutex> lock(pause_mutex_);
  if (!paused_) return absl::ZeroDuration();
  absl::Time start = absl::Now();
  resumed_.wait(lock, [this] { return !paused_; });
  return absl::Now() - start;
}

absl::Status Vm::Impl::RunGuest(absl::string_view what) {
  // A chunk that failed its checksum while the host wrote the call's input
  // (or earlier) means the guest must not run at all.
  if (absl::Status memory = MemoryError(); !memory.ok()) {
    return absl::Status(memory.code(),
                        absl::StrCat(what, ": ", memory.message()));
  }
  backend_->ClearInterrupt();
  timed_out_.store(false);
  // A Pause() that came before ClearInterrupt() would be lost; re-raise it.
  if (paused()) backend_->Interrupt();
  absl::Time deadline = absl::Now() + config_.call_timeout;
  auto arm = [this](absl::Time when) {
    return Watchdog::Global().Arm(when, [this] {
      timed_out_.store(true);
      backend_->Interrupt();
    });
  };
  uint64_t watch = arm(deadline);
  absl::Status status;
  while (true) {
    absl::StatusOr<backend::Exit> exit = backend_->Run(dispatcher_);
    if (!exit.ok()) {
      status = exit.status();
      break;
    }
    if (absl::Status memory = MemoryError(); !memory.ok()) {
      status = absl::Status(memory.code(),
                            absl::StrCat(what, ": ", memory.message()));
      break;
    }
    if (exit->reason != backend::Exit::Reason::kInterrupted) {
      status = ExitToStatus(*exit, what);
      break;
    }
    if (paused()) {
      Watchdog::Global().Disarm(watch);
      deadline += WaitWhilePaused();
      timed_out_.store(false);
      backend_->ClearInterrupt();
      watch = arm(deadline);
      continue;
    }
    if (timed_out_.load() && absl::Now() >= deadline) {
      status = absl::DeadlineExceededError(absl::StrFormat(
          "%s: guest ran past the %s timeout (stopped at RIP 0x%x)", what,
          absl::FormatDuration(config_.call_timeout), exit->rip));
      break;
    }
    backend_->ClearInterrupt();  // a Pause/Resume that raced; keep running
  }
  Watchdog::Global().Disarm(watch);
  return status;
}

absl::Status Vm::Impl::ExitToStatus(const backend::Exit& exit,
                                    absl::string_view what) {
  using Reason = backend::Exit::Reason;
  switch (exit.reason) {
    case Reason::kStopped:
      return absl::OkStatus();
    case Reason::kException: {
      absl::Status status = absl::AbortedError(absl::StrFormat(
          "%s: guest exception %s (vector %d) at RIP 0x%x, CR2 0x%x%s", what,
          backend::ExceptionName(exit.vector), exit.vector, exit.rip, exit.cr2,
          exit.has_error_code
              ? absl::StrFormat(", error code 0x%x", exit.error_code)
              : ""));
      SetGuestFault(status,
                    {exit.vector, exit.rip, exit.cr2, exit.error_code, false});
      return status;
    }
    case Reason::kShutdown: {
      absl::Status status = absl::AbortedError(absl::StrFormat(
          "%s: guest triple fault (shutdown) at RIP 0x%x", what, exit.rip));
      SetGuestFault(status, {8, exit.rip, 0, 0, true});
      return status;
    }
    case Reason::kHalt:
      return absl::AbortedError(absl::StrFormat(
          "%s: guest halted the CPU at RIP 0x%x", what, exit.rip));
    case Reason::kUnhandledIo:
      return absl::AbortedError(absl::StrFormat(
          "%s: guest accessed unknown I/O port 0x%x at RIP 0x%x", what,
          exit.address, exit.rip));
    case Reason::kUnmappedMemory:
      return absl::AbortedError(absl::StrFormat(
          "%s: guest accessed guest-physical address 0x%x outside its %d "
          "bytes of memory (RIP 0x%x)",
          what, exit.address, config_.memory_size, exit.rip));
    case Reason::kInterrupted:
    case Reason::kInternalError:
      break;
  }
  return absl::InternalError(
      absl::StrFormat("%s: %s backend failed at RIP 0x%x: %s", what,
                      BackendName(backend_->kind()), exit.rip, exit.detail));
}
Vm::Vm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Vm::~Vm() = default;

absl::StatusOr<std::unique_ptr<Vm>> Vm::Create(const VmConfig& config) {
  auto layout = ComputeLayout(config);
  if (!layout.ok()) return layout.status();
  auto memory = GuestMemory::Create(config.memory_size);
  if (!memory.ok()) return memory.status();
  auto impl = std::make_unique<Impl>(config, *layout, *std::move(memory));
  if (absl::Status s = impl->Init(); !s.ok()) return s;
  return std::unique_ptr<Vm>(new Vm(std::move(impl)));
}
BackendKind Vm::backend() const { return impl_->backend(); }
const VmConfig& Vm::config() const { return impl_->config(); }

absl::Status Vm::LoadGuest(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file)
    return ErrnoStatus(absl::StrCat("open guest \"", path, "\""), errno);
  std::string bytes((std::istreambuf_iterator<char>(file)),
                    std::istreambuf_iterator<char>());
  if (file.bad())
    return ErrnoStatus(absl::StrCat("read guest \"", path, "\""), errno);
  return impl_->LoadImage(
      absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()),
                                bytes.size()),
      path);
}

absl::Status Vm::LoadGuestImage(absl::Span<const uint8_t> elf,
                                absl::string_view name) {
  return impl_->LoadImage(elf, name);
}

absl::Status Vm::Boot() { return impl_->Boot(); }

absl::StatusOr<std::string> Vm::Call(absl::string_view function,
                                     absl::string_view input) {
  return impl_->Call(function, input);
}

absl::Status Vm::RegisterHostFunction(std::string name, HostFunction fn) {
  if (name.empty() || !fn) {
    return absl::InvalidArgumentError(
        "RegisterHostFunction: name and function must be non-empty");
  }
  impl_->Register(std::move(name), std::move(fn));
  return absl::OkStatus();
}

void Vm::Pause() { impl_->Pause(); }
void Vm::Resume() { impl_->Resume(); }
bool Vm::paused() const { return impl_->paused(); }
std::string Vm::console() const { return impl_->console(); }
PhaseReport Vm::report() const { return impl_->report(); }

absl::StatusOr<std::string> Vm::ReadGuestMemory(uint64_t address,
                                                uint64_t size) const {
  return impl_->ReadMemory(address, size);
}

absl::StatusOr<uint64_t> Vm::FindGuestSymbol(absl::string_view name) const {
  return impl_->FindSymbol(name);
}

}  // namespace thaw
