#include "snapshot/uring_reader.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/errno_status.h"

namespace thaw::snapshot {

UringReader::UringReader(unsigned depth, std::atomic<uint64_t>* fallback_reads)
    : depth_(depth), fallback_reads_(fallback_reads) {
  ring_ok_ = io_uring_queue_init(depth, &ring_, 0) == 0;
}

UringReader::~UringReader() {
  if (ring_ok_) io_uring_queue_exit(&ring_);
}

absl::Status PreadFull(int fd, absl::Span<uint8_t> out, uint64_t offset,
                       const std::string& path) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = pread(fd, out.data() + done, out.size() - done, offset + done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(absl::StrCat("read snapshot \"", path, "\""), errno);
    }
    if (n == 0) {
      return absl::DataLossError(absl::StrFormat(
          "snapshot \"%s\": file ends at byte %d, inside a range that should "
          "reach byte %d",
          path, offset + done, offset + out.size()));
    }
    done += n;
  }
  return absl::OkStatus();
}

namespace {

absl::Status ReadWithPread(const FileRead& read, const std::string& path) {
  return PreadFull(read.fd, absl::MakeSpan(read.buffer, read.size), read.offset,
                   path);
}

}  // namespace

absl::Status UringReader::ReadAll(absl::Span<const FileRead> reads,
                                  const std::string& path) {
  if (!ring_ok_) {
    if (fallback_reads_) *fallback_reads_ += reads.size();
    for (const FileRead& r : reads) {
      if (absl::Status s = ReadWithPread(r, path); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  size_t next = 0;
  std::vector<size_t> short_reads;
  while (next < reads.size()) {
    const size_t batch = std::min<size_t>(depth_, reads.size() - next);
    for (size_t i = 0; i < batch; ++i) {
      const FileRead& r = reads[next + i];
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      io_uring_prep_read(sqe, r.fd, r.buffer, r.size, r.offset);
      io_uring_sqe_set_data64(sqe, next + i);
    }
    int submitted = io_uring_submit_and_wait(&ring_, batch);
    if (submitted < 0) {
      return ErrnoStatus(
          absl::StrCat("io_uring read of snapshot \"", path, "\""), -submitted);
    }
    absl::Status status;
    for (size_t i = 0; i < batch; ++i) {
      io_uring_cqe* cqe = nullptr;
      int rc = io_uring_wait_cqe(&ring_, &cqe);
      if (rc < 0) {
        return ErrnoStatus(
            absl::StrCat("io_uring wait on snapshot \"", path, "\""), -rc);
      }
      const size_t index = io_uring_cqe_get_data64(cqe);
      const int result = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      if (result < 0 && status.ok()) {
        status =
            ErrnoStatus(absl::StrCat("read snapshot \"", path, "\""), -result);
      } else if (result >= 0 &&
                 static_cast<uint32_t>(result) < reads[index].size) {
        short_reads.push_back(index);  // finished below with pread
      }
    }
    if (!status.ok()) return status;
    next += batch;
  }
  for (size_t index : short_reads) {
    if (absl::Status s = ReadWithPread(reads[index], path); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace thaw::snapshot
