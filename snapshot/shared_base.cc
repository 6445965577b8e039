#include "snapshot/shared_base.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

#include "base/errno_status.h"
#include "snapshot/eager_restore.h"

namespace thaw::snapshot {

SharedBase::~SharedBase() { close(fd_); }

absl::StatusOr<std::shared_ptr<const SharedBase>> SharedBase::Build(
    const SnapshotImage& image, RestoreCounters& counters) {
  const uint64_t size = image.memory_size();
  int fd = memfd_create("thaw-shared-base", MFD_CLOEXEC);
  if (fd < 0) return ErrnoStatus("memfd_create for a shared base", errno);
  std::shared_ptr<const SharedBase> base(new SharedBase(fd, size));
  if (ftruncate(fd, size) != 0) {
    return ErrnoStatus("size the shared-base memfd", errno);
  }
  // Safe: a fresh mapping of our own memfd, unmapped below.
  void* view = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (view == MAP_FAILED) return ErrnoStatus("mmap the shared base", errno);
  absl::Status status =
      RestoreEagerly(image, static_cast<uint8_t*>(view), counters);
  munmap(view, size);
  if (!status.ok()) return status;
  return base;
}

}  // namespace thaw::snapshot
