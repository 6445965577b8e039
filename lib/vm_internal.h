// Ways into thaw::Vm for thaw's own tools (the benchmarks), not part of the
// public API: nothing here is stable.
#ifndef THAW_LIB_VM_INTERNAL_H_
#define THAW_LIB_VM_INTERNAL_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "thaw/vm.h"

namespace thaw::snapshot {
class SnapshotImage;
struct WriteRequest;  // snapshot/writer.h
}  // namespace thaw::snapshot

namespace thaw::internal {

class LocalVm;       // lib/local_vm.h
class WorkerClient;  // lib/worker/worker_client.h

// For a diff snapshot at `path` against `parent_path`: checks that the
// parent is the snapshot `restored_from` holds and is not `path` itself,
// and returns the parent's path as the new file records it (relative when
// both sit in one directory).
absl::StatusOr<std::string> CheckDiffParent(
    const std::string& path, const std::string& parent_path,
    const snapshot::SnapshotImage& restored_from);

// The parts of a snapshot's WriteRequest every kind of Vm fills alike:
// path and options, the image the Vm was restored from (`restored_from`,
// null if booted: its unchanged chunks are copied), `working_set` when the
// chunk size it was recorded in still holds, and the diff parent
// (CheckDiffParent, unless a worker's host has checked it:
// `parent_checked`). The caller adds memory, hints and the manifest.
absl::StatusOr<snapshot::WriteRequest> BeginWriteRequest(
    const std::string& path, const SnapshotOptions& options,
    std::shared_ptr<const snapshot::SnapshotImage> restored_from,
    std::vector<uint32_t> working_set, bool parent_checked);

struct VmAccess {
  // Firecracker's way of restoring, as the benchmarks' baseline: guest
  // memory is `memory_fd`, the raw uncompressed image (see the benchmarks'
  // WriteRawMemoryFile), mapped MAP_PRIVATE (CopyOnWriteMemory) so pages
  // come in through ordinary page faults; the vCPU and guest state come from
  // `snapshot`. options.engine is only reported in restore_stats().
  static absl::StatusOr<std::unique_ptr<Vm>> RestoreOverMemoryFile(
      const Snapshot& snapshot, int memory_fd, const RestoreOptions& options);

  // A Vm handle over a Vm that is ready to run.
  static std::unique_ptr<Vm> Wrap(std::unique_ptr<VmImpl> impl);
  // Where `vm` lives, if it is that kind; nullptr otherwise.
  static LocalVm* Local(Vm& vm);
  static WorkerClient* Worker(const Vm& vm);

  // The handle's shared state, for RestoreOverMemoryFile.
  static internal::SnapshotState& State(const Snapshot& snapshot);

  // For the worker process (lib/worker/), which opens no files: a handle
  // on the snapshot and its parents open at `fds` (taken over; fds[0] the
  // snapshot), and a snapshot written into the empty file `fd` (the caller
  // keeps it and puts it in place). For a diff snapshot there, the host has
  // checked options.parent against the file the Vm was restored from, and
  // options.parent is the path to record in the file, as it is.
  static absl::StatusOr<Snapshot> OpenDescriptors(
      std::vector<int> fds, const std::vector<std::string>& names,
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
