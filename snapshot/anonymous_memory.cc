#include "snapshot/anonymous_memory.h"

#include "snapshot/eager_restore.h"

namespace thaw::snapshot {
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
  // A page never touched reads as zeros.
  return HintsFromPageMap(
      chunk_size,
      [](const PageMap& map, uint64_t page) { return map.touched(page); },
      ChunkHint::kZero);
}

}  // namespace thaw::snapshot
