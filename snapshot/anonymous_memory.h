// AnonymousMemory: guest memory in fresh anonymous pages. A booted Vm runs
// in it, and the eager engine restores into it: every non-zero chunk read
// and decompressed (snapshot/eager_restore.h) before the guest runs.
//
// For the next snapshot, a page never touched is known to be zero
// (/proc/self/pagemap), so a sparse guest is written without reading it.
//
// Thread safety: see MemorySource.
#ifndef THAW_SNAPSHOT_ANONYMOUS_MEMORY_H_
#define THAW_SNAPSHOT_ANONYMOUS_MEMORY_H_

#include <memory>

#include "absl/status/statusor.h"
#include "snapshot/memory_source.h"
#include "snapshot/snapshot_file.h"

namespace thaw::snapshot {

class AnonymousMemory final : public MemorySource {
 public:
  // `size` bytes of zeros, in huge pages if `huge_pages`
  // (snapshot/guest_mapping.h).
  static absl::StatusOr<std::unique_ptr<AnonymousMemory>> Create(
      uint64_t size, bool huge_pages = false);
  // The eager engine: `image`'s memory, read and decompressed in full.
  static absl::StatusOr<std::unique_ptr<AnonymousMemory>> RestoreEagerly(
      const SnapshotImage& image, bool huge_pages = false);

  absl::StatusOr<std::function<ChunkHint(uint64_t chunk)>> ChunkHints(
      uint32_t chunk_size) override;

 private:
  using MemorySource::MemorySource;
};

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_ANONYMOUS_MEMORY_H_
