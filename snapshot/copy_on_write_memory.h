// CopyOnWriteMemory: guest memory as a private (copy-on-write) mapping of a
// file that holds a snapshot's decompressed image. Reads share the file's
// pages; the Vm's writes go to private copies and never reach the file.
// The shared-base engine maps its memfd this way (snapshot/shared_base.h);
// the benchmarks map a raw memory file the same way, as Firecracker does.
//
// A page changed since the restore has a private copy (/proc/self/pagemap:
// anonymous, not file-backed), so ChangedPages finds them without tracking
// writes (a superset once Revert has run: a page put back keeps its private
// copy). Revert copies the image's bytes back over the private copies
// through a read-only shared view of the file, and leaves them mapped, so
// the next call takes no fault on them (dropping them would cost one fault
// per page at the next touch, dearer than the copy on these machines). For
// the next snapshot, a chunk without a private page is still the image's.
//
// Thread safety: see MemorySource.
#ifndef THAW_SNAPSHOT_COPY_ON_WRITE_MEMORY_H_
#define THAW_SNAPSHOT_COPY_ON_WRITE_MEMORY_H_

#include <memory>

#include "absl/status/statusor.h"
#include "snapshot/memory_source.h"

namespace thaw::snapshot {

class CopyOnWriteMemory final : public MemorySource {
 public:
  // Maps `size` bytes of `fd` MAP_PRIVATE. `keep` (may be null) is held as
  // long as the mapping: the owner of `fd`, for instance.
  static absl::StatusOr<std::unique_ptr<CopyOnWriteMemory>> Map(
      int fd, uint64_t size, std::shared_ptr<const void> keep);
  ~CopyOnWriteMemory() override;

  absl::StatusOr<std::function<ChunkHint(uint64_t chunk)>> ChunkHints(
      uint32_t chunk_size) override;
  bool can_revert() const override { return true; }
  absl::StatusOr<PageRuns> ChangedPages(uint64_t offset,
                                        uint64_t length) override;
  absl::Status Revert(const PageRuns& runs) override;

  // Counts what building the mapped image cost, for a restore's stats.
  RestoreCounters& mutable_counters() { return counters_; }

 private:
  CopyOnWriteMemory(uint8_t* base, uint64_t size, int fd,
                    std::shared_ptr<const void> keep)
      : MemorySource(base, size), fd_(fd), keep_(std::move(keep)) {}
  int fd_;  // the image file; valid as long as keep_ (or the caller) says
  std::shared_ptr<const void> keep_;
  // The image as the file holds it, mapped at the first Revert.
  const uint8_t* image_view_ = nullptr;
};

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_COPY_ON_WRITE_MEMORY_H_
