#include "snapshot/anonymous_memory.h"

#include "snapshot/eager_restore.h"

namespace thaw::snapshot {
namespace {
constexpr uint64_t kPage = 4096;
}  // namespace

absl::StatusOr<std::unique_ptr<AnonymousMemory>> AnonymousMemory::Create(
    uint64_t size) {
  auto base = MapAnonymous(size, "guest memory");
  if (!base.ok()) return base.status();
  return std::unique_ptr<AnonymousMemory>(new AnonymousMemory(*base, size));
}

absl::StatusOr<std::unique_ptr<AnonymousMemory>>
AnonymousMemory::RestoreEagerly(const SnapshotImage& image) {
  auto memory = Create(image.memory_size());
  if (!memory.ok()) return memory.status();
  if (absl::Status s = snapshot::RestoreEagerly(image, (*memory)->base(),
                                                (*memory)->counters_);
      !s.ok()) {
    return s;
  }
  return memory;
}

absl::StatusOr<std::function<ChunkHint(uint64_t)>> AnonymousMemory::ChunkHints(
    uint32_t chunk_size) {
  auto map = PageMap::Read(base(), size());
  if (!map.ok()) return map.status();
  auto pages = std::make_shared<PageMap>(*std::move(map));
  const uint64_t per_chunk = chunk_size / kPage;
  // A page never touched reads as zeros.
  return [pages, per_chunk](uint64_t c) {
    for (uint64_t p = c * per_chunk; p < (c + 1) * per_chunk; ++p) {
      if (pages->touched(p)) return ChunkHint::kRead;
    }
    return ChunkHint::kZero;
  };
}

}  // namespace thaw::snapshot
