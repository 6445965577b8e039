#include "snapshot/guest_mapping.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/errno_status.h"

namespace thaw::snapshot {
namespace {

// The huge-page lines of /proc/meminfo, read in one pass.
struct HugePageInfo {
  uint64_t size_kib = 0;  // Hugepagesize
  uint64_t free = 0;      // HugePages_Free
  uint64_t promised = 0;  // HugePages_Rsvd: free, but promised to a mapping
};
HugePageInfo ReadHugePageInfo() {
  HugePageInfo info;
  std::ifstream meminfo("/proc/meminfo");
  std::string name;
  uint64_t value = 0;
  while (meminfo >> name >> value) {
    if (name == "Hugepagesize:") info.size_kib = value;
    if (name == "HugePages_Free:") info.free = value;
    if (name == "HugePages_Rsvd:") info.promised = value;
    meminfo.ignore(256, '\n');
  }
  return info;
}

bool TransparentHugePagesOffered() {
  std::ifstream enabled("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  std::getline(enabled, line);
  // "always [madvise] never": anything but [never] honours MADV_HUGEPAGE.
  return !line.empty() && line.find("[never]") == std::string::npos;
}

absl::StatusOr<GuestMapping> MapReservedHuge(uint64_t size,
                                             absl::string_view what) {
  int fd = memfd_create("thaw-guest-memory", MFD_CLOEXEC | MFD_HUGETLB);
  if (fd < 0) return ErrnoStatus("memfd_create(MFD_HUGETLB)", errno);
  if (ftruncate(fd, size) != 0) {
    int e = errno;
    close(fd);
    return ErrnoStatus(absl::StrCat("size ", what, " in huge pages"), e);
  }
  // Not MAP_NORESERVE: every huge page is reserved now, so a shortage is
  // this error and never a SIGBUS while the guest runs. The memfd is ours
  // alone; the mapping keeps it alive.
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int e = errno;
  close(fd);
  if (base == MAP_FAILED) {
    return ErrnoStatus(
        absl::StrCat("mmap ", size, " bytes of ", what, " in huge pages"), e);
  }
  return GuestMapping{static_cast<uint8_t*>(base), PageBacking::kReservedHuge};
}

absl::StatusOr<GuestMapping> MapTransparentHuge(uint64_t size,
                                                absl::string_view what) {
  // 2 MiB-aligned, so that every 2 MiB of guest memory can be one page:
  // map 2 MiB more and trim both ends.
  void* raw = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) {
    return ErrnoStatus(absl::StrCat("mmap ", size, " bytes of ", what), errno);
  }
  const uint64_t start = reinterpret_cast<uint64_t>(raw);
  const uint64_t aligned = (start + kHugePage - 1) & ~(kHugePage - 1);
  // Safe: both trims are parts of the mapping made just above.
  if (aligned > start) munmap(raw, aligned - start);
  const uint64_t end = start + size + kHugePage;
  if (end > aligned + size) {
    munmap(reinterpret_cast<void*>(aligned + size), end - (aligned + size));
  }
  auto* base = reinterpret_cast<uint8_t*>(aligned);
  if (madvise(base, size, MADV_HUGEPAGE) != 0) {
    int e = errno;
    munmap(base, size);
    return ErrnoStatus(absl::StrCat("madvise(MADV_HUGEPAGE) on ", what), e);
  }
  return GuestMapping{base, PageBacking::kTransparentHuge};
}

}  // namespace

uint64_t FreeReservedHugePages() {
  const HugePageInfo info = ReadHugePageInfo();
  if (info.size_kib != kHugePage / 1024) return 0;
  return info.free > info.promised ? info.free - info.promised : 0;
}

absl::StatusOr<GuestMapping> MapGuestMemory(uint64_t size, bool huge_pages,
                                            absl::string_view what) {
  if (!huge_pages) {
    // MAP_NORESERVE: guest memory is touched sparsely; commit it page by
    // page.
    void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
      return ErrnoStatus(absl::StrCat("mmap ", size, " bytes of ", what),
                         errno);
    }
    return GuestMapping{static_cast<uint8_t*>(base), PageBacking::kSmall};
  }
  if (size % kHugePage != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " of ", size, " bytes: huge pages need a multiple of 2 MiB"));
  }
  const uint64_t pages = size / kHugePage;
  const uint64_t free = FreeReservedHugePages();
  if (free >= pages) return MapReservedHuge(size, what);
  if (TransparentHugePagesOffered()) return MapTransparentHuge(size, what);
  return absl::ResourceExhaustedError(absl::StrCat(
      "huge pages for ", size >> 20, " MiB of ", what, ": ", pages,
      " reserved 2 MiB pages are needed and ", free,
      " are free (raise vm.nr_hugepages), and transparent huge pages are "
      "off (/sys/kernel/mm/transparent_hugepage/enabled is [never])"));
}

absl::string_view PageBackingName(PageBacking backing) {
  switch (backing) {
    case PageBacking::kSmall:
      return "4 KiB";
    case PageBacking::kReservedHuge:
      return "2 MiB reserved (hugetlbfs)";
    case PageBacking::kTransparentHuge:
      return "2 MiB transparent";
  }
  return "?";
}

}  // namespace thaw::snapshot
