// MemorySource: where a Vm's guest memory comes from — the seam between the
// monitor (lib/) and the restore engines (this folder).
//
// A source owns the host mapping that backs guest-physical memory, and
// answers what only it knows about that memory:
//  - per chunk, what the next snapshot's writer may assume without reading
//    it (never touched, so zero; or still the image's) — ChunkHints;
//  - which pages changed since the restore, and how to put them back
//    (Reset) — ChangedPages, Revert;
//  - whether the bytes it installed were intact — error, and
//    WaitForVerification before a result computed from them leaves the Vm;
//  - what it did, counted — counters.
// There is one implementation per engine: AnonymousMemory (a booted Vm, and
// the eager engine), LazyMemory (lazy and lazy+prefetch), CopyOnWriteMemory
// (the shared base; the Firecracker-style raw memory file the benchmarks
// compare against). The monitor chooses one in exactly one place
// (lib/memory_choice.cc) and holds one pointer to it.
//
// Thread safety: error(), counters() and the error callback may be used
// from any thread; everything else runs on the thread that owns the Vm,
// while the vCPU is stopped.
#ifndef THAW_SNAPSHOT_MEMORY_SOURCE_H_
#define THAW_SNAPSHOT_MEMORY_SOURCE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/page_map.h"
#include "snapshot/guest_mapping.h"
#include "snapshot/restore_counters.h"
#include "snapshot/writer.h"

namespace thaw::snapshot {

class MemorySource {
 public:
  // Unmaps the memory; Stop() must have run if the source has threads.
  virtual ~MemorySource();
  MemorySource(const MemorySource&) = delete;
  MemorySource& operator=(const MemorySource&) = delete;

  // Guest-physical address 0 is base()[0]; size() bytes, page-aligned.
  uint8_t* base() const { return base_; }
  uint64_t size() const { return size_; }
  // The pages behind the mapping (4 KiB, or 2 MiB huge pages).
  PageBacking backing() const { return backing_; }

  // Called (from any thread) when the source finds damaged bytes it cannot
  // serve, so the monitor can stop the vCPU at once. Set before the guest
  // first runs; never called after Stop().
  virtual void SetErrorCallback(std::function<void()> on_error) {
    (void)on_error;
  }
  // Stops the source's threads. The monitor calls it before it tears down
  // the backend that maps this memory; idempotent.
  virtual void Stop() {}

  // The first damage the source met, or OK.
  virtual absl::Status error() const { return absl::OkStatus(); }
  // Returns once every byte installed so far without a check (chunks mapped
  // straight from a file) has been checked; the result is error().
  virtual absl::Status WaitForVerification() { return error(); }

  // What the writer of a snapshot in chunks of `chunk_size` bytes may
  // assume about each chunk without reading it. kUnchanged means "equal to
  // the image this memory was restored from".
  virtual absl::StatusOr<std::function<ChunkHint(uint64_t chunk)>> ChunkHints(
      uint32_t chunk_size) = 0;

  // Whether ChangedPages and Revert work (the copy-on-write source).
  virtual bool can_revert() const { return false; }
  // The runs of pages in [offset, offset + length) written since the
  // restore (or the last Revert), found without the writer's help.
  virtual absl::StatusOr<PageRuns> ChangedPages(uint64_t offset,
                                                uint64_t length);
  // Puts the pages of `runs` back to the image's bytes.
  virtual absl::Status Revert(const PageRuns& runs);

  // Lazy sources recording a working set: the chunks touched so far, in
  // first-touch order; recording stops. Empty elsewhere.
  virtual std::vector<uint32_t> StopRecording() { return {}; }

  const RestoreCounters& counters() const { return counters_; }

 protected:
  // Takes ownership of the mapping [base, base + size).
  MemorySource(uint8_t* base, uint64_t size,
               PageBacking backing = PageBacking::kSmall)
      : base_(base), size_(size), backing_(backing) {}

  // Hints from /proc/self/pagemap: kRead for a chunk holding a page for
  // which `written(map, page)` holds, `otherwise` for every other chunk.
  absl::StatusOr<std::function<ChunkHint(uint64_t chunk)>> HintsFromPageMap(
      uint32_t chunk_size, bool (*written)(const PageMap& map, uint64_t page),
      ChunkHint otherwise) const;

  RestoreCounters counters_;

 private:
  uint8_t* base_;
  uint64_t size_;
  PageBacking backing_;
};

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_MEMORY_SOURCE_H_
