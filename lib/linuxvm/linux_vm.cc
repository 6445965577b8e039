#include "lib/linuxvm/linux_vm.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "lib/linuxvm/boot_image.h"

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
  if (config.vcpus < 1 || config.vcpus > linuxvm::kMaxVcpus) {
    return absl::InvalidArgumentError(
        absl::StrFormat("VmConfig.vcpus: %d; a Linux VM takes 1 to %d",
                        config.vcpus, linuxvm::kMaxVcpus));
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
  linuxvm::LinuxMachine::Sinks sinks;
  LinuxVm* self = vm.get();
  sinks.serial_output = [self](char c) { self->OnSerialByte(c); };
  sinks.agent_output = [self](absl::string_view b) { self->OnAgentBytes(b); };
  sinks.stopped = [self] {
    std::lock_guard<std::mutex> lock(self->mutex_);
    self->changed_.notify_all();
  };
  auto machine = linuxvm::LinuxMachine::Create(
      {config.memory_size, config.vcpus}, std::move(sinks));
  if (!machine.ok()) return machine.status();
  vm->machine_ = *std::move(machine);
  vm->report_.backend = BackendKind::kKvm;
  vm->report_.create = absl::Now() - start;
  return vm;
}

LinuxVm::~LinuxVm() {
  // The vCPU threads call into this object; they stop first.
  machine_.reset();
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
  state_ = State::kLoaded;
  std::lock_guard<std::mutex> lock(mutex_);
  report_.load = absl::Now() - start;
  return absl::OkStatus();
}

absl::Status LinuxVm::Fail(absl::Status error) {
  state_ = State::kFailed;
  failure_ = error;
  machine_->RequestStop(error);
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
      const absl::Status end = DescribeEnd();
      return absl::Status(end.code(), absl::StrCat(what, ": ", end.message()));
    }
    const bool paused = pause_started_ != absl::InfinitePast();
    const absl::Time deadline = start + timeout + paused_total_;
    if (!paused && absl::Now() >= deadline) {
      lock.unlock();
      return absl::DeadlineExceededError(absl::StrFormat(
          "%s: no answer from the agent within %s; last console lines: %s",
          what, absl::FormatDuration(timeout), LastConsoleLines(3)));
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

void LinuxVm::Pause() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (pause_started_ != absl::InfinitePast()) return;
    pause_started_ = absl::Now();
  }
  machine_->Pause();
}

void LinuxVm::Resume() {
  machine_->Resume();
  std::lock_guard<std::mutex> lock(mutex_);
  if (pause_started_ == absl::InfinitePast()) return;
  paused_total_ += absl::Now() - pause_started_;
  pause_started_ = absl::InfinitePast();
  changed_.notify_all();
}

bool LinuxVm::paused() const { return machine_->paused(); }

std::string LinuxVm::console() const {
  std::string text = console_.Contents();
  std::lock_guard<std::mutex> lock(mutex_);
  return text + console_line_;
}

PhaseReport LinuxVm::report() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return report_;
}

absl::Status LinuxVm::failure() const {
  std::lock_guard<std::mutex> op(operation_mutex_);
  return failure_;
}

absl::StatusOr<std::string> LinuxVm::ReadMemory(uint64_t address,
                                                uint64_t size) const {
  auto slice = machine_->memory().Slice(address, size, "ReadGuestMemory");
  if (!slice.ok()) return slice.status();
  return std::string(reinterpret_cast<const char*>(slice->data()),
                     slice->size());
}

}  // namespace thaw::internal
