#include "base/pwrite_full.h"

#include <unistd.h>

#include <cerrno>

#include "base/errno_status.h"

namespace thaw {

absl::Status PwriteFull(int fd, absl::Span<const uint8_t> bytes,
                        uint64_t offset, absl::string_view context) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n =
        pwrite(fd, bytes.data() + done, bytes.size() - done, offset + done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoStatus(context, n < 0 ? errno : ENOSPC);
    done += n;
  }
  return absl::OkStatus();
}

}  // namespace thaw
