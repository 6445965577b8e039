// The monitor: Vm::Impl ties guest memory, a backend, the boot state, the
// ELF loader and the hypercall dispatcher together and runs the vCPU loop.
#include "thaw/vm.h"

#include <sys/mman.h>
#include <sys/random.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/strings/str_format.h"
#include "lib/backend/backend.h"
#include "lib/elf_loader.h"
#include "lib/errno_status.h"
#include "lib/guest_memory.h"
#include "lib/hypercall_dispatcher.h"
#include "lib/page_map.h"
#include "lib/vm_internal.h"
#include "lib/watchdog.h"
#include "lib/x86/boot_state.h"
#include "snapshot/eager_restore.h"
#include "snapshot/lazy_pager.h"
#include "snapshot/shared_base.h"
#include "snapshot/snapshot_file.h"
#include "snapshot/vcpu_codec.h"
#include "snapshot/writer.h"
#include "thaw/abi.h"
#include "thaw/errors.h"

namespace thaw {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMinMemory = 4ull << 20;

uint64_t AlignDown(uint64_t value, uint64_t alignment) {
  return value & ~(alignment - 1);
}
uint64_t AlignUp(uint64_t value, uint64_t alignment) {
  return AlignDown(value + alignment - 1, alignment);
}

// Where the buffers and the stack go, from the top of guest memory down.
struct Layout {
  uint64_t stack_top, input_addr, output_addr;
};

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
  if (c.stack_size < kPage || c.input_buffer_size == 0 ||
      c.output_buffer_size == 0 || c.console_limit == 0) {
    return absl::InvalidArgumentError(
        "VmConfig: stack_size must be at least 4 KiB, and the buffer sizes "
        "and console_limit must be positive");
  }
  const uint64_t room = c.memory_size - THAW_IMAGE_BASE;
  const uint64_t wanted = AlignUp(c.stack_size, kPage) +
                          AlignUp(c.input_buffer_size, kPage) +
                          AlignUp(c.output_buffer_size, kPage);
  if (c.stack_size > room || c.input_buffer_size > room ||
      c.output_buffer_size > room || wanted >= room) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "VmConfig: stack (%d) + input buffer (%d) + output buffer (%d) bytes "
        "do not fit in %d bytes of guest memory above the image base",
        c.stack_size, c.input_buffer_size, c.output_buffer_size, room));
  }
  Layout layout;
  layout.stack_top = c.memory_size;
  layout.input_addr = AlignDown(
      layout.stack_top - AlignUp(c.stack_size, kPage) - c.input_buffer_size,
      kPage);
  layout.output_addr =
      AlignDown(layout.input_addr - c.output_buffer_size, kPage);
  return layout;
}

}  // namespace

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
    absl::StrAppendFormat(&out, "load: %.3f ms\nboot+init: %.3f ms\n",
                          ms(load), ms(boot));
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

class Vm::Impl {
 public:
  Impl(VmConfig config, Layout layout, std::unique_ptr<GuestMemory> memory)
      : config_(std::move(config)),
        layout_(layout),
        memory_(std::move(memory)),
        dispatcher_(*memory_, config_, config_.output_buffer_size) {}

  ~Impl() {
    backend_.reset();  // the backend maps memory_; destroy it first
    pager_.reset();    // then the thread that fills memory_
  }

  absl::Status CreateBackend() {
    auto backend = backend::CreateBackend(config_.backend, *memory_);
    if (!backend.ok()) return backend.status();
    backend_ = *std::move(backend);
    report_.backend = backend_->kind();
    return absl::OkStatus();
  }

  absl::Status Init() {
    absl::Time start = absl::Now();
    if (absl::Status s = CreateBackend(); !s.ok()) return s;
    auto state = x86::BuildLongModeBootState(*memory_);
    if (!state.ok()) return state.status();
    boot_state_ = *state;
    report_.create = absl::Now() - start;
    return absl::OkStatus();
  }

  absl::Status LoadImage(absl::Span<const uint8_t> elf, absl::string_view name);
  absl::Status Boot();
  absl::Status RestoreFrom(std::shared_ptr<const snapshot::SnapshotImage> image,
                           const RestoreOptions& options, absl::Time start);
  absl::Status Snapshot(const std::string& path,
                        const SnapshotOptions& options);
  void AdoptBase(std::shared_ptr<const snapshot::SharedBase> base, bool built,
                 const snapshot::RestoreCounters& counters) {
    base_ = std::move(base);
    stats_.shared_base_built = built;
    counters_.chunks_read = counters.chunks_read.load();
    counters_.bytes_read = counters.bytes_read.load();
    counters_.reads_without_io_uring = counters.reads_without_io_uring.load();
  }
  absl::Status Reset();
  absl::Status WriteWorkingSet();
  RestoreStats restore_stats() const {
    RestoreStats stats = stats_;
    stats.faults = counters_.faults.load();
    stats.prefetch_waits = counters_.prefetch_waits.load();
    stats.chunks_read = counters_.chunks_read.load();
    stats.bytes_read = counters_.bytes_read.load();
    stats.zero_chunks = counters_.zero_chunks.load();
    stats.prefetched = counters_.prefetched.load();
    stats.mapped = counters_.mapped.load();
    stats.reads_without_io_uring = counters_.reads_without_io_uring.load();
    return stats;
  }
  absl::StatusOr<std::string> Call(absl::string_view function,
                                   absl::string_view input);

  void Pause() {
    {
      std::lock_guard<std::mutex> lock(pause_mutex_);
      paused_ = true;
    }
    backend_->Interrupt();
  }
  void Resume() {
    std::lock_guard<std::mutex> lock(pause_mutex_);
    paused_ = false;
    resumed_.notify_all();
  }
  bool paused() const {
    std::lock_guard<std::mutex> lock(pause_mutex_);
    return paused_;
  }

  const VmConfig& config() const { return config_; }
  BackendKind backend() const { return backend_->kind(); }
  std::string console() const { return dispatcher_.console(); }
  PhaseReport report() const {
    std::lock_guard<std::mutex> lock(report_mutex_);
    return report_;
  }
  void Register(std::string name, HostFunction fn) {
    dispatcher_.Register(std::move(name), std::move(fn));
  }
  absl::StatusOr<std::string> ReadMemory(uint64_t address, uint64_t size) const {
    auto slice = memory_->Slice(address, size, "ReadGuestMemory");
    if (!slice.ok()) return slice.status();
    return std::string(reinterpret_cast<const char*>(slice->data()),
                       slice->size());
  }
  absl::StatusOr<uint64_t> FindSymbol(absl::string_view name) const {
    auto it = symbols_.find(name);
    if (it == symbols_.end()) {
      return absl::NotFoundError(
          absl::StrCat("guest symbol \"", name, "\" not found"));
    }
    return it->second;
  }

 private:
  enum class State { kCreated, kLoaded, kReady, kFailed };

  // Runs the vCPU until the guest parks, fails, or the deadline passes.
  absl::Status RunGuest(absl::string_view what);
  absl::Status ExitToStatus(const backend::Exit& exit, absl::string_view what);
  // Runs the guest's before-snapshot hook (THAW_REQUEST_BEFORE_SNAPSHOT).
  absl::Status RunBeforeSnapshotHook();
  // A new restore generation and fresh entropy in the boot-info page.
  absl::Status WriteRestoreIdentity();
  // What the snapshot writer may assume about each chunk without reading it.
  absl::StatusOr<std::function<snapshot::ChunkHint(uint64_t)>> ChunkHints(
      uint32_t chunk_size);
  // The error of the lazy pager, if it met one.
  absl::Status MemoryError() const {
    return pager_ ? pager_->error() : absl::OkStatus();
  }
  // Blocks while paused; returns how long it waited.
  absl::Duration WaitWhilePaused();
  absl::Status Failed(absl::Status error) {
    state_ = State::kFailed;
    failure_ = error;
    return error;
  }
  void RecordCall(absl::Duration d) {
    std::lock_guard<std::mutex> lock(report_mutex_);
    ++report_.calls;
    report_.last_call = d;
    report_.total_calls += d;
  }

  VmConfig config_;
  Layout layout_;
  std::unique_ptr<GuestMemory> memory_;
  std::unique_ptr<backend::Backend> backend_;
  HypercallDispatcher dispatcher_;
  backend::VcpuState boot_state_;
  thaw_boot_info* boot_info_ = nullptr;
  absl::flat_hash_map<std::string, uint64_t> symbols_;
  std::string guest_name_;
  State state_ = State::kCreated;

  // Set for a restored Vm: where it came from and how it was restored.
  std::shared_ptr<const snapshot::SnapshotImage> source_;
  snapshot::RestoreCounters counters_;
  RestoreStats stats_;
  std::unique_ptr<snapshot::LazyPager> pager_;
  std::shared_ptr<const snapshot::SharedBase> base_;
  backend::VcpuState snapshot_state_;  // the vCPU as restored (for Reset)
  uint64_t snapshot_generation_ = 0;
  bool recording_ = false;
  std::vector<uint32_t> working_set_;
  absl::Status failure_;
  std::atomic<bool> timed_out_{false};

  mutable std::mutex pause_mutex_;
  std::condition_variable resumed_;
  bool paused_ = false;

  mutable std::mutex report_mutex_;
  PhaseReport report_;
};

absl::Status Vm::Impl::LoadImage(absl::Span<const uint8_t> elf,
                                 absl::string_view name) {
  if (state_ != State::kCreated) {
    return absl::FailedPreconditionError(
        "LoadGuest: a guest is already loaded in this Vm");
  }
  absl::Time start = absl::Now();
  auto image = LoadElf(elf, name, *memory_, THAW_IMAGE_BASE, layout_.output_addr);
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
  boot_info_->heap_start = AlignUp(image->image_end, kPage);
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
        state_ == State::kCreated ? "Boot: no guest loaded (call LoadGuest first)"
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
    return absl::FailedPreconditionError(absl::StrCat(
        "this Vm failed earlier and accepts no more calls: ",
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
      status = absl::Status(status.code(), absl::StrCat("call \"", function,
                                                        "\": ", status.message()));
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
    absl::Status error(outcome.error.code(),
                       absl::StrCat("call \"", function, "\": ",
                                    outcome.error.message()));
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
      SetGuestFault(status, {exit.vector, exit.rip, exit.cr2, exit.error_code,
                             false});
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
  return absl::InternalError(absl::StrFormat(
      "%s: %s backend failed at RIP 0x%x: %s", what,
      BackendName(backend_->kind()), exit.rip, exit.detail));
}

absl::Status Vm::Impl::WriteRestoreIdentity() {
  boot_info_->restore_generation = snapshot_generation_ + 1;
  if (getrandom(boot_info_->entropy, sizeof(boot_info_->entropy), 0) !=
      static_cast<ssize_t>(sizeof(boot_info_->entropy))) {
    return ErrnoStatus("getrandom for guest entropy", errno);
  }
  boot_info_->request = THAW_REQUEST_CALL;
  return MemoryError();
}

absl::Status Vm::Impl::RestoreFrom(
    std::shared_ptr<const snapshot::SnapshotImage> image,
    const RestoreOptions& options, absl::Time start) {
  const snapshot::proto::Manifest& m = image->manifest();
  const std::string& path = image->top().path();
  absl::Status msrs = snapshot::CheckMsrs(m.vcpu());
  backend::VcpuState state = snapshot::DecodeVcpuState(m.vcpu());
  if (absl::Status s = msrs.ok() ? x86::CheckPortableState(state) : msrs;
      !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("restore \"", path, "\": ",
                                                s.message()));
  }
  source_ = image;
  stats_.engine = options.engine;
  if (absl::Status s = CreateBackend(); !s.ok()) return s;
  switch (options.engine) {
    case RestoreEngine::kEager:
      if (absl::Status s =
              snapshot::RestoreEagerly(*image, memory_->host_base(), counters_);
          !s.ok()) {
        return s;
      }
      break;
    case RestoreEngine::kLazy:
    case RestoreEngine::kLazyPrefetch: {
      snapshot::LazyPager::Options pager_options;
      pager_options.prefetch = options.engine == RestoreEngine::kLazyPrefetch;
      pager_options.record = options.record_working_set;
      // A chunk that fails its checksum stops the guest at once.
      pager_options.on_error = [this](const absl::Status&) {
        backend_->Interrupt();
      };
      auto pager = snapshot::LazyPager::Start(image, memory_->host_base(),
                                              counters_, pager_options);
      if (!pager.ok()) return pager.status();
      pager_ = *std::move(pager);
      recording_ = options.record_working_set;
      break;
    }
    case RestoreEngine::kSharedBase:
      break;  // memory_ already maps the base (Vm::Restore)
  }
  for (const auto& [name, address] : m.abi().symbols()) {
    symbols_[name] = address;
  }
  guest_name_ = m.abi().guest_name();
  auto info = memory_->As<thaw_boot_info>(THAW_BOOT_INFO_ADDR, "boot info");
  if (!info.ok()) return info.status();
  boot_info_ = *info;
  if (boot_info_->magic != THAW_BOOT_INFO_MAGIC ||
      boot_info_->abi_version != THAW_ABI_VERSION ||
      boot_info_->memory_size != config_.memory_size ||
      boot_info_->input_addr != layout_.input_addr ||
      boot_info_->output_addr != layout_.output_addr) {
    if (absl::Status s = MemoryError(); !s.ok()) return s;
    return absl::DataLossError(absl::StrCat(
        "restore \"", path,
        "\": the boot-info page in the snapshot's memory does not match its "
        "manifest"));
  }
  snapshot_state_ = state;
  snapshot_generation_ = m.abi().restore_generation();
  if (absl::Status s = backend_->SetState(state); !s.ok()) return s;
  if (absl::Status s = WriteRestoreIdentity(); !s.ok()) return s;
  state_ = State::kReady;
  std::lock_guard<std::mutex> lock(report_mutex_);
  report_.restore = absl::Now() - start;
  return absl::OkStatus();
}

absl::Status Vm::Impl::RunBeforeSnapshotHook() {
  boot_info_->request = THAW_REQUEST_BEFORE_SNAPSHOT;
  std::memset(boot_info_->function_name, 0, sizeof(boot_info_->function_name));
  boot_info_->input_size = 0;
  dispatcher_.Begin(/*in_call=*/true);
  absl::Status status = RunGuest("before-snapshot hook");
  boot_info_->request = THAW_REQUEST_CALL;
  if (!status.ok()) return Failed(status);
  const auto& outcome = dispatcher_.outcome();
  if (outcome.kind == HypercallDispatcher::Outcome::Kind::kFailed) {
    absl::Status error(outcome.error.code(),
                       absl::StrCat("before-snapshot hook: ",
                                    outcome.error.message()));
    return outcome.vm_usable ? error : Failed(error);
  }
  if (outcome.reply_status != 0) {
    return absl::AbortedError(absl::StrFormat(
        "before-snapshot hook replied with status %d", outcome.reply_status));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::function<snapshot::ChunkHint(uint64_t)>>
Vm::Impl::ChunkHints(uint32_t chunk_size) {
  using snapshot::ChunkHint;
  if (pager_) {
    // Chunks the pager never installed are still the image's.
    if (source_->chunk_size() != chunk_size) {
      return [](uint64_t) { return ChunkHint::kRead; };
    }
    snapshot::LazyPager* pager = pager_.get();
    return [pager](uint64_t c) {
      return pager->installed(c) ? ChunkHint::kRead : ChunkHint::kUnchanged;
    };
  }
  auto map = PageMap::Read(memory_->host_base(), memory_->size());
  if (!map.ok()) return map.status();
  auto pages = std::make_shared<PageMap>(*std::move(map));
  const uint64_t per_chunk = chunk_size / kPage;
  if (memory_->file_backed()) {
    // A shared base: pages without a private copy are still the base's.
    return [pages, per_chunk](uint64_t c) {
      for (uint64_t p = c * per_chunk; p < (c + 1) * per_chunk; ++p) {
        if (pages->private_copy(p)) return ChunkHint::kRead;
      }
      return ChunkHint::kUnchanged;
    };
  }
  // Anonymous memory: a page never touched reads as zeros.
  return [pages, per_chunk](uint64_t c) {
    for (uint64_t p = c * per_chunk; p < (c + 1) * per_chunk; ++p) {
      if (pages->touched(p)) return ChunkHint::kRead;
    }
    return ChunkHint::kZero;
  };
}

absl::Status Vm::Impl::Snapshot(const std::string& path,
                                const SnapshotOptions& options) {
  if (state_ == State::kFailed) {
    return absl::FailedPreconditionError(absl::StrCat(
        "Snapshot: this Vm failed earlier: ", failure_.message()));
  }
  if (state_ != State::kReady) {
    return absl::FailedPreconditionError(
        "Snapshot: the guest has not been booted (a snapshot is taken at its "
        "park point)");
  }
  if (path.empty()) {
    return absl::InvalidArgumentError("Snapshot: empty path");
  }
  absl::Time start = absl::Now();
  snapshot::WriteRequest request;
  request.path = path;
  request.level = options.compression_level;
  request.chunk_size = options.chunk_size;
  request.source = source_;
  request.progress = options.progress;
  if (!options.parent.empty()) {
    if (source_ == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "Snapshot: a diff snapshot against \"", options.parent,
          "\" needs a Vm restored from it; this one was booted"));
    }
    auto parent = snapshot::SnapshotFile::Open(options.parent);
    if (!parent.ok()) return parent.status();
    if ((*parent)->manifest().snapshot_id() !=
        source_->manifest().snapshot_id()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "Snapshot: \"", options.parent,
          "\" is not the snapshot this Vm was restored from"));
    }
    request.diff = true;
    namespace fs = std::filesystem;
    std::error_code same_error;
    if (fs::equivalent(path, options.parent, same_error)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Snapshot: a diff snapshot cannot replace its own parent \"",
          options.parent, "\""));
    }
    fs::path parent_path = fs::absolute(options.parent);
    request.parent_path =
        parent_path.parent_path() == fs::absolute(path).parent_path()
            ? parent_path.filename().string()
            : parent_path.string();
  }
  if (absl::Status s = RunBeforeSnapshotHook(); !s.ok()) return s;
  if (absl::Status s = backend_->CheckNothingPending(); !s.ok()) return s;
  auto state = backend_->GetState();
  if (!state.ok()) return state.status();

  snapshot::proto::Manifest& m = request.manifest;
  m.set_source_backend(std::string(BackendName(backend_->kind())));
  m.mutable_config()->set_memory_size(config_.memory_size);
  m.mutable_config()->set_input_buffer_size(config_.input_buffer_size);
  m.mutable_config()->set_output_buffer_size(config_.output_buffer_size);
  m.mutable_config()->set_stack_size(config_.stack_size);
  *m.mutable_vcpu() = snapshot::EncodeVcpuState(*state);
  m.mutable_abi()->set_abi_version(THAW_ABI_VERSION);
  m.mutable_abi()->set_restore_generation(boot_info_->restore_generation);
  m.mutable_abi()->set_guest_name(guest_name_);
  for (const auto& [name, address] : symbols_) {
    (*m.mutable_abi()->mutable_symbols())[name] = address;
  }
  request.memory = memory_->host_base();
  request.memory_size = memory_->size();
  auto hints = ChunkHints(options.chunk_size);
  if (!hints.ok()) return hints.status();
  request.hint = *std::move(hints);
  if (absl::Status s = snapshot::WriteSnapshot(request); !s.ok()) return s;
  if (absl::Status s = MemoryError(); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(report_mutex_);
  report_.snapshot = absl::Now() - start;
  return absl::OkStatus();
}

absl::Status Vm::Impl::Reset() {
  if (base_ == nullptr) {
    return absl::FailedPreconditionError(
        "Reset: only a Vm restored with RestoreEngine::kSharedBase can be "
        "reset");
  }
  absl::Time start = absl::Now();
  auto runs = PageMap::PrivateRuns(memory_->host_base(), memory_->size());
  if (!runs.ok()) return runs.status();
  // The emulator drops code it translated from changed pages first: finding
  // that code walks the guest page tables and may set accessed bits in them,
  // a write. The page tables live in the host-owned first 2 MiB, so only
  // that stretch needs a second look.
  bool discarded = false;
  for (const auto& [first, end] : *runs) {
    discarded |= backend_->DiscardCachedCode(first * kPage, (end - first) * kPage);
  }
  if (discarded) {
    auto low = PageMap::PrivateRuns(memory_->host_base(), THAW_IMAGE_BASE);
    if (!low.ok()) return low.status();
    PageRuns merged = *std::move(low);
    for (const auto& run : *runs) {
      if (run.second > THAW_IMAGE_BASE / kPage) {
        merged.emplace_back(std::max<uint64_t>(run.first, THAW_IMAGE_BASE / kPage),
                            run.second);
      }
    }
    *runs = std::move(merged);
  }
  uint64_t pages = 0;
  for (const auto& [first, end] : *runs) {
    // Safe: drops this Vm's private copies of its own pages; the next touch
    // maps the shared base's page again.
    if (madvise(memory_->host_base() + first * kPage, (end - first) * kPage,
                MADV_DONTNEED) != 0) {
      return Failed(ErrnoStatus("Reset: madvise(MADV_DONTNEED)", errno));
    }
    pages += end - first;
  }
  if (absl::Status s = backend_->SetState(snapshot_state_); !s.ok()) {
    return Failed(s);
  }
  if (absl::Status s = WriteRestoreIdentity(); !s.ok()) return Failed(s);
  state_ = State::kReady;
  failure_ = absl::OkStatus();
  ++stats_.resets;
  stats_.pages_reset = pages;
  std::lock_guard<std::mutex> lock(report_mutex_);
  report_.reset = absl::Now() - start;
  return absl::OkStatus();
}

absl::Status Vm::Impl::WriteWorkingSet() {
  if (pager_ == nullptr) {
    return absl::FailedPreconditionError(
        "WriteWorkingSet: only a Vm restored with a lazy engine and "
        "RestoreOptions::record_working_set records a working set");
  }
  if (recording_ || working_set_.empty()) {
    return absl::FailedPreconditionError(
        "WriteWorkingSet: nothing recorded yet (record_working_set was off, "
        "or no call has completed)");
  }
  return snapshot::RewriteWithWorkingSet(source_->top(), working_set_);
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

absl::StatusOr<std::unique_ptr<Vm>> internal::VmAccess::Restore(
    const std::string& path, const RestoreOptions& options, int memory_fd) {
  absl::Time start = absl::Now();
  if (options.record_working_set && options.engine != RestoreEngine::kLazy) {
    return absl::InvalidArgumentError(
        "RestoreOptions.record_working_set needs RestoreEngine::kLazy (other "
        "engines install chunks the guest may never touch)");
  }
  auto image = snapshot::SnapshotImage::Open(path);
  if (!image.ok()) return image.status();
  const snapshot::proto::Manifest& m = (*image)->manifest();
  VmConfig config;
  config.memory_size = m.config().memory_size();
  config.input_buffer_size = m.config().input_buffer_size();
  config.output_buffer_size = m.config().output_buffer_size();
  config.stack_size = m.config().stack_size();
  config.backend = options.backend;
  config.call_timeout = options.call_timeout;
  config.console_limit = options.console_limit;
  config.console_sink = options.console_sink;
  auto layout = ComputeLayout(config);
  if (!layout.ok()) {
    return absl::Status(layout.status().code(),
                        absl::StrCat("restore \"", path, "\": ",
                                     layout.status().message()));
  }
  std::shared_ptr<const snapshot::SharedBase> base;
  snapshot::RestoreCounters base_counters;
  bool built = false;
  absl::StatusOr<std::unique_ptr<GuestMemory>> memory;
  if (memory_fd >= 0) {
    memory = GuestMemory::MapPrivate(memory_fd, config.memory_size);
  } else if (options.engine == RestoreEngine::kSharedBase) {
    auto shared = snapshot::SharedBase::Get(*image, base_counters, &built);
    if (!shared.ok()) return shared.status();
    base = *std::move(shared);
    memory = GuestMemory::MapPrivate(base->fd(), base->size());
  } else {
    memory = GuestMemory::Create(config.memory_size);
  }
  if (!memory.ok()) return memory.status();
  auto impl = std::make_unique<Vm::Impl>(config, *layout, *std::move(memory));
  impl->AdoptBase(std::move(base), built, base_counters);
  if (absl::Status s = impl->RestoreFrom(*std::move(image), options, start);
      !s.ok()) {
    return s;
  }
  return std::unique_ptr<Vm>(new Vm(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<Vm>> Vm::Restore(const std::string& path,
                                                const RestoreOptions& options) {
  return internal::VmAccess::Restore(path, options, /*memory_fd=*/-1);
}

absl::StatusOr<std::unique_ptr<Vm>> internal::VmAccess::RestoreOverMemoryFile(
    const std::string& snapshot_path, int memory_fd,
    const RestoreOptions& options) {
  RestoreOptions over_file = options;
  over_file.engine = RestoreEngine::kSharedBase;  // memory is mapped already
  over_file.record_working_set = false;
  return Restore(snapshot_path, over_file, memory_fd);
}

absl::Status Vm::Snapshot(const std::string& path,
                          const SnapshotOptions& options) {
  return impl_->Snapshot(path, options);
}
absl::Status Vm::Reset() { return impl_->Reset(); }
absl::Status Vm::WriteWorkingSet() { return impl_->WriteWorkingSet(); }
RestoreStats Vm::restore_stats() const { return impl_->restore_stats(); }

BackendKind Vm::backend() const { return impl_->backend(); }
const VmConfig& Vm::config() const { return impl_->config(); }

absl::Status Vm::LoadGuest(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return ErrnoStatus(absl::StrCat("open guest \"", path, "\""), errno);
  std::string bytes((std::istreambuf_iterator<char>(file)),
                    std::istreambuf_iterator<char>());
  if (file.bad()) return ErrnoStatus(absl::StrCat("read guest \"", path, "\""), errno);
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
