#include "snapshot/memory_source.h"

#include <sys/mman.h>

#include <cerrno>
#include <memory>

#include "absl/strings/str_cat.h"
#include "base/errno_status.h"

namespace thaw::snapshot {

MemorySource::~MemorySource() {
  // Safe: the mapping was handed to this object, which is its only owner.
  munmap(base_, size_);
}

absl::StatusOr<PageRuns> MemorySource::ChangedPages(uint64_t, uint64_t) {
  return absl::FailedPreconditionError(
      "this restore engine does not track changed pages");
}

absl::Status MemorySource::Revert(const PageRuns&) {
  return absl::FailedPreconditionError(
      "this restore engine cannot put pages back");
}

absl::StatusOr<std::function<ChunkHint(uint64_t)>>
MemorySource::HintsFromPageMap(uint32_t chunk_size,
                               bool (*written)(const PageMap& map,
                                               uint64_t page),
                               ChunkHint otherwise) const {
  auto map = PageMap::Read(base_, size_);
  if (!map.ok()) return map.status();
  auto pages = std::make_shared<PageMap>(*std::move(map));
  const uint64_t per_chunk = chunk_size / 4096;
  return [pages, per_chunk, written, otherwise](uint64_t c) {
    for (uint64_t p = c * per_chunk; p < (c + 1) * per_chunk; ++p) {
      if (written(*pages, p)) return ChunkHint::kRead;
    }
    return otherwise;
  };
}

}  // namespace thaw::snapshot
