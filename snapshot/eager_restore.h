// The eager restore engine: every non-zero chunk of a snapshot image is read
// (io_uring, batched) and decompressed, by several threads at once, straight
// into its place in `memory` before the vCPU starts. Zero chunks are not
// touched: `memory` must already read as zeros there (fresh anonymous
// memory, or a new memfd).
#ifndef THAW_SNAPSHOT_EAGER_RESTORE_H_
#define THAW_SNAPSHOT_EAGER_RESTORE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "snapshot/restore_counters.h"
#include "snapshot/snapshot_file.h"

namespace thaw::snapshot {

absl::Status RestoreEagerly(const SnapshotImage& image, uint8_t* memory,
                            RestoreCounters& counters);

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_EAGER_RESTORE_H_
