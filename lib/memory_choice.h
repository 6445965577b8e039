// The one place a restore's engine is chosen: RestoreOptions::engine
// becomes the MemorySource (snapshot/memory_source.h) that builds the
// restored Vm's memory.
#ifndef THAW_LIB_MEMORY_CHOICE_H_
#define THAW_LIB_MEMORY_CHOICE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "lib/snapshot_state.h"
#include "snapshot/memory_source.h"
#include "thaw/options.h"
#include "thaw/report.h"

namespace thaw::internal {

// The memory for a Vm restored from `snapshot` with `options`. Sets
// *built_base when this call built the snapshot's shared base.
absl::StatusOr<std::unique_ptr<snapshot::MemorySource>> RestoreMemory(
    SnapshotState& snapshot, const RestoreOptions& options, bool* built_base);

// Adds what `source` counted (faults, chunks read, pages mapped...) and its
// page backing to `stats`.
void AddSourceCounters(const snapshot::MemorySource& source,
                       RestoreStats& stats);

}  // namespace thaw::internal

#endif  // THAW_LIB_MEMORY_CHOICE_H_
