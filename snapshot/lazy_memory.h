// LazyMemory: the lazy and lazy+prefetch engines as a MemorySource. Guest
// memory starts empty and is filled on first touch by a LazyPager
// (snapshot/lazy_pager.h), which also prefetches the recorded working set
// and records a new one on request.
//
// For the next snapshot, a chunk the pager never installed is still the
// image's, so it is copied as a stored frame, not read and recompressed.
//
// Thread safety: see MemorySource.
#ifndef THAW_SNAPSHOT_LAZY_MEMORY_H_
#define THAW_SNAPSHOT_LAZY_MEMORY_H_

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "snapshot/lazy_pager.h"
#include "snapshot/memory_source.h"
#include "snapshot/snapshot_file.h"

namespace thaw::snapshot {

class LazyMemory final : public MemorySource {
 public:
  struct Options {
    bool prefetch = false;    // bring the recorded working set in first
    bool record = false;      // record chunks in first-touch order
    bool huge_pages = false;  // 2 MiB pages (snapshot/guest_mapping.h)
  };
  static absl::StatusOr<std::unique_ptr<LazyMemory>> Start(
      std::shared_ptr<const SnapshotImage> image, Options options);
  ~LazyMemory() override;

  void SetErrorCallback(std::function<void()> on_error) override;
  void Stop() override;
  absl::Status error() const override;
  absl::Status WaitForVerification() override;
  absl::StatusOr<std::function<ChunkHint(uint64_t chunk)>> ChunkHints(
      uint32_t chunk_size) override;
  std::vector<uint32_t> StopRecording() override;

 private:
  LazyMemory(uint8_t* base, uint64_t size, PageBacking backing,
             std::shared_ptr<const SnapshotImage> image)
      : MemorySource(base, size, backing), image_(std::move(image)) {}
  void NotifyError();

  std::shared_ptr<const SnapshotImage> image_;
  std::unique_ptr<LazyPager> pager_;
  mutable std::mutex mutex_;
  std::function<void()> on_error_;  // guarded by mutex_
  absl::Status stopped_error_;      // pager_'s error, kept at Stop()
};

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_LAZY_MEMORY_H_
