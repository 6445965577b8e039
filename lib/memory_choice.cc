#include "lib/memory_choice.h"

#include "snapshot/anonymous_memory.h"
#include "snapshot/copy_on_write_memory.h"
#include "snapshot/lazy_memory.h"

namespace thaw::internal {

absl::StatusOr<std::unique_ptr<snapshot::MemorySource>> RestoreMemory(
    SnapshotState& state, const RestoreOptions& options, bool* built_base) {
  *built_base = false;
  const snapshot::SnapshotImage& image = *state.image();
  switch (options.engine) {
    case RestoreEngine::kEager:
      return snapshot::AnonymousMemory::RestoreEagerly(image,
                                                       options.huge_pages);
    case RestoreEngine::kLazy:
    case RestoreEngine::kLazyPrefetch: {
      snapshot::LazyMemory::Options lazy;
      lazy.prefetch = options.engine == RestoreEngine::kLazyPrefetch;
      lazy.record = options.record_working_set;
      lazy.huge_pages = options.huge_pages;
      return snapshot::LazyMemory::Start(state.image(), lazy);
    }
    case RestoreEngine::kSharedBase: {
      if (options.huge_pages) {
        return absl::InvalidArgumentError(
            "RestoreOptions.huge_pages: the shared-base engine maps one base "
            "in 4 KiB pages for all its clones; use kEager or kLazy");
      }
      snapshot::RestoreCounters build;
      auto base = state.SharedBase(build, built_base);
      if (!base.ok()) return base.status();
      auto memory = snapshot::CopyOnWriteMemory::Map((*base)->fd(),
                                                     (*base)->size(), *base);
      if (!memory.ok()) return memory.status();
      // The restore that built the base reports the reads it took.
      snapshot::RestoreCounters& counters = (*memory)->mutable_counters();
      counters.chunks_read = build.chunks_read.load();
      counters.bytes_read = build.bytes_read.load();
      counters.reads_without_io_uring = build.reads_without_io_uring.load();
      return memory;
    }
  }
  return absl::InvalidArgumentError("RestoreOptions.engine: unknown engine");
}

void AddSourceCounters(const snapshot::MemorySource& source,
                       RestoreStats& stats) {
  const snapshot::RestoreCounters& c = source.counters();
  stats.faults = c.faults.load();
  stats.prefetch_waits = c.prefetch_waits.load();
  stats.chunks_read = c.chunks_read.load();
  stats.bytes_read = c.bytes_read.load();
  stats.zero_chunks = c.zero_chunks.load();
  stats.prefetched = c.prefetched.load();
  stats.mapped = c.mapped.load();
  stats.populated_pages = c.populated_pages.load();
  stats.memory_pages = std::string(snapshot::PageBackingName(source.backing()));
  stats.pages_made_private = c.pages_made_private.load();
  stats.reads_without_io_uring = c.reads_without_io_uring.load();
}

}  // namespace thaw::internal
