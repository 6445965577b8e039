#include "lib/linuxvm/linux_vm.h"

#include <sys/random.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/page_runs.h"
#include "lib/guest_memory.h"
#include "lib/linuxvm/boot_image.h"
#include "lib/memory_choice.h"
#include "lib/signing_access.h"
#include "lib/vm_internal.h"
#include "snapshot/anonymous_memory.h"
#include "snapshot/writer.h"

namespace thaw::internal {
namespace {

constexpr absl::string_view kAgentStartedLine = "thaw-agent: started";
constexpr absl::string_view kPanicLine = "Kernel panic - not syncing";
// Longest line kept before it is passed on without a newline.
constexpr size_t kConsoleLineMax = 512;

bool ValidFunctionName(absl::string_view name) {
  if (name.empty() || name.size() > THAW_AGENT_NAME_MAX || name[0] == '.') {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
  });
}

}  // namespace

absl::Status CheckLinuxVmConfig(const VmConfig& config) {
  if (config.backend == BackendKind::kEmulated) {
    return absl::InvalidArgumentError(
        "VmConfig.backend: a Linux VM (GuestKind::kLinuxVm) runs on KVM "
        "only; the emulated backend runs function guests and Linux programs");
  }
  if (config.worker_process) {
    return absl::InvalidArgumentError(
        "VmConfig.worker_process: a Linux VM runs on KVM, which isolates it "
        "in hardware; the worker process is for the emulated backend");
  }
  if (config.huge_pages) {
    return absl::InvalidArgumentError(
        "VmConfig.huge_pages: not yet supported for a Linux VM");
  }
  if (config.memory_size % (2ull << 20) != 0 ||
      config.memory_size < (32ull << 20) ||
      config.memory_size > linuxvm::kMaxMemory) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "VmConfig.memory_size: %u bytes; a Linux VM takes a multiple of "
        "2 MiB from 32 MiB to %u MiB",
        config.memory_size, linuxvm::kMaxMemory >> 20));
  }
  if (absl::Status s = linuxvm::CheckVcpuCount(config.vcpus); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("VmConfig.", s.message(), " for a Linux VM"));
  }
  if (config.output_buffer_size > THAW_AGENT_PAYLOAD_MAX ||
      config.input_buffer_size > THAW_AGENT_PAYLOAD_MAX) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "VmConfig.input_buffer_size/output_buffer_size: at most %u bytes for "
        "a Linux VM",
        THAW_AGENT_PAYLOAD_MAX));
  }
  return absl::OkStatus();
}

LinuxVm::LinuxVm(const VmConfig& config)
    : config_(config),
      console_(config_),
      decoder_(std::max<uint64_t>(config.output_buffer_size, 4096)) {}

absl::StatusOr<std::unique_ptr<LinuxVm>> LinuxVm::Create(
    const VmConfig& config) {
  const absl::Time start = absl::Now();
  if (absl::Status s = CheckLinuxVmConfig(config); !s.ok()) return s;
  std::unique_ptr<LinuxVm> vm(new LinuxVm(config));
  auto memory = snapshot::AnonymousMemory::Create(config.memory_size,
                                                  /*huge_pages=*/false);
  if (!memory.ok()) return memory.status();
  vm->source_ = *std::move(memory);
  if (absl::Status s = vm->StartMachine(); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(vm->mutex_);
  vm->report_.create = absl::Now() - start;
  return vm;
}

absl::Status LinuxVm::StartMachine() {
  linuxvm::LinuxMachine::Sinks sinks;
  sinks.serial_output = [this](char c) { OnSerialByte(c); };
  sinks.agent_output = [this](absl::string_view b) { OnAgentBytes(b); };
  sinks.stopped = [this] {
    std::lock_guard<std::mutex> lock(mutex_);
    changed_.notify_all();
  };
  auto machine = linuxvm::LinuxMachine::Create(
      {source_->base(), source_->size(), config_.vcpus}, std::move(sinks));
  if (!machine.ok()) return machine.status();
  {
    std::lock_guard<std::mutex> lock(machine_mutex_);
    machine_ = *std::move(machine);
    // A Vm paused while Reset replaced its machine stays paused: the new
    // one holds its vCPUs before their first instruction.
    bool paused;
    {
      std::lock_guard<std::mutex> state_lock(mutex_);
      paused = pause_started_ != absl::InfinitePast();
      report_.backend = BackendKind::kKvm;
    }
    if (paused) machine_->Pause();
  }
  machine_for_errors_.store(machine_.get());
  // Damage the restore engine finds (a chunk that fails its check) stops
  // the machine at once; the waiting operation reports it.
  source_->SetErrorCallback([this] {
    if (linuxvm::LinuxMachine* m = machine_for_errors_.load()) {
      m->RequestStop(source_->error());
    }
  });
  return absl::OkStatus();
}

absl::Status LinuxVm::ResumeFromImage() {
  const snapshot::proto::Manifest& m = restored_image_->manifest();
  if (absl::Status s = machine_->RestoreState(m.linux_machine()); !s.ok()) {
    return absl::Status(
        s.code(), absl::StrCat("restore \"", restored_image_->top().path(),
                               "\": ", s.message()));
  }
  if (absl::Status s = source_->error(); !s.ok()) return s;
  generation_ = m.linux_machine().restore_generation() + 1;
  reseed_pending_ = true;
  state_ = State::kReady;
  return machine_->Start();
}

absl::StatusOr<std::unique_ptr<LinuxVm>> LinuxVm::Restore(
    SnapshotState& state, const VmConfig& config, const RestoreOptions& options,
    absl::Time start) {
  const snapshot::proto::Manifest& m = state.image()->manifest();
  const std::string& path = state.image()->top().path();
  auto in_file = [&](const absl::Status& s) {
    return absl::Status(s.code(),
                        absl::StrCat("restore \"", path, "\": ", s.message()));
  };
  if (m.linux_machine().vcpus_size() != config.vcpus) {
    return in_file(absl::DataLossError(
        absl::StrFormat("the manifest names %d vCPUs and holds the state of %d",
                        config.vcpus, m.linux_machine().vcpus_size())));
  }
  std::unique_ptr<LinuxVm> vm(new LinuxVm(config));
  bool built_base = false;
  auto memory = RestoreMemory(state, options, &built_base);
  if (!memory.ok()) return memory.status();
  vm->source_ = *std::move(memory);
  if (absl::Status s = vm->StartMachine(); !s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(vm->mutex_);
    vm->report_.create = absl::Now() - start;
  }
  vm->restored_image_ = state.image();
  vm->kernel_name_ = m.linux_machine().kernel_name();
  vm->recording_ = options.record_working_set;
  vm->stats_.engine = options.engine;
  vm->stats_.shared_base_built = built_base;
  if (absl::Status s = vm->ResumeFromImage(); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(vm->mutex_);
  vm->report_.restore = absl::Now() - start;
  return vm;
}

absl::Status LinuxVm::Reset() {
  std::lock_guard<std::mutex> op(operation_mutex_);
  if (restored_image_ == nullptr || !source_->can_revert()) {
    return absl::FailedPreconditionError(
        "Reset: only a Vm restored with RestoreEngine::kSharedBase can be "
        "reset");
  }
  const absl::Time start = absl::Now();
  // The machine goes whole — its vCPU threads joined, KVM's VM with its
  // irqchip, clock and devices closed — before the memory is put back: no
  // vCPU runs on pages being copied, and nothing of the old machine (a
  // pending interrupt, a device's half-sent bytes) reaches the new one.
  std::unique_ptr<linuxvm::LinuxMachine> old;
  {
    std::lock_guard<std::mutex> lock(machine_mutex_);
    machine_for_errors_.store(nullptr);
    old = std::move(machine_);
  }
  old.reset();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    decoder_ = linuxvm::AgentDecoder(
        std::max<uint64_t>(config_.output_buffer_size, 4096));
    messages_.clear();
    agent_error_ = absl::OkStatus();
    console_line_.clear();
  }
  // Copy-on-write memory: the pages the guest (or KVM for it) wrote are
  // the private ones, found without a dirty log.
  auto runs = source_->ChangedPages(0, source_->size());
  absl::Status status = runs.status();
  if (status.ok()) status = source_->Revert(*runs);
  if (status.ok()) status = StartMachine();
  if (status.ok()) status = ResumeFromImage();
  if (!status.ok()) return Fail(status);
  failure_ = absl::OkStatus();
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.resets;
  stats_.pages_reset = CountPages(*runs);
  report_.reset = absl::Now() - start;
  return absl::OkStatus();
}

LinuxVm::~LinuxVm() {
  // The vCPU threads call into this object and may wait on the memory
  // source's faults: the machine goes first, then the source's threads.
  machine_for_errors_.store(nullptr);
  machine_.reset();
  if (source_ != nullptr) source_->Stop();
}

void LinuxVm::OnSerialByte(char c) {
  std::string line;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    console_line_.push_back(c);
    if (c != '\n' && console_line_.size() < kConsoleLineMax) return;
    if (agent_started_ == absl::InfinitePast() &&
        absl::StartsWith(console_line_, kAgentStartedLine)) {
      agent_started_ = absl::Now();
    }
    line.swap(console_line_);
  }
  console_.Write(line);
}

void LinuxVm::OnAgentBytes(absl::string_view bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = decoder_.Feed(bytes, messages_); !s.ok()) {
    if (agent_error_.ok()) agent_error_ = s;
  }
  changed_.notify_all();
}

absl::Status LinuxVm::LoadKernel(absl::string_view kernel,
                                 absl::string_view kernel_name,
                                 absl::string_view initrd,
                                 absl::string_view initrd_name,
                                 const LinuxBootOptions& options) {
  std::lock_guard<std::mutex> op(operation_mutex_);
  if (state_ != State::kCreated) {
    return absl::FailedPreconditionError(
        "LoadKernel: a kernel is already loaded in this Vm");
  }
  const absl::Time start = absl::Now();
  if (initrd.size() < 6 ||
      (initrd.substr(0, 6) != "070701" && initrd.substr(0, 2) != "\x1f\x8b" &&
       initrd.substr(0, 4) != "\x28\xb5\x2f\xfd")) {
    return absl::InvalidArgumentError(
        absl::StrCat("initramfs \"", initrd_name,
                     "\": not a newc cpio archive (nor a gzip or zstd one)"));
  }
  if (options.boot_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "LinuxBootOptions.boot_timeout: must be positive");
  }
  auto image = linuxvm::ParseKernel(kernel, kernel_name);
  if (!image.ok()) return image.status();
  const std::string cmdline =
      options.cmdline.empty() ? kDefaultLinuxCmdline : options.cmdline;
  GuestMemory& memory = machine_->memory();
  auto layout =
      linuxvm::PlaceBootImage(absl::MakeSpan(memory.host_base(), memory.size()),
                              *image, initrd, cmdline, config_.vcpus);
  if (!layout.ok()) {
    return absl::Status(layout.status().code(),
                        absl::StrCat("LoadKernel \"", kernel_name,
                                     "\": ", layout.status().message()));
  }
  if (absl::Status s = machine_->SetEntryState(layout->entry); !s.ok()) {
    return s;
  }
  boot_options_ = options;
  kernel_name_ = std::string(kernel_name);
  state_ = State::kLoaded;
  std::lock_guard<std::mutex> lock(mutex_);
  report_.load = absl::Now() - start;
  return absl::OkStatus();
}

namespace {

absl::Status WrongKind(absl::string_view operation) {
  return absl::FailedPreconditionError(
      absl::StrCat(operation,
                   ": this Vm was created for a Linux VM (LoadKernel); set "
                   "VmConfig::guest_kind"));
}

}  // namespace

absl::Status LinuxVm::LoadGuestImage(absl::Span<const uint8_t>,
                                     absl::string_view) {
  return WrongKind("LoadGuest");
}

absl::Status LinuxVm::LoadProgram(absl::Span<const uint8_t>, absl::string_view,
                                  const ProgramOptions&) {
  return WrongKind("LoadProgram");
}

absl::Status LinuxVm::RegisterHostFunction(std::string, HostFunction) {
  return absl::UnimplementedError(
      "RegisterHostFunction: a Linux VM's functions cannot call the host "
      "yet");
}

absl::StatusOr<uint64_t> LinuxVm::FindSymbol(absl::string_view) {
  return absl::UnimplementedError(
      "FindGuestSymbol: a Linux VM's kernel symbols are not read");
}

absl::Status LinuxVm::Fail(absl::Status error) {
  state_ = State::kFailed;
  failure_ = error;
  if (machine_ != nullptr) machine_->RequestStop(error);
  return error;
}

std::string LinuxVm::LastConsoleLines(int count) const {
  std::string text = console_.Contents();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    text += console_line_;
  }
  std::vector<absl::string_view> lines =
      absl::StrSplit(text, '\n', absl::SkipWhitespace());
  if (lines.size() > static_cast<size_t>(count)) {
    lines.erase(lines.begin(), lines.end() - count);
  }
  for (absl::string_view& l : lines) l = absl::StripTrailingAsciiWhitespace(l);
  return lines.empty() ? "(no console output)" : absl::StrJoin(lines, " | ");
}

absl::Status LinuxVm::DescribeEnd() const {
  const absl::Status end = machine_->end_status();
  const std::string tail = LastConsoleLines(3);
  std::string text = console_.Contents();
  const size_t panic = text.rfind(std::string(kPanicLine));
  if (panic != std::string::npos) {
    const size_t eol = text.find('\n', panic);
    absl::string_view line = absl::string_view(text).substr(
        panic, eol == std::string::npos ? std::string::npos : eol - panic);
    return absl::AbortedError(absl::StrCat(
        "the guest kernel panicked (", absl::StripTrailingAsciiWhitespace(line),
        "); last console lines: ", tail));
  }
  return absl::Status(
      end.code(), absl::StrCat(end.message(), "; last console lines: ", tail));
}

absl::StatusOr<AgentMessage> LinuxVm::WaitForMessage(absl::Time start,
                                                     absl::Duration timeout,
                                                     absl::string_view what) {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    if (!messages_.empty()) {
      AgentMessage m = std::move(messages_.front());
      messages_.pop_front();
      return m;
    }
    if (!agent_error_.ok()) {
      return absl::Status(agent_error_.code(),
                          absl::StrCat(what, ": ", agent_error_.message()));
    }
    if (machine_->end() != linuxvm::LinuxMachine::End::kRunning) {
      lock.unlock();
      if (absl::Status damage = source_->error(); !damage.ok()) {
        return absl::Status(damage.code(),
                            absl::StrCat(what, ": ", damage.message()));
      }
      const absl::Status end = DescribeEnd();
      return absl::Status(end.code(), absl::StrCat(what, ": ", end.message()));
    }
    const bool paused = pause_started_ != absl::InfinitePast();
    const absl::Time deadline = start + timeout + paused_total_;
    if (!paused && absl::Now() >= deadline) {
      lock.unlock();
      return absl::DeadlineExceededError(absl::StrFormat(
          "%s: no answer from the agent within %s (%s); last console lines: "
          "%s",
          what, absl::FormatDuration(timeout), machine_->DescribeVcpus(),
          LastConsoleLines(3)));
    }
    changed_.wait_for(lock, std::chrono::milliseconds(20));
  }
}

absl::StatusOr<AgentMessage> LinuxVm::Exchange(const std::string& message,
                                               absl::Duration timeout,
                                               absl::string_view what) {
  const absl::Time start = absl::Now();
  absl::string_view rest = message;
  // The device holds a bounded amount for the guest; hand the rest over as
  // the guest takes it.
  while (!rest.empty()) {
    rest.remove_prefix(machine_->agent_port().Send(rest));
    if (rest.empty()) break;
    std::unique_lock<std::mutex> lock(mutex_);
    if (machine_->end() != linuxvm::LinuxMachine::End::kRunning) break;
    if (pause_started_ == absl::InfinitePast() &&
        absl::Now() >= start + timeout + paused_total_) {
      break;
    }
    changed_.wait_for(lock, std::chrono::milliseconds(1));
  }
  return WaitForMessage(start, timeout, what);
}

absl::Status LinuxVm::Boot() {
  std::lock_guard<std::mutex> op(operation_mutex_);
  if (state_ == State::kFailed) {
    return absl::FailedPreconditionError(
        absl::StrCat("Boot: the Vm failed earlier: ", failure_.message()));
  }
  if (state_ != State::kLoaded) {
    return absl::FailedPreconditionError(
        state_ == State::kCreated ? "Boot: no kernel loaded (call LoadKernel)"
                                  : "Boot: the Vm was already booted");
  }
  const absl::Time start = absl::Now();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    agent_started_ = absl::InfinitePast();
  }
  if (absl::Status s = machine_->Start(); !s.ok()) return Fail(s);
  auto ready = WaitForMessage(start, boot_options_.boot_timeout, "boot");
  const absl::Time end = absl::Now();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    report_.boot = end - start;
    if (agent_started_ != absl::InfinitePast()) {
      report_.kernel_to_init = agent_started_ - start;
      report_.init_to_agent = end - agent_started_;
    }
  }
  if (!ready.ok()) return Fail(ready.status());
  if (ready->type != THAW_AGENT_READY) {
    return Fail(absl::DataLossError(absl::StrFormat(
        "boot: the agent's first message is of type %u, not READY",
        ready->type)));
  }
  state_ = State::kReady;
  return absl::OkStatus();
}

absl::StatusOr<std::string> LinuxVm::Call(absl::string_view function,
                                          absl::string_view input) {
  std::lock_guard<std::mutex> op(operation_mutex_);
  if (state_ == State::kFailed) {
    return absl::FailedPreconditionError(
        absl::StrCat("Call: the Vm failed earlier: ", failure_.message()));
  }
  if (state_ != State::kReady) {
    return absl::FailedPreconditionError("Call: the Vm has not been booted");
  }
  if (!ValidFunctionName(function)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Call: bad function name \"", absl::CHexEscape(function.substr(0, 64)),
        "\" (letters, digits, '_', '-', '.'; not starting with '.'; at most ",
        THAW_AGENT_NAME_MAX, " bytes)"));
  }
  if (input.size() > config_.input_buffer_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Call: input of %u bytes exceeds input_buffer_size (%u)", input.size(),
        config_.input_buffer_size));
  }
  const absl::Time start = absl::Now();
  if (reseed_pending_) {
    if (absl::Status s = Reseed(); !s.ok()) return Fail(s);
    reseed_pending_ = false;
  }
  const std::string what = absl::StrCat("call \"", function, "\"");
  auto reply = Exchange(
      linuxvm::EncodeAgentMessage(
          THAW_AGENT_CALL, static_cast<uint32_t>(config_.output_buffer_size),
          function, input),
      config_.call_timeout, what);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const absl::Duration d = absl::Now() - start;
    ++report_.calls;
    report_.last_call = d;
    report_.total_calls += d;
  }
  if (recording_) {
    working_set_ = source_->StopRecording();
    recording_ = false;
  }
  if (!reply.ok()) return Fail(reply.status());
  if (reply->type != THAW_AGENT_REPLY) {
    return Fail(absl::DataLossError(absl::StrFormat(
        "%s: the agent answered with a message of type %u, not REPLY", what,
        reply->type)));
  }
  const std::string& text = reply->payload;
  switch (reply->status) {
    case THAW_AGENT_OK:
      return std::move(reply->payload);
    case THAW_AGENT_NOT_FOUND:
      return absl::NotFoundError(absl::StrCat(what, ": ", text));
    case THAW_AGENT_TOO_LARGE:
      return absl::ResourceExhaustedError(absl::StrCat(
          what, ": the reply exceeds output_buffer_size (", text, ")"));
    case THAW_AGENT_FAILED:
      return absl::AbortedError(absl::StrCat(what, ": ", text));
    case THAW_AGENT_BAD_REQUEST:
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", text));
    default:
      return absl::InternalError(absl::StrCat(what, ": the agent: ", text));
  }
}

absl::Status LinuxVm::Reseed() {
  std::string payload(8 + THAW_AGENT_ENTROPY_BYTES, '\0');
  for (int i = 0; i < 8; ++i)
    payload[i] = static_cast<char>(generation_ >> (8 * i));
  // Fresh entropy from the host's kernel: two clones of one snapshot must
  // not share their random numbers.
  if (getrandom(payload.data() + 8, THAW_AGENT_ENTROPY_BYTES, 0) !=
      static_cast<ssize_t>(THAW_AGENT_ENTROPY_BYTES)) {
    return absl::InternalError("getrandom failed");
  }
  auto answer =
      Exchange(linuxvm::EncodeAgentMessage(THAW_AGENT_RESEED, 0, "", payload),
               config_.call_timeout, "reseed after restore");
  if (!answer.ok()) return answer.status();
  if (answer->type != THAW_AGENT_RESEEDED || answer->status != THAW_AGENT_OK) {
    return absl::DataLossError(absl::StrFormat(
        "reseed after restore: the agent answered type %u status %u",
        answer->type, answer->status));
  }
  return absl::OkStatus();
}

absl::Status LinuxVm::Snapshot(const std::string& path,
                               const SnapshotOptions& options) {
  std::lock_guard<std::mutex> op(operation_mutex_);
  if (state_ == State::kFailed) {
    return absl::FailedPreconditionError(
        absl::StrCat("Snapshot: the Vm failed earlier: ", failure_.message()));
  }
  if (state_ != State::kReady) {
    return absl::FailedPreconditionError(
        "Snapshot: the Linux VM has not been booted (its agent is not up)");
  }
  if (path.empty()) return absl::InvalidArgumentError("Snapshot: empty path");
  const absl::Time start = absl::Now();
  auto begun = BeginWriteRequest(
      path, options, restored_image_,
      recording_ ? std::vector<uint32_t>() : working_set_, false);
  if (!begun.ok()) return begun.status();
  snapshot::WriteRequest& request = *begun;
  snapshot::proto::Manifest& m = request.manifest;
  m.set_source_backend("kvm");
  snapshot::proto::VmConfig& c = *m.mutable_config();
  c.set_memory_size(config_.memory_size);
  c.set_input_buffer_size(config_.input_buffer_size);
  c.set_output_buffer_size(config_.output_buffer_size);
  c.set_guest_kind(static_cast<uint32_t>(GuestKind::kLinuxVm));
  c.set_vcpus(config_.vcpus);
  snapshot::proto::LinuxMachine& lm = *m.mutable_linux_machine();
  lm.set_kernel_name(kernel_name_);
  lm.set_restore_generation(generation_);
  // Paused for as long as the state and memory are read: the guest must
  // not change what is being written.
  const bool was_paused = machine_->paused();
  machine_->Pause();
  absl::Status saved = machine_->SaveState(lm);
  if (saved.ok()) {
    request.memory = source_->base();
    request.memory_size = source_->size();
    auto hints = source_->ChunkHints(options.chunk_size);
    if (hints.ok()) {
      request.hint = *std::move(hints);
      saved = snapshot::WriteSnapshot(request);
    } else {
      saved = hints.status();
    }
  }
  if (!was_paused) machine_->Resume();
  if (!saved.ok()) return saved;
  if (absl::Status s = source_->error(); !s.ok()) return Fail(s);
  std::lock_guard<std::mutex> lock(mutex_);
  report_.snapshot = absl::Now() - start;
  return absl::OkStatus();
}

absl::Status LinuxVm::WriteWorkingSet(const snapshot::SecretKey* key) {
  std::lock_guard<std::mutex> op(operation_mutex_);
  if (restored_image_ == nullptr || recording_ || working_set_.empty()) {
    return absl::FailedPreconditionError(
        "WriteWorkingSet: nothing recorded (restore with a lazy engine and "
        "RestoreOptions::record_working_set, then make a call)");
  }
  return snapshot::RewriteWithWorkingSet(restored_image_->top(), working_set_,
                                         {}, key);
}

RestoreStats LinuxVm::restore_stats() {
  RestoreStats stats;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stats = stats_;
  }
  AddSourceCounters(*source_, stats);
  return stats;
}

void LinuxVm::Pause() {
  std::lock_guard<std::mutex> machine_lock(machine_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (pause_started_ != absl::InfinitePast()) return;
    pause_started_ = absl::Now();
  }
  if (machine_ != nullptr) machine_->Pause();
}

void LinuxVm::Resume() {
  std::lock_guard<std::mutex> machine_lock(machine_mutex_);
  if (machine_ != nullptr) machine_->Resume();
  std::lock_guard<std::mutex> lock(mutex_);
  if (pause_started_ == absl::InfinitePast()) return;
  paused_total_ += absl::Now() - pause_started_;
  pause_started_ = absl::InfinitePast();
  changed_.notify_all();
}

bool LinuxVm::paused() const {
  std::lock_guard<std::mutex> machine_lock(machine_mutex_);
  if (machine_ != nullptr) return machine_->paused();
  std::lock_guard<std::mutex> lock(mutex_);
  return pause_started_ != absl::InfinitePast();
}

absl::StatusOr<size_t> LinuxVm::WriteConsole(absl::string_view bytes) {
  std::lock_guard<std::mutex> machine_lock(machine_mutex_);
  if (machine_ == nullptr ||
      machine_->end() != linuxvm::LinuxMachine::End::kRunning) {
    return absl::FailedPreconditionError(
        "WriteConsole: the Linux VM is not running");
  }
  return machine_->serial().QueueInput(bytes);
}

std::string LinuxVm::console() {
  std::string text = console_.Contents();
  std::lock_guard<std::mutex> lock(mutex_);
  return text + console_line_;
}

PhaseReport LinuxVm::report() {
  std::lock_guard<std::mutex> lock(mutex_);
  return report_;
}

absl::Status LinuxVm::failure() {
  std::lock_guard<std::mutex> op(operation_mutex_);
  return failure_;
}

absl::StatusOr<std::string> LinuxVm::ReadMemory(uint64_t address,
                                                uint64_t size) {
  // From the memory source, which outlives every machine Reset builds.
  auto memory = GuestMemory::View(source_->base(), source_->size());
  auto slice = memory->Slice(address, size, "ReadGuestMemory");
  if (!slice.ok()) return slice.status();
  return std::string(reinterpret_cast<const char*>(slice->data()),
                     slice->size());
}

}  // namespace thaw::internal
