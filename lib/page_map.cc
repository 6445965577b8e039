#include "lib/page_map.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "lib/errno_status.h"

namespace thaw {

absl::StatusOr<PageMap> PageMap::Read(const void* base, uint64_t size) {
  constexpr uint64_t kPage = 4096;
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open /proc/self/pagemap", errno);
  PageMap map;
  map.entries_.resize(size / kPage);
  const uint64_t first = reinterpret_cast<uint64_t>(base) / kPage;
  uint64_t done = 0;  // bytes of entries read
  const uint64_t total = map.entries_.size() * sizeof(uint64_t);
  auto* out = reinterpret_cast<uint8_t*>(map.entries_.data());
  while (done < total) {
    ssize_t n = pread(fd, out + done, total - done, first * 8 + done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      close(fd);
      return ErrnoStatus("read /proc/self/pagemap", e);
    }
    done += n;
  }
  close(fd);
  return map;
}

}  // namespace thaw
