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
  // Vm::Restore; with memory_fd >= 0, guest memory is that file mapped
  // MAP_PRIVATE instead of what options.engine would build.
  static absl::StatusOr<std::unique_ptr<Vm>> Restore(
      const std::string& path, const RestoreOptions& options, int memory_fd);

  // Firecracker's way of restoring, as the benchmarks' baseline: guest
  // memory is `memory_fd`, the raw uncompressed image (see
  // WriteRawMemoryFile), mapped MAP_PRIVATE so pages come in through
  // ordinary page faults; the vCPU and ABI state come from `snapshot_path`.
  static absl::StatusOr<std::unique_ptr<Vm>> RestoreOverMemoryFile(
      const std::string& snapshot_path, int memory_fd,
      const RestoreOptions& options);
};

}  // namespace thaw::internal

#endif  // THAW_LIB_VM_INTERNAL_H_
