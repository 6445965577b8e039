// The monitor's create, load, boot and call paths (VmCore, lib/vm_core.h),
// and the public thaw::Vm, a thin handle over where it lives (VmImpl).
// Snapshots, restores and resets are in lib/vm_snapshot.cc.
#include "thaw/vm.h"

#include <cerrno>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/errno_status.h"
#include "lib/backend/backend.h"
#include "lib/function_guest.h"
#include "lib/linux/linux_program.h"
#include "lib/linuxvm/linux_vm.h"
#include "lib/local_vm.h"
#include "lib/vm_core.h"
#include "lib/vm_internal.h"
#include "lib/worker/worker_client.h"
#include "snapshot/anonymous_memory.h"

namespace thaw {
namespace internal {

VmCore::VmCore(VmConfig config, std::unique_ptr<snapshot::MemorySource> memory)
    : config_(std::move(config)),
      source_(std::move(memory)),
      memory_(GuestMemory::View(source_->base(), source_->size())) {}

VmCore::~VmCore() {
  // The source's threads may still call back into the backend (a damaged
  // chunk interrupts the vCPU), so they stop first; then the runtime, the
  // loop and the backend, which maps the memory; the memory goes last.
  source_->Stop();
  runtime_.reset();
  loop_.reset();
  backend_.reset();
}

absl::Status VmCore::Start(absl::Time start) {
  if (absl::Status s = CheckConfig(config_); !s.ok()) return s;
  auto backend = backend::CreateBackend(config_.backend, *memory_);
  if (!backend.ok()) return backend.status();
  backend_ = *std::move(backend);
  loop_ = std::make_unique<VcpuLoop>(*backend_, config_.call_timeout,
                                     config_.memory_size);
  // The one place the guest kind is chosen (a Linux VM is a whole machine,
  // LinuxVm, chosen in Vm::Create).
  switch (config_.guest_kind) {
    case GuestKind::kFunction:
      runtime_ = std::make_unique<FunctionGuest>(
          config_, *ComputeLayout(config_), *memory_);
      break;
    case GuestKind::kLinuxProgram:
      runtime_ = std::make_unique<LinuxProgram>(config_, *memory_, *backend_);
      break;
    case GuestKind::kLinuxVm:  // a machine of its own (Vm::Create)
      return absl::InternalError("a Linux VM has no VmCore");
  }
  // Damage found by the source stops the guest at once.
  backend::Backend* backend_ptr = backend_.get();
  source_->SetErrorCallback([backend_ptr] { backend_ptr->Interrupt(); });
  std::lock_guard<std::mutex> lock(report_mutex_);
  report_.backend = backend_->kind();
  report_.create = absl::Now() - start;
  return absl::OkStatus();
}

VmCore::Turn::Turn(VmCore& core, absl::string_view operation) : core_(core) {
  if (core.turn_owner_.load() == std::this_thread::get_id()) {
    status_ = absl::FailedPreconditionError(absl::StrCat(
        operation,
        ": called on a Vm from inside its own call (a host function may not "
        "use the Vm that called it)"));
    return;
  }
  core.turn_mutex_.lock();
  core.turn_owner_.store(std::this_thread::get_id());
  held_ = true;
}

VmCore::Turn::~Turn() {
  if (!held_) return;
  core_.turn_owner_.store(std::thread::id());
  core_.turn_mutex_.unlock();
}

PhaseReport VmCore::report() const {
  std::lock_guard<std::mutex> lock(report_mutex_);
  return report_;
}

absl::Status VmCore::Failed(absl::Status error) {
  state_ = State::kFailed;
  failure_ = error;
  return error;
}

absl::Status VmCore::RunGuest(absl::string_view what) {
  return loop_->Run(runtime_->handler(), what,
                    [this] { return source_->error(); });
}

absl::Status VmCore::Load(GuestKind kind, absl::Span<const uint8_t> image,
                          absl::string_view name,
                          const ProgramOptions& options) {
  const char* what = kind == GuestKind::kFunction ? "LoadGuest" : "LoadProgram";
  if (kind != config_.guest_kind) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": this Vm was created for ",
                     config_.guest_kind == GuestKind::kFunction
                         ? "function guests (LoadGuest)"
                         : "Linux programs (LoadProgram)",
                     "; set VmConfig::guest_kind"));
  }
  if (state_ != State::kCreated) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": a guest is already loaded in this Vm"));
  }
  absl::Time start = absl::Now();
  if (absl::Status s = runtime_->Load(image, name, options, *backend_);
      !s.ok()) {
    return s;
  }
  state_ = State::kLoaded;
  Record([&](PhaseReport& r, RestoreStats&) { r.load = absl::Now() - start; });
  return absl::OkStatus();
}

absl::Status VmCore::Boot() {
  if (state_ != State::kLoaded) {
    return absl::FailedPreconditionError(
        state_ == State::kCreated
            ? "Boot: no guest loaded (call LoadGuest first)"
            : "Boot: the guest was already booted");
  }
  absl::Time start = absl::Now();
  absl::Status status = runtime_->BeginBoot();
  if (status.ok()) status = RunGuest("boot");
  Record([&](PhaseReport& r, RestoreStats&) { r.boot = absl::Now() - start; });
  if (!status.ok()) return Failed(status);
  GuestRuntime::Outcome outcome = runtime_->Finish("boot");
  if (!outcome.reply.ok()) return Failed(outcome.reply.status());
  state_ = State::kReady;
  return absl::OkStatus();
}

absl::StatusOr<std::string> VmCore::Call(absl::string_view function,
                                         absl::string_view input) {
  if (state_ == State::kFailed) {
    return absl::FailedPreconditionError(
        absl::StrCat("this Vm failed earlier and accepts no more calls: ",
                     failure_.message()));
  }
  if (state_ != State::kReady) {
    return absl::FailedPreconditionError("Call: the guest has not been booted");
  }
  absl::Time start = absl::Now();
  if (absl::Status s = runtime_->BeginCall(function, input); !s.ok()) {
    return s;
  }
  const std::string what = absl::StrCat("call \"", function, "\"");
  absl::Status status = RunGuest(what);
  // Bytes installed without a check (chunks mapped from the file) must have
  // passed it before a result computed from them leaves the Vm; and a call
  // that failed on damaged bytes (a guest fault in corrupted code, before
  // the check got there) is reported as the damage it was.
  if (absl::Status verified = source_->WaitForVerification(); !verified.ok()) {
    status = absl::Status(verified.code(),
                          absl::StrCat(what, ": ", verified.message()));
  }
  Record([&](PhaseReport& r, RestoreStats&) {
    const absl::Duration d = absl::Now() - start;
    ++r.calls;
    r.last_call = d;
    r.total_calls += d;
  });
  if (recording_) StopRecording();
  if (!status.ok()) return Failed(status);
  GuestRuntime::Outcome outcome = runtime_->Finish(what);
  if (!outcome.reply.ok() && !outcome.vm_usable) {
    return Failed(outcome.reply.status());
  }
  return std::move(outcome.reply);
}

absl::StatusOr<std::string> VmCore::ReadMemory(uint64_t address,
                                               uint64_t size) const {
  auto slice = memory_->Slice(address, size, "ReadGuestMemory");
  if (!slice.ok()) return slice.status();
  return std::string(reinterpret_cast<const char*>(slice->data()),
                     slice->size());
}

}  // namespace internal

absl::Status internal::CheckConfig(const VmConfig& config) {
  if (config.guest_kind != GuestKind::kLinuxVm && config.vcpus != 1) {
    return absl::InvalidArgumentError(
        "VmConfig.vcpus: function guests and Linux programs run on one vCPU "
        "(more are for GuestKind::kLinuxVm)");
  }
  switch (config.guest_kind) {
    case GuestKind::kFunction:
      return ComputeLayout(config).status();
    case GuestKind::kLinuxProgram:
      return CheckProgramConfig(config);
    case GuestKind::kLinuxVm:
      return CheckLinuxVmConfig(config);
  }
  return absl::InvalidArgumentError("VmConfig.guest_kind: unknown kind");
}

absl::Status CheckKvm() { return backend::KvmRunsGuests(); }

namespace internal {

absl::Status VmImpl::LoadKernel(absl::string_view, absl::string_view,
                                absl::string_view, absl::string_view,
                                const LinuxBootOptions&) {
  return absl::FailedPreconditionError(
      "LoadKernel: this Vm was not created for a Linux VM; set "
      "VmConfig::guest_kind to GuestKind::kLinuxVm");
}

absl::StatusOr<size_t> VmImpl::WriteConsole(absl::string_view) {
  return absl::UnimplementedError(
      "WriteConsole: only a Linux VM (GuestKind::kLinuxVm) reads console "
      "input; function guests and Linux programs have none");
}

}  // namespace internal

Vm::Vm(std::unique_ptr<internal::VmImpl> impl) : impl_(std::move(impl)) {}
Vm::~Vm() = default;

absl::StatusOr<std::unique_ptr<Vm>> Vm::Create(const VmConfig& config) {
  absl::Time start = absl::Now();
  if (absl::Status s = internal::CheckConfig(config); !s.ok()) return s;
  std::unique_ptr<internal::VmImpl> impl;
  if (config.guest_kind == GuestKind::kLinuxVm) {
    auto linux_vm = internal::LinuxVm::Create(config);
    if (!linux_vm.ok()) return linux_vm.status();
    impl = *std::move(linux_vm);
  } else if (config.worker_process) {
    auto worker = internal::WorkerClient::Create(config);
    if (!worker.ok()) return worker.status();
    impl = *std::move(worker);
  } else {
    auto memory = snapshot::AnonymousMemory::Create(config.memory_size,
                                                    config.huge_pages);
    if (!memory.ok()) return memory.status();
    auto core = std::make_unique<internal::VmCore>(config, *std::move(memory));
    if (absl::Status s = core->Start(start); !s.ok()) return s;
    impl = std::make_unique<internal::LocalVm>(std::move(core));
  }
  return std::unique_ptr<Vm>(new Vm(std::move(impl)));
}

BackendKind Vm::backend() const { return impl_->backend(); }
const VmConfig& Vm::config() const { return impl_->config(); }

namespace {

absl::StatusOr<std::string> ReadWholeFile(const std::string& path,
                                          absl::string_view what) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return ErrnoStatus(absl::StrCat("open ", what, " \"", path, "\""), errno);
  }
  std::string bytes((std::istreambuf_iterator<char>(file)),
                    std::istreambuf_iterator<char>());
  if (file.bad()) {
    return ErrnoStatus(absl::StrCat("read ", what, " \"", path, "\""), errno);
  }
  return bytes;
}

absl::Span<const uint8_t> Bytes(const std::string& bytes) {
  return absl::Span<const uint8_t>(
      reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

}  // namespace

absl::Status Vm::LoadKernel(const std::string& kernel_path,
                            const std::string& initrd_path,
                            const LinuxBootOptions& options) {
  if (config().guest_kind != GuestKind::kLinuxVm) {
    // Before reading files the Vm cannot take.
    return impl_->LoadKernel({}, kernel_path, {}, initrd_path, options);
  }
  auto kernel = ReadWholeFile(kernel_path, "kernel");
  if (!kernel.ok()) return kernel.status();
  auto initrd = ReadWholeFile(initrd_path, "initramfs");
  if (!initrd.ok()) return initrd.status();
  return impl_->LoadKernel(*kernel, kernel_path, *initrd, initrd_path, options);
}

// A Linux VM refuses a guest or program before its file is read.
absl::Status Vm::LoadGuest(const std::string& path) {
  if (config().guest_kind == GuestKind::kLinuxVm) {
    return impl_->LoadGuestImage({}, path);
  }
  auto bytes = ReadWholeFile(path, "guest");
  if (!bytes.ok()) return bytes.status();
  return LoadGuestImage(Bytes(*bytes), path);
}

absl::Status Vm::LoadGuestImage(absl::Span<const uint8_t> elf,
                                absl::string_view name) {
  return impl_->LoadGuestImage(elf, name);
}

absl::Status Vm::LoadProgram(const std::string& path,
                             const ProgramOptions& options) {
  if (config().guest_kind == GuestKind::kLinuxVm) {
    return impl_->LoadProgram({}, path, options);
  }
  auto bytes = ReadWholeFile(path, "program");
  if (!bytes.ok()) return bytes.status();
  return impl_->LoadProgram(Bytes(*bytes), path, options);
}

namespace internal {

absl::Status VmAccess::LoadProgramImage(Vm& vm, absl::Span<const uint8_t> elf,
                                        absl::string_view name,
                                        const ProgramOptions& options) {
  return vm.impl_->LoadProgram(elf, name, options);
}

}  // namespace internal

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
  return impl_->RegisterHostFunction(std::move(name), std::move(fn));
}

void Vm::Pause() { impl_->Pause(); }
void Vm::Resume() { impl_->Resume(); }
bool Vm::paused() const { return impl_->paused(); }
absl::StatusOr<size_t> Vm::WriteConsole(absl::string_view bytes) {
  return impl_->WriteConsole(bytes);
}
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
