// UringReader: batched reads of snapshot frames through io_uring.
//
// Restores read many frames at known offsets; submitting them as one batch
// costs one system call instead of one per frame. Where io_uring is not
// available (an old kernel, a seccomp filter, kernel.io_uring_disabled) the
// same reads are done with pread, so restores still work, more slowly.
//
// Thread safety: one thread at a time (each restore thread owns one).
#ifndef THAW_SNAPSHOT_URING_READER_H_
#define THAW_SNAPSHOT_URING_READER_H_

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace thaw::snapshot {

struct FileRead {
  int fd;
  uint64_t offset;
  uint32_t size;
  uint8_t* buffer;
};

// pread all of `out` at `offset` of `fd`, retrying short reads; DataLoss
// naming `path` if the file ends first. The one pread loop of snapshot/:
// SnapshotFile's reads and UringReader's fallback both use it.
absl::Status PreadFull(int fd, absl::Span<uint8_t> out, uint64_t offset,
                       const std::string& path);

class UringReader {
 public:
  // `fallback_reads`, if given, counts reads done with pread because
  // io_uring is unavailable.
  explicit UringReader(unsigned depth = 64,
                       std::atomic<uint64_t>* fallback_reads = nullptr);
  ~UringReader();
  UringReader(const UringReader&) = delete;
  UringReader& operator=(const UringReader&) = delete;

  bool uses_io_uring() const { return ring_ok_; }

  // Reads every request in full. `path` names the file in errors; a read
  // that ends early is DataLoss (the file shrank since it was opened).
  absl::Status ReadAll(absl::Span<const FileRead> reads,
                       const std::string& path);

 private:
  io_uring ring_;
  bool ring_ok_ = false;
  unsigned depth_;
  std::atomic<uint64_t>* fallback_reads_;
};

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_URING_READER_H_
