// Ways into thaw::Vm for thaw's own tools (the benchmarks), not part of the
// public API: nothing here is stable.
#ifndef THAW_LIB_VM_INTERNAL_H_
#define THAW_LIB_VM_INTERNAL_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "thaw/vm.h"

namespace thaw::internal {

struct VmAccess {
  // Firecracker's way of restoring, as the benchmarks' baseline: guest
  // memory is `memory_fd`, the raw uncompressed image (see the benchmarks'
  // WriteRawMemoryFile), mapped MAP_PRIVATE (CopyOnWriteMemory) so pages
  // come in through ordinary page faults; the vCPU and guest state come from
  // `snapshot`. options.engine is only reported in restore_stats().
  static absl::StatusOr<std::unique_ptr<Vm>> RestoreOverMemoryFile(
      const Snapshot& snapshot, int memory_fd, const RestoreOptions& options);

  // A Vm handle over a monitor that is ready to run.
  static std::unique_ptr<Vm> Wrap(std::unique_ptr<VmCore> core);

  // The handle's shared state, for RestoreOverMemoryFile.
  static internal::SnapshotState& State(const Snapshot& snapshot);

  // For the worker process (lib/worker/), which opens no files: a handle
  // on the full snapshot open at `fd` (taken over), and a snapshot written
  // into the empty file `fd` (the caller keeps it and puts it in place).
  static absl::StatusOr<Snapshot> OpenDescriptor(int fd,
                                                 const std::string& name,
                                                 const VerifyKey* key);
  // LoadProgram from bytes the host read (the program's files come through
  // the worker's host: linux_abi::SetFileSourceFactory).
  static absl::Status LoadProgramImage(Vm& vm, absl::Span<const uint8_t> elf,
                                       absl::string_view name,
                                       const ProgramOptions& options);
  static absl::Status SnapshotToDescriptor(Vm& vm, int fd,
                                           const std::string& name,
                                           const SnapshotOptions& options);

  // What a Vm restored with record_working_set recorded (for the worker,
  // whose host rewrites the snapshot file).
  struct RecordedWorkingSet {
    std::vector<uint32_t> chunks;         // first-touch order
    std::vector<uint32_t> written_pages;  // ascending
  };
  static absl::StatusOr<RecordedWorkingSet> WorkingSet(Vm& vm);

  // A Vm restored in a worker process of its own (worker_process).
  static absl::StatusOr<std::unique_ptr<Vm>> RestoreInWorker(
      const SnapshotState& state, const RestoreOptions& options);
  // The worker process's id, or -1 for a Vm that lives in this process
  // (for tests that kill it).
  static pid_t WorkerPid(const Vm& vm);
  // With THAW_WORKER_SELF_TEST set when it started: what the worker's
  // confinement let through (each probe and its result).
  static std::string WorkerSelfTest(const Vm& vm);
};

}  // namespace thaw::internal

#endif  // THAW_LIB_VM_INTERNAL_H_
