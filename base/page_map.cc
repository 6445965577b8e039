#include "base/page_map.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "base/errno_status.h"

namespace thaw {
namespace {

// The PAGEMAP_SCAN interface (include/uapi/linux/fs.h, Linux 6.7), declared
// here because Debian 12's kernel headers predate it. The layout is uapi and
// stable.
struct PageRegion {
  uint64_t start, end, categories;
};
struct PmScanArg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
  uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);
constexpr uint64_t kPageIsFile = 1 << 2;
constexpr uint64_t kPageIsPresent = 1 << 3;
constexpr uint64_t kPageIsSwapped = 1 << 4;
constexpr uint64_t kPage = 4096;

std::atomic<bool> scan_unsupported{false};

// PrivateRuns through PAGEMAP_SCAN; Unimplemented if the kernel lacks it.
absl::StatusOr<PageRuns> ScanPrivateRuns(int fd, const void* base,
                                         uint64_t size) {
  const uint64_t start = reinterpret_cast<uint64_t>(base);
  PageRuns runs;
  std::vector<PageRegion> regions(256);
  PmScanArg arg{};
  arg.size = sizeof(arg);
  arg.start = start;
  arg.end = start + size;
  while (arg.start < arg.end) {
    arg.vec = reinterpret_cast<uint64_t>(regions.data());
    arg.vec_len = regions.size();
    // Touched (present or swapped) and not a file page: a private copy.
    arg.category_inverted = kPageIsFile;
    arg.category_mask = kPageIsFile;
    arg.category_anyof_mask = kPageIsPresent | kPageIsSwapped;
    arg.return_mask = kPageIsPresent | kPageIsSwapped;
    // Safe: arg and regions are ours and sized as the uapi says.
    long n = ioctl(fd, kPagemapScan, &arg);
    if (n < 0) {
      if (errno == ENOTTY || errno == EINVAL || errno == EOPNOTSUPP) {
        return absl::UnimplementedError("PAGEMAP_SCAN");
      }
      return ErrnoStatus("PAGEMAP_SCAN", errno);
    }
    for (long i = 0; i < n; ++i) {
      uint64_t first = (regions[i].start - start) / kPage;
      uint64_t end = (regions[i].end - start) / kPage;
      if (!runs.empty() && runs.back().second == first) {
        runs.back().second = end;  // regions split by category; merge
      } else {
        runs.emplace_back(first, end);
      }
    }
    if (arg.walk_end <= arg.start) break;  // no progress: done
    arg.start = arg.walk_end;
  }
  return runs;
}

// /proc/self/pagemap, opened once and kept: a process that may not open
// files any more (a confined worker) still reads it.
absl::StatusOr<int> PagemapFd() {
  static const int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  static const int error = fd < 0 ? errno : 0;
  if (fd < 0) return ErrnoStatus("open /proc/self/pagemap", error);
  return fd;
}

}  // namespace

absl::Status PageMap::OpenOnce() { return PagemapFd().status(); }

absl::StatusOr<PageRuns> PageMap::PrivateRuns(const void* base, uint64_t size) {
  if (!scan_unsupported.load(std::memory_order_relaxed)) {
    auto fd = PagemapFd();
    if (!fd.ok()) return fd.status();
    auto runs = ScanPrivateRuns(*fd, base, size);
    if (runs.ok() || !absl::IsUnimplemented(runs.status())) return runs;
    scan_unsupported.store(true, std::memory_order_relaxed);
  }
  auto map = Read(base, size);
  if (!map.ok()) return map.status();
  PageRuns runs;
  for (uint64_t p = 0; p < map->pages(); ++p) {
    if (!map->private_copy(p)) continue;
    uint64_t end = p;
    while (end < map->pages() && map->private_copy(end)) ++end;
    runs.emplace_back(p, end);
    p = end;
  }
  return runs;
}

absl::StatusOr<PageMap> PageMap::Read(const void* base, uint64_t size) {
  constexpr uint64_t kPage = 4096;
  auto pagemap = PagemapFd();
  if (!pagemap.ok()) return pagemap.status();
  const int fd = *pagemap;
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
      return ErrnoStatus("read /proc/self/pagemap", n < 0 ? errno : EIO);
    }
    done += n;
  }
  return map;
}

}  // namespace thaw
