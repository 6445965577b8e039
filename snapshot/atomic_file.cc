#include "snapshot/atomic_file.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/pwrite_full.h"

namespace thaw::snapshot {
namespace {

constexpr size_t kBufferSize = 1 << 20;

}  // namespace

absl::StatusOr<std::unique_ptr<AtomicFile>> AtomicFile::Create(
    std::string path) {
  std::string temp = absl::StrCat(path, ".tmp-XXXXXX");
  int fd = mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) {
    return ErrnoStatus(absl::StrCat("create snapshot \"", path, "\""), errno);
  }
  auto file = std::unique_ptr<AtomicFile>(
      new AtomicFile(std::move(path), std::move(temp), fd));
  file->buffer_.reserve(kBufferSize);
  return file;
}

absl::StatusOr<std::unique_ptr<AtomicFile>> AtomicFile::Adopt(
    int fd, std::string name) {
  const int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) {
    return ErrnoStatus(absl::StrCat("write snapshot \"", name, "\""), errno);
  }
  auto file = std::unique_ptr<AtomicFile>(
      new AtomicFile(std::move(name), std::string(), own));
  file->buffer_.reserve(kBufferSize);
  return file;
}

AtomicFile::~AtomicFile() {
  close(fd_);
  if (!committed_ && !temp_path_.empty()) unlink(temp_path_.c_str());
}

absl::Status AtomicFile::Error(absl::string_view what, int error_number) const {
  return ErrnoStatus(absl::StrCat(what, " snapshot \"", path_, "\""),
                     error_number);
}

absl::Status AtomicFile::Flush() {
  if (buffer_.empty()) return absl::OkStatus();
  const uint64_t offset = size_ - buffer_.size();
  absl::Status s = PwriteFull(fd_, buffer_, offset, "write");
  if (s.ok()) {
    // Start writing these bytes to the disk now, in the background, so
    // that Commit's fsync waits for the tail only, not the whole file.
    (void)sync_file_range(fd_, offset, buffer_.size(), SYNC_FILE_RANGE_WRITE);
  }
  buffer_.clear();
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("write snapshot \"", path_,
                                               "\": ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status AtomicFile::Append(absl::Span<const uint8_t> bytes) {
  size_ += bytes.size();
  if (buffer_.size() + bytes.size() > kBufferSize) {
    // Flush what is buffered (its offset is size_ before this append).
    size_ -= bytes.size();
    if (absl::Status s = Flush(); !s.ok()) return s;
    size_ += bytes.size();
    if (bytes.size() >= kBufferSize) {
      absl::Status s = PwriteFull(fd_, bytes, size_ - bytes.size(), "write");
      if (!s.ok()) {
        return absl::Status(s.code(), absl::StrCat("write snapshot \"", path_,
                                                   "\": ", s.message()));
      }
      return absl::OkStatus();
    }
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
  return absl::OkStatus();
}

absl::Status AtomicFile::WriteAt(uint64_t offset,
                                 absl::Span<const uint8_t> bytes) {
  if (absl::Status s = Flush(); !s.ok()) return s;
  if (offset > size_ || bytes.size() > size_ - offset) {
    return absl::InternalError("AtomicFile::WriteAt past the end");
  }
  absl::Status s = PwriteFull(fd_, bytes, offset, "write");
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("write snapshot \"", path_,
                                               "\": ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status AtomicFile::Commit() {
  if (absl::Status s = Flush(); !s.ok()) return s;
  if (fsync(fd_) != 0) return Error("fsync", errno);
  if (temp_path_.empty()) {  // adopted: its owner puts it in place
    committed_ = true;
    return absl::OkStatus();
  }
  if (rename(temp_path_.c_str(), path_.c_str()) != 0) {
    return Error("rename into place", errno);
  }
  committed_ = true;
  // The rename is durable only once the directory is synced.
  std::filesystem::path dir = std::filesystem::path(path_).parent_path();
  if (dir.empty()) dir = std::filesystem::path(".");
  int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    close(dir_fd);
  }
  return absl::OkStatus();
}

}  // namespace thaw::snapshot
