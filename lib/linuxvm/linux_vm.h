// LinuxVm: a Vm of GuestKind::kLinuxVm — a LinuxMachine booted with a
// kernel and initramfs, and the host end of the agent protocol over its
// virtio console. thaw::Vm forwards to it.
//
// A call sends CALL and waits for REPLY; one message is in flight at a time.
// The machine ending (a reboot, a panic, a triple fault, a broken device), a
// call running past call_timeout, or the agent breaking the protocol fails
// the Vm: the error names what happened and the last console lines, and
// later operations return it as FailedPrecondition.
//
// Thread safety: as thaw::Vm (operations one at a time, the rest anywhere).
#ifndef THAW_LIB_LINUXVM_LINUX_VM_H_
#define THAW_LIB_LINUXVM_LINUX_VM_H_

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/console.h"
#include "lib/linuxvm/agent_messages.h"
#include "lib/linuxvm/linux_machine.h"
#include "thaw/options.h"
#include "thaw/report.h"

namespace thaw::internal {

using linuxvm::AgentMessage;

// InvalidArgument naming the field for a VmConfig a Linux VM cannot take.
absl::Status CheckLinuxVmConfig(const VmConfig& config);

class LinuxVm {
 public:
  // Unavailable where KVM cannot run it.
  static absl::StatusOr<std::unique_ptr<LinuxVm>> Create(
      const VmConfig& config);
  ~LinuxVm();

  const VmConfig& config() const { return config_; }

  absl::Status LoadKernel(absl::string_view kernel,
                          absl::string_view kernel_name,
                          absl::string_view initrd,
                          absl::string_view initrd_name,
                          const LinuxBootOptions& options);
  absl::Status Boot();
  absl::StatusOr<std::string> Call(absl::string_view function,
                                   absl::string_view input);

  void Pause();
  void Resume();
  bool paused() const;
  std::string console() const;
  PhaseReport report() const;
  absl::Status failure() const;
  absl::StatusOr<std::string> ReadMemory(uint64_t address, uint64_t size) const;

 private:
  enum class State { kCreated, kLoaded, kReady, kFailed };

  explicit LinuxVm(const VmConfig& config);
  void OnSerialByte(char c);
  void OnAgentBytes(absl::string_view bytes);
  // Sends `message` and waits for the agent's next message until
  // `timeout` (paused time not counted) or the machine's end.
  absl::StatusOr<AgentMessage> Exchange(const std::string& message,
                                        absl::Duration timeout,
                                        absl::string_view what);
  // Waits for the next agent message; an error says why none came.
  absl::StatusOr<AgentMessage> WaitForMessage(absl::Time start,
                                              absl::Duration timeout,
                                              absl::string_view what);
  absl::Status Fail(absl::Status error);
  // The machine's end as a status naming what happened.
  absl::Status DescribeEnd() const;
  std::string LastConsoleLines(int lines) const;

  VmConfig config_;
  Console console_;
  std::unique_ptr<linuxvm::LinuxMachine> machine_;
  LinuxBootOptions boot_options_;

  mutable std::mutex operation_mutex_;  // one operation at a time
  State state_ = State::kCreated;
  absl::Status failure_;

  mutable std::mutex mutex_;  // guards what the vCPU threads touch
  std::condition_variable changed_;
  std::string console_line_;  // the line being written to the UART
  linuxvm::AgentDecoder decoder_;
  std::deque<AgentMessage> messages_;
  absl::Status agent_error_;
  // When the agent's first line appeared; when the current pause began.
  absl::Time agent_started_ = absl::InfinitePast();
  absl::Time pause_started_ = absl::InfinitePast();
  absl::Duration paused_total_;
  PhaseReport report_;
};

}  // namespace thaw::internal

#endif  // THAW_LIB_LINUXVM_LINUX_VM_H_
