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

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/console.h"
#include "lib/linuxvm/agent_messages.h"
#include "lib/linuxvm/linux_machine.h"
#include "lib/snapshot_state.h"
#include "lib/vm_impl.h"
#include "snapshot/memory_source.h"
#include "thaw/options.h"
#include "thaw/report.h"

namespace thaw::internal {

using linuxvm::AgentMessage;

// InvalidArgument naming the field for a VmConfig a Linux VM cannot take.
absl::Status CheckLinuxVmConfig(const VmConfig& config);

class LinuxVm final : public VmImpl {
 public:
  // Unavailable where KVM cannot run it.
  static absl::StatusOr<std::unique_ptr<LinuxVm>> Create(
      const VmConfig& config);
  // The machine in `state`'s snapshot, its memory through options.engine;
  // running when this returns. `config` is the snapshot's, with the
  // restore's settings, already checked (RestoreVm). The agent gets the new
  // generation and fresh entropy (and reseeds the kernel's CRNG) before the
  // first call.
  static absl::StatusOr<std::unique_ptr<LinuxVm>> Restore(
      SnapshotState& state, const VmConfig& config,
      const RestoreOptions& options, absl::Time start);
  ~LinuxVm();

  BackendKind backend() const override { return BackendKind::kKvm; }
  const VmConfig& config() const override { return config_; }

  // A Linux VM takes a kernel; a guest, a program or a host function is
  // FailedPrecondition or Unimplemented naming why.
  absl::Status LoadGuestImage(absl::Span<const uint8_t> elf,
                              absl::string_view name) override;
  absl::Status LoadProgram(absl::Span<const uint8_t> elf,
                           absl::string_view name,
                           const ProgramOptions& options) override;
  absl::Status LoadKernel(absl::string_view kernel,
                          absl::string_view kernel_name,
                          absl::string_view initrd,
                          absl::string_view initrd_name,
                          const LinuxBootOptions& options) override;
  absl::Status Boot() override;
  absl::StatusOr<std::string> Call(absl::string_view function,
                                   absl::string_view input) override;
  absl::Status RegisterHostFunction(std::string name, HostFunction fn) override;

  // The whole machine, paused for the time it takes, between calls.
  absl::Status Snapshot(const std::string& path,
                        const SnapshotOptions& options) override;
  // For a Vm restored with RestoreEngine::kSharedBase: a new machine over
  // the same memory with the pages written since put back, the snapshot's
  // state, a new generation and fresh entropy. Works on a failed Vm too.
  absl::Status Reset() override;
  absl::Status WriteWorkingSet(const snapshot::SecretKey* key) override;
  // Zero: a Linux VM's system calls are its kernel's.
  ProgramStats program_stats() override { return {}; }
  RestoreStats restore_stats() override;

  void Pause() override;
  void Resume() override;
  bool paused() const override;
  // Queues bytes for the guest to read from its console (ttyS0); returns
  // how many fit (the UART holds SerialPort::kInputLimit).
  absl::StatusOr<size_t> WriteConsole(absl::string_view bytes) override;
  std::string console() override;
  PhaseReport report() override;
  absl::Status failure() override;
  absl::StatusOr<std::string> ReadMemory(uint64_t address,
                                         uint64_t size) override;
  // Unimplemented: the kernel's symbols are not read.
  absl::StatusOr<uint64_t> FindSymbol(absl::string_view name) override;

 private:
  enum class State { kCreated, kLoaded, kReady, kFailed };

  explicit LinuxVm(const VmConfig& config);
  // Creates the machine over source_'s memory (held before its first
  // instruction if the Vm is paused).
  absl::Status StartMachine();
  // Puts the restored image's machine state into the new machine, starts
  // it, and arranges the reseed before the next call.
  absl::Status ResumeFromImage();
  // Sends RESEED (generation_, fresh entropy) and waits for RESEEDED.
  absl::Status Reseed();
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
  // Guest memory: fresh anonymous memory, or a restore engine's.
  std::unique_ptr<snapshot::MemorySource> source_;
  // Reset replaces the machine: the methods callable from any thread
  // (Pause, Resume, paused, WriteConsole) reach it under machine_mutex_;
  // operations, which Reset excludes, read it without. Never taken while
  // mutex_ is held.
  mutable std::mutex machine_mutex_;
  std::unique_ptr<linuxvm::LinuxMachine> machine_;
  // What a source's error callback may stop (cleared before the machine
  // goes).
  std::atomic<linuxvm::LinuxMachine*> machine_for_errors_{nullptr};
  LinuxBootOptions boot_options_;
  std::string kernel_name_;
  // For a restored Vm: the image (unchanged chunks, diff parents, working
  // sets), the restore generation, and what is still to do.
  std::shared_ptr<const snapshot::SnapshotImage> restored_image_;
  uint64_t generation_ = 0;
  bool reseed_pending_ = false;
  bool recording_ = false;
  std::vector<uint32_t> working_set_;
  RestoreStats stats_;

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
