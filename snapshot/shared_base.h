// SharedBase: a snapshot image decompressed once into a memfd that any
// number of Vms map copy-on-write (CopyOnWriteMemory). Reads share the
// memfd's pages; each Vm's writes go to its own copies, so every clone keeps
// its own state, and a restore after the first costs an mmap plus the vCPU
// state. Zero chunks are holes in the memfd: they take no memory.
//
// There is no cache here: whoever builds a base decides how long it lives
// (a thaw::Snapshot handle keeps the one built through it; each Vm mapping
// it holds a reference too).
//
// Thread safety: immutable once built.
#ifndef THAW_SNAPSHOT_SHARED_BASE_H_
#define THAW_SNAPSHOT_SHARED_BASE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "snapshot/restore_counters.h"
#include "snapshot/snapshot_file.h"

namespace thaw::snapshot {

class SharedBase {
 public:
  // Decompresses `image` into a new memfd, counting reads in `counters`.
  static absl::StatusOr<std::shared_ptr<const SharedBase>> Build(
      const SnapshotImage& image, RestoreCounters& counters);
  ~SharedBase();
  SharedBase(const SharedBase&) = delete;
  SharedBase& operator=(const SharedBase&) = delete;

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }

 private:
  SharedBase(int fd, uint64_t size) : fd_(fd), size_(size) {}
  int fd_;
  uint64_t size_;
};

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_SHARED_BASE_H_
