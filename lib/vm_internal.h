// Ways into thaw::Vm for thaw's own tools (the benchmarks), not part of the
// public API: nothing here is stable.
#ifndef THAW_LIB_VM_INTERNAL_H_
#define THAW_LIB_VM_INTERNAL_H_

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
};

}  // namespace thaw::internal

#endif  // THAW_LIB_VM_INTERNAL_H_
