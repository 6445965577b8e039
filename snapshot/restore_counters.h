// Counters the restore engines keep, read by Vm::restore_stats().
#ifndef THAW_SNAPSHOT_RESTORE_COUNTERS_H_
#define THAW_SNAPSHOT_RESTORE_COUNTERS_H_

#include <atomic>
#include <cstdint>

namespace thaw::snapshot {

struct RestoreCounters {
  std::atomic<uint64_t> faults{0};          // faults served by reading a chunk
  std::atomic<uint64_t> prefetch_waits{0};  // faults on a chunk in prefetch
  std::atomic<uint64_t> chunks_read{0};     // frames read and decoded
  std::atomic<uint64_t> bytes_read{0};      // stored bytes read from files
  std::atomic<uint64_t> zero_chunks{0};     // zero chunks installed lazily
  std::atomic<uint64_t> prefetched{0};      // chunks installed by prefetch
  std::atomic<uint64_t> mapped{0};          // chunks mapped from the file
  // Pages of mapped chunks whose entries were filled in bulk, and written
  // pages made private up front (lazy+prefetch).
  std::atomic<uint64_t> populated_pages{0};
  std::atomic<uint64_t> pages_made_private{0};
  // Reads done with pread because io_uring could not be set up here.
  std::atomic<uint64_t> reads_without_io_uring{0};
};

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_RESTORE_COUNTERS_H_
