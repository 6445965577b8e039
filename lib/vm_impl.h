// VmImpl: what a thaw::Vm forwards every method to. A Vm lives one of three
// ways, each an implementation of this interface:
//  - LocalVm (lib/local_vm.h): a VmCore in this process, running a function
//    guest or a Linux program on one vCPU;
//  - WorkerClient (lib/worker/worker_client.h): the same in a confined
//    worker process, reached through its protocol;
//  - LinuxVm (lib/linuxvm/linux_vm.h): a whole Linux machine on KVM.
// Each enforces thaw::Vm's thread-safety contract itself. The defaults here
// answer for what only some of them have. Not part of the public API.
#ifndef THAW_LIB_VM_IMPL_H_
#define THAW_LIB_VM_IMPL_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "thaw/options.h"
#include "thaw/report.h"
#include "thaw/vm.h"

namespace thaw::snapshot {
class SecretKey;
}  // namespace thaw::snapshot

namespace thaw::internal {

class VmImpl {
 public:
  virtual ~VmImpl() = default;

  virtual BackendKind backend() const = 0;
  virtual const VmConfig& config() const = 0;

  // Operations (one at a time, as thaw::Vm says).
  virtual absl::Status LoadGuestImage(absl::Span<const uint8_t> elf,
                                      absl::string_view name) = 0;
  virtual absl::Status LoadProgram(absl::Span<const uint8_t> elf,
                                   absl::string_view name,
                                   const ProgramOptions& options) = 0;
  // FailedPrecondition: only a Linux VM loads a kernel.
  virtual absl::Status LoadKernel(absl::string_view kernel,
                                  absl::string_view kernel_name,
                                  absl::string_view initrd,
                                  absl::string_view initrd_name,
                                  const LinuxBootOptions& options);
  virtual absl::Status Boot() = 0;
  virtual absl::StatusOr<std::string> Call(absl::string_view function,
                                           absl::string_view input) = 0;
  // `name` and `fn` are non-empty (thaw::Vm checks).
  virtual absl::Status RegisterHostFunction(std::string name,
                                            HostFunction fn) = 0;
  virtual absl::Status Snapshot(const std::string& path,
                                const SnapshotOptions& options) = 0;
  virtual absl::Status Reset() = 0;
  // `key`: sign the rewritten file with it (nullptr: unsigned).
  virtual absl::Status WriteWorkingSet(const snapshot::SecretKey* key) = 0;
  virtual absl::Status failure() = 0;
  virtual ProgramStats program_stats() = 0;

  // From any thread.
  virtual RestoreStats restore_stats() = 0;
  virtual void Pause() = 0;
  virtual void Resume() = 0;
  virtual bool paused() const = 0;
  // Unimplemented: only a Linux VM has console input.
  virtual absl::StatusOr<size_t> WriteConsole(absl::string_view bytes);
  virtual std::string console() = 0;
  virtual PhaseReport report() = 0;
  virtual absl::StatusOr<std::string> ReadMemory(uint64_t address,
                                                 uint64_t size) = 0;
  virtual absl::StatusOr<uint64_t> FindSymbol(absl::string_view name) = 0;
};

}  // namespace thaw::internal

#endif  // THAW_LIB_VM_IMPL_H_
