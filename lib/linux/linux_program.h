// LinuxProgram: the runtime of Linux program guests — unmodified static x86-64
// Linux programs running in ring 3 on identity-mapped memory, their system
// calls served by the host (lib/linux/syscalls.h), TinyKVM's model. Calls
// reach the program through its request channel (include/thaw/program.h):
// Boot() runs it until its first read of THAW_PROGRAM_FD parks it; each
// Call() hands that read a request and runs the program until it has
// written its reply and reads again.
//
// Not yet: dynamically linked programs, host files (the read-only view),
// snapshots of program guests, the KVM backend's syscall entry, host
// functions. Each says so with Unimplemented or FailedPrecondition.
//
// Thread safety: see GuestRuntime.
#ifndef THAW_LIB_LINUX_LINUX_PROGRAM_H_
#define THAW_LIB_LINUX_LINUX_PROGRAM_H_

#include <memory>
#include <string>

#include "lib/console.h"
#include "lib/guest_memory.h"
#include "lib/guest_runtime.h"
#include "lib/linux/syscalls.h"

namespace thaw {

// InvalidArgument naming the field if `config` cannot hold a program.
absl::Status CheckProgramConfig(const VmConfig& config);

// The file view a program snapshot names (its ProgramOptions::files).
std::vector<FileMount> SavedMounts(const snapshot::proto::LinuxProgram& saved);

class LinuxProgram final : public GuestRuntime,
                           private linux_abi::ProgramHost,
                           private backend::HypercallHandler {
 public:
  // `config`, `memory` and `backend` outlive the runtime.
  LinuxProgram(const VmConfig& config, GuestMemory& memory,
               backend::Backend& backend)
      : config_(config),
        memory_(memory),
        console_(config),
        backend_(&backend) {}

  backend::HypercallHandler& handler() override { return *this; }
  absl::Status Load(absl::Span<const uint8_t> image, absl::string_view name,
                    const ProgramOptions& options,
                    backend::Backend& backend) override;
  absl::Status BeginBoot() override;
  absl::Status BeginCall(absl::string_view function,
                         absl::string_view input) override;
  absl::Status BeginBeforeSnapshot() override;
  Outcome Finish(absl::string_view what) override;
  absl::Status Save(snapshot::proto::Manifest& manifest) const override;
  absl::Status Restore(const snapshot::proto::Manifest& manifest,
                       absl::string_view path) override;
  VcpuState SnapshotState(const VcpuState& live) const override;
  absl::StatusOr<VcpuState> ResumeState(const VcpuState& saved) override;
  absl::Status Rewind() override;
  absl::Status NewIdentity(uint64_t generation) override;
  uint64_t generation() const override { return generation_; }
  PageRuns HostOwnedPages() const override;
  void RegisterHostFunction(std::string name, HostFunction fn) override;
  absl::StatusOr<uint64_t> FindSymbol(absl::string_view name) const override;
  std::string console() const override { return console_.Contents(); }
  ProgramStats program_stats() const override;

 private:
  enum class Request { kNone, kBoot, kCall, kBeforeSnapshot };

  // ProgramHost
  backend::SyscallResult ReadRequest(uint64_t address, uint64_t size) override;
  int64_t WriteReply(absl::Span<const uint8_t> bytes) override;
  void WriteConsole(absl::string_view text) override { console_.Write(text); }
  // HypercallHandler
  backend::HypercallResult Handle(const backend::Hypercall& call) override;
  backend::SyscallResult HandleSyscall(const backend::Syscall& call) override;

  // Queues a request frame and hands what fits to a parked read.
  absl::Status Send(uint16_t kind, absl::string_view name,
                    absl::string_view input);
  // Loads the dynamic loader `path` (PT_INTERP) from the file view among
  // the mappings; returns its base (AT_BASE) and entry point.
  absl::StatusOr<std::pair<uint64_t, uint64_t>> LoadInterpreter(
      absl::string_view program, const std::string& path);
  // "; its last output: ..." from the console, for errors ("" if none).
  std::string ConsoleTail() const;
  // Copies pending request bytes to guest [address, +size); their count.
  uint64_t Deliver(uint64_t address, uint64_t size);

  const VmConfig& config_;
  GuestMemory& memory_;
  Console console_;
  backend::Backend* backend_;
  std::vector<FileMount> mounts_;
  std::shared_ptr<const linux_abi::FileSource> view_;
  // For a restored program: its state in the snapshot, for Reset.
  std::unique_ptr<snapshot::proto::LinuxProgram> saved_;
  std::unique_ptr<linux_abi::Syscalls> syscalls_;
  std::string name_;

  Request request_ = Request::kNone;
  std::string function_;
  std::string pending_;  // request bytes not yet read
  uint64_t pending_at_ = 0;
  bool parked_ = false;  // in a read of THAW_PROGRAM_FD, RAX not written
  uint64_t parked_address_ = 0, parked_size_ = 0;
  std::string reply_;
  bool reply_too_large_ = false;
  bool restored_ = false;  // the next request carries FLAG_RESTORED
  uint64_t generation_ = 0;
};

}  // namespace thaw

#endif  // THAW_LIB_LINUX_LINUX_PROGRAM_H_
