// SharedBase: a snapshot image decompressed once into a memfd that any
// number of Vms in this process map MAP_PRIVATE. Reads share the memfd's
// pages; a Vm's writes go to its own copies (copy-on-write), so every clone
// keeps its own state, and the n-th restore of a snapshot costs an mmap plus
// the vCPU state. The memfd lives while any Vm maps it, and the most recently
// used few stay while idle (DropIdle() frees those).
//
// Zero chunks are holes in the memfd: they take no memory until written.
//
// Thread safety: Get() may be called from any thread; two threads asking for
// the same snapshot at once share one decompression.
#ifndef THAW_SNAPSHOT_SHARED_BASE_H_
#define THAW_SNAPSHOT_SHARED_BASE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "snapshot/restore_counters.h"
#include "snapshot/snapshot_file.h"

namespace thaw::snapshot {

class SharedBase {
 public:
  // The base for `image` (keyed by its snapshot id), built on first use.
  // `built` is set when this call decompressed it.
  static absl::StatusOr<std::shared_ptr<const SharedBase>> Get(
      std::shared_ptr<const SnapshotImage> image, RestoreCounters& counters,
      bool* built);
  ~SharedBase();
  // Frees the bases kept while no Vm uses them.
  static void DropIdle();

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }

 private:
  SharedBase(int fd, uint64_t size) : fd_(fd), size_(size) {}
  int fd_;
  uint64_t size_;
};

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_SHARED_BASE_H_
