// AtomicFile: writes a file under a temporary name beside its destination
// and renames it into place only when complete and fsynced, so a crash or a
// full disk mid-write never leaves a partial file under the final name, and
// an older file there stays intact until the new one replaces it.
//
// Thread safety: one thread at a time.
#ifndef THAW_SNAPSHOT_ATOMIC_FILE_H_
#define THAW_SNAPSHOT_ATOMIC_FILE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace thaw::snapshot {

class AtomicFile {
 public:
  // Creates "<path>.tmp-XXXXXX" (mode 0600: snapshots hold guest memory).
  static absl::StatusOr<std::unique_ptr<AtomicFile>> Create(std::string path);
  // Writes into `fd`, an empty file someone else created and will put in
  // place (a worker process writing the temporary file its host made):
  // Commit() then only flushes and fsyncs, and nothing is removed. `name`
  // is for messages. The caller keeps `fd` (this writes through a
  // duplicate).
  static absl::StatusOr<std::unique_ptr<AtomicFile>> Adopt(int fd,
                                                           std::string name);
  // Removes the temporary file unless Commit() succeeded.
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Appends at the end (buffered).
  absl::Status Append(absl::Span<const uint8_t> bytes);
  // Overwrites bytes already appended (flushes the buffer first).
  absl::Status WriteAt(uint64_t offset, absl::Span<const uint8_t> bytes);
  uint64_t size() const { return size_; }
  // The temporary file's descriptor (to hand to a writer elsewhere).
  int fd() const { return fd_; }
  // Flushes, fsyncs, renames over `path` and fsyncs the directory.
  absl::Status Commit();

 private:
  AtomicFile(std::string path, std::string temp_path, int fd)
      : path_(std::move(path)), temp_path_(std::move(temp_path)), fd_(fd) {}
  absl::Status Flush();
  absl::Status Error(absl::string_view what, int error_number) const;

  std::string path_;
  std::string temp_path_;
  int fd_;
  uint64_t size_ = 0;
  std::vector<uint8_t> buffer_;
  bool committed_ = false;
};

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_ATOMIC_FILE_H_
