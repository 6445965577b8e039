#include "snapshot/copy_on_write_memory.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/errno_status.h"

namespace thaw::snapshot {
namespace {
constexpr uint64_t kPage = 4096;
}  // namespace

absl::StatusOr<std::unique_ptr<CopyOnWriteMemory>> CopyOnWriteMemory::Map(
    int fd, uint64_t size, std::shared_ptr<const void> keep) {
  // MAP_NORESERVE: private copies are made page by page as the guest writes.
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_NORESERVE, fd, 0);
  if (base == MAP_FAILED) {
    return ErrnoStatus(
        absl::StrCat("mmap ", size, " bytes of guest memory copy-on-write"),
        errno);
  }
  return std::unique_ptr<CopyOnWriteMemory>(new CopyOnWriteMemory(
      static_cast<uint8_t*>(base), size, fd, std::move(keep)));
}

CopyOnWriteMemory::~CopyOnWriteMemory() {
  // Safe: the view is this object's own mapping.
  if (image_view_ != nullptr) munmap(const_cast<uint8_t*>(image_view_), size());
}

absl::StatusOr<std::function<ChunkHint(uint64_t)>>
CopyOnWriteMemory::ChunkHints(uint32_t chunk_size) {
  // Pages without a private copy are still the image's.
  return HintsFromPageMap(
      chunk_size,
      [](const PageMap& map, uint64_t page) { return map.private_copy(page); },
      ChunkHint::kUnchanged);
}

absl::StatusOr<PageRuns> CopyOnWriteMemory::ChangedPages(uint64_t offset,
                                                         uint64_t length) {
  if (offset % kPage != 0 || offset > size() || length > size() - offset) {
    return absl::OutOfRangeError(absl::StrCat("ChangedPages: [", offset, ", +",
                                              length,
                                              ") is not page-aligned "
                                              "inside guest memory"));
  }
  auto runs = PageMap::PrivateRuns(base() + offset, length);
  if (!runs.ok()) return runs.status();
  for (auto& [first, end] : *runs) {
    first += offset / kPage;
    end += offset / kPage;
  }
  return runs;
}

absl::Status CopyOnWriteMemory::Revert(const PageRuns& runs) {
  if (image_view_ == nullptr && !runs.empty()) {
    // Shared and read-only: the file's own pages, never a copy of them.
    void* view = mmap(nullptr, size(), PROT_READ, MAP_SHARED, fd_, 0);
    if (view == MAP_FAILED) {
      return ErrnoStatus("Reset: map the image to copy pages back", errno);
    }
    image_view_ = static_cast<const uint8_t*>(view);
  }
  for (const auto& [first, end] : runs) {
    if (first >= end || end > size() / kPage) {
      return absl::OutOfRangeError("Revert: a page run outside guest memory");
    }
    std::memcpy(base() + first * kPage, image_view_ + first * kPage,
                (end - first) * kPage);
  }
  return absl::OkStatus();
}

}  // namespace thaw::snapshot
