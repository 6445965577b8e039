#include "snapshot/anonymous_memory.h"

#include "snapshot/eager_restore.h"

namespace thaw::snapshot {
absl::StatusOr<std::unique_ptr<AnonymousMemory>> AnonymousMemory::Create(
    uint64_t size, bool huge_pages) {
  auto mapping = MapGuestMemory(size, huge_pages, "guest memory");
  if (!mapping.ok()) return mapping.status();
  return std::unique_ptr<AnonymousMemory>(
      new AnonymousMemory(mapping->base, size, mapping->backing));
}

absl::StatusOr<std::unique_ptr<AnonymousMemory>>
AnonymousMemory::RestoreEagerly(const SnapshotImage& image, bool huge_pages) {
  auto memory = Create(image.memory_size(), huge_pages);
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
