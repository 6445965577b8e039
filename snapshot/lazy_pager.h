// LazyPager: the lazy restore engine. Guest memory starts empty and is
// registered with userfaultfd; the first touch of a page (by the vCPU, or by
// the host writing a call's input) blocks in the kernel until the pager's
// thread has read the page's chunk (io_uring), decompressed it and installed
// the whole chunk with UFFDIO_COPY (UFFDIO_ZEROPAGE for zero chunks). Chunks
// nobody touches are never read.
//
// With prefetch, the recorded working set comes in first. Chunks whose
// frames the writer stored raw at page-aligned offsets (Vm::WriteWorkingSet
// does) are mapped straight from the file, MAP_PRIVATE, as Firecracker maps
// its memory file: no read, no decompression, pages shared with the page
// cache until the guest writes them. A verifier thread checks each mapped
// chunk's content hash while the vCPU runs, once per file version and
// process (device, inode, size, mtime, ctime: rewriting the file changes
// it), and a call's result is returned only once that check passed.
// Before the guest starts, the pages the recorded call wrote are made
// private (MADV_POPULATE_WRITE) and every other mapped page's entry is
// filled in bulk (MADV_POPULATE_READ: a few calls instead of a fault per
// page or per folio), so the first call takes no fault on its working set.
// (Filled while the vCPU ran, the same work measured no faster on two
// cores, and left the guest faulting where it overtook the filling.)
// Other working-set chunks are streamed in by a prefetch thread (batched
// io_uring reads, the frames being one sequential stretch of the file) and
// installed while the vCPU runs. Chunks are claimed atomically, so a chunk
// the vCPU faults on while the prefetcher holds it is installed once, and
// the prefetcher's UFFDIO_COPY wakes the waiting thread.
//
// A frame that fails its checksum cannot be served: the pager installs zeros
// (so no thread stays blocked), remembers the error and calls on_error, and
// the Vm fails the call that touched it. The guest never gets bad bytes as
// good ones.
//
// Thread safety: the public methods may be called from any thread.
#ifndef THAW_SNAPSHOT_LAZY_PAGER_H_
#define THAW_SNAPSHOT_LAZY_PAGER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "snapshot/restore_counters.h"
#include "snapshot/snapshot_file.h"
#include "snapshot/uring_reader.h"

namespace thaw::snapshot {

class LazyPager {
 public:
  struct Options {
    bool prefetch = false;  // stream the recorded working set in
    bool record = false;    // record chunks in first-touch order
    // Memory in huge pages: every fault (and the prefetcher) fills a whole
    // 2 MiB page at once (hugetlbfs accepts nothing smaller), and nothing
    // is mapped from the file (a file mapping would split the huge pages).
    bool huge_pages = false;
    std::function<void(const absl::Status&)> on_error;
  };

  // `memory` (size image->memory_size(), page-aligned, anonymous and never
  // touched) is registered with a new userfaultfd.
  static absl::StatusOr<std::unique_ptr<LazyPager>> Start(
      std::shared_ptr<const SnapshotImage> image, uint8_t* memory,
      RestoreCounters& counters, Options options);
  ~LazyPager();
  LazyPager(const LazyPager&) = delete;
  LazyPager& operator=(const LazyPager&) = delete;

  // Chunks touched since Start, in first-touch order (when recording).
  std::vector<uint32_t> StopRecording();
  bool installed(uint64_t chunk) const {
    return state_[chunk].load(std::memory_order_acquire) == kInstalled;
  }
  // The first error met serving a fault, or OK.
  absl::Status error() const;
  // Waits until every chunk mapped from the file has been checked; the
  // result is error() (a call's result must not be returned before).
  absl::Status WaitForVerification();

 private:
  enum : uint8_t { kAbsent = 0, kClaimed = 1, kInstalled = 2 };

  LazyPager(std::shared_ptr<const SnapshotImage> image, uint8_t* memory,
            RestoreCounters& counters, Options options);
  bool Claim(uint64_t chunk);
  // Installs a claimed chunk whose stored bytes are in `stored` (nullptr for
  // a zero chunk); on a bad frame installs zeros and records the error.
  void Install(uint64_t chunk, const uint8_t* stored);
  // Installs `count` claimed chunks from `first` with the bytes at `source`
  // (zeros where null), marks them installed, then wakes their waiters.
  void Fill(uint64_t first, uint64_t count, const uint8_t* source);
  // Marks `count` chunks from `first` installed, then wakes every thread
  // waiting on them (the installs ran with DONTWAKE).
  void MarkInstalledAndWake(uint64_t first, uint64_t count);
  void ServeFaults();
  // Huge pages: claims, reads, decodes and installs the 2 MiB unit holding
  // `chunk`; false if another thread holds it.
  bool InstallUnit(uint64_t chunk, UringReader& reader);
  void PrefetchWorkingSet();
  // Maps the raw, aligned working-set frames; returns which chunks it mapped.
  absl::StatusOr<std::vector<bool>> MapRawWorkingSet();
  void VerifyMapped();
  void PopulateMapped();
  bool IsMapped(uint64_t chunk) const;
  // True if every file we mapped from was checked before in this process.
  bool AlreadyVerified();
  void Fail(const absl::Status& status);

  std::shared_ptr<const SnapshotImage> image_;
  uint8_t* memory_;
  uint64_t size_;
  uint32_t chunk_size_;
  uint64_t chunks_per_unit_ = 1;  // chunks a fault installs at once
  RestoreCounters& counters_;
  Options options_;
  int uffd_ = -1;
  int stop_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<std::atomic<uint8_t>[]> state_;
  std::thread server_;
  std::thread prefetcher_;
  std::thread verifier_;
  // Chunks mapped from a file: (first chunk, chunk count, file, offset).
  struct MappedRun {
    uint64_t first, count;
    uint32_t file;
    uint64_t offset;
  };
  std::vector<MappedRun> mapped_;
  bool verified_ = false;  // guarded by mutex_
  std::condition_variable verified_cv_;

  mutable std::mutex mutex_;
  bool recording_ = false;
  std::vector<uint32_t> touched_;
  absl::Status error_;
};

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_LAZY_PAGER_H_
