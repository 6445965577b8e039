#include "snapshot/lazy_pager.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>

#include "absl/strings/str_format.h"
#include "base/errno_status.h"
#include "base/page_runs.h"
#include "base/thread_confinement.h"
#include "snapshot/format.h"
#include "snapshot/guest_mapping.h"
#include "snapshot/uring_reader.h"

namespace thaw::snapshot {
namespace {

constexpr uint64_t kPage = 4096;
// Prefetch batches start small, so the first chunks the guest needs arrive
// quickly, and double up to kPrefetchBatch to amortize the submissions.
constexpr size_t kFirstPrefetchBatch = 4;
constexpr size_t kPrefetchBatch = 64;

absl::StatusOr<int> OpenUserfaultfd() {
  // Not UFFD_USER_MODE_ONLY: KVM touches guest memory from the kernel.
  int fd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0) {
    return ErrnoStatus(
        "userfaultfd (the lazy engines need it; root, CAP_SYS_PTRACE or "
        "vm.unprivileged_userfaultfd=1)",
        errno);
  }
  uffdio_api api{};
  api.api = UFFD_API;
  if (ioctl(fd, UFFDIO_API, &api) != 0) {
    int e = errno;
    close(fd);
    return ErrnoStatus("UFFDIO_API", e);
  }
  return fd;
}

struct AlignedFree {
  void operator()(uint8_t* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<uint8_t, AlignedFree>;
AlignedBuffer NewAligned(size_t size) {
  return AlignedBuffer(static_cast<uint8_t*>(std::aligned_alloc(kPage, size)));
}

}  // namespace

LazyPager::LazyPager(std::shared_ptr<const SnapshotImage> image,
                     uint8_t* memory, RestoreCounters& counters,
                     Options options)
    : image_(std::move(image)),
      memory_(memory),
      size_(image_->memory_size()),
      chunk_size_(image_->chunk_size()),
      counters_(counters),
      options_(std::move(options)),
      state_(new std::atomic<uint8_t>[image_->chunk_count()]),
      recording_(options_.record) {
  for (uint64_t c = 0; c < image_->chunk_count(); ++c) state_[c] = kAbsent;
  if (options_.huge_pages && chunk_size_ < kHugePage) {
    chunks_per_unit_ = kHugePage / chunk_size_;
  }
}

absl::StatusOr<std::unique_ptr<LazyPager>> LazyPager::Start(
    std::shared_ptr<const SnapshotImage> image, uint8_t* memory,
    RestoreCounters& counters, Options options) {
  std::unique_ptr<LazyPager> pager(
      new LazyPager(std::move(image), memory, counters, std::move(options)));
  auto uffd = OpenUserfaultfd();
  if (!uffd.ok()) return uffd.status();
  pager->uffd_ = *uffd;
  pager->stop_fd_ = eventfd(0, EFD_CLOEXEC);
  if (pager->stop_fd_ < 0) return ErrnoStatus("eventfd", errno);
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<uint64_t>(memory);
  reg.range.len = pager->size_;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  // Safe: the range is the Vm's own guest-memory mapping.
  if (ioctl(pager->uffd_, UFFDIO_REGISTER, &reg) != 0) {
    return ErrnoStatus("UFFDIO_REGISTER guest memory", errno);
  }
  // Huge pages are filled by UFFDIO_COPY alone (hugetlbfs has no
  // UFFDIO_ZEROPAGE).
  const uint64_t needed =
      (1ull << _UFFDIO_COPY) |
      (pager->options_.huge_pages ? 0 : (1ull << _UFFDIO_ZEROPAGE));
  if ((reg.ioctls & needed) != needed) {
    return absl::UnavailableError(
        "userfaultfd: this kernel lacks UFFDIO_COPY or UFFDIO_ZEROPAGE for "
        "this guest memory");
  }
  // Mapped after registering, in one ioctl: the file mappings replace those
  // parts of the registered range (and are not registered themselves).
  std::vector<bool> mapped(pager->image_->chunk_count(), false);
  if (pager->options_.prefetch && !pager->options_.huge_pages) {
    auto raw = pager->MapRawWorkingSet();
    if (!raw.ok()) return raw.status();
    mapped = *std::move(raw);
  }
  pager->server_ = std::thread([p = pager.get()] {
    EnterThawThread("thaw-faults");
    p->ServeFaults();
  });
  if (pager->mapped_.empty() || pager->AlreadyVerified()) {
    std::lock_guard<std::mutex> lock(pager->mutex_);
    pager->verified_ = true;
  } else if (pager->image_->authenticated()) {
    // A signed snapshot: no guest instruction runs on bytes whose digest
    // was not checked (the first restore of a file version pays the read).
    pager->VerifyMapped();
    if (absl::Status s = pager->error(); !s.ok()) return s;
  } else {
    pager->verifier_ = std::thread([p = pager.get()] {
      EnterThawThread("thaw-verify");
      p->VerifyMapped();
    });
  }
  // The prefetch thread streams what was not mapped (compressed frames, or
  // frames a parent file holds).
  bool stream = false;
  for (uint32_t c : pager->image_->manifest().working_set()) {
    stream |= !mapped[c] && !pager->image_->Locate(c).zero();
  }
  if (pager->options_.prefetch && stream) {
    pager->prefetcher_ = std::thread([p = pager.get()] {
      EnterThawThread("thaw-prefetch");
      p->PrefetchWorkingSet();
    });
  }
  // Meanwhile (the other threads run on), the mapped chunks' entries.
  pager->PopulateMapped();
  return pager;
}

LazyPager::~LazyPager() {
  stopping_.store(true);
  if (stop_fd_ >= 0) {
    uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof(one));
  }
  if (prefetcher_.joinable()) prefetcher_.join();
  if (verifier_.joinable()) verifier_.join();
  if (server_.joinable()) server_.join();
  if (uffd_ >= 0) close(uffd_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

std::vector<uint32_t> LazyPager::StopRecording() {
  std::lock_guard<std::mutex> lock(mutex_);
  recording_ = false;
  return std::move(touched_);
}

absl::Status LazyPager::error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

absl::Status LazyPager::WaitForVerification() {
  std::unique_lock<std::mutex> lock(mutex_);
  verified_cv_.wait(lock, [this] { return verified_; });
  return error_;
}

absl::StatusOr<std::vector<bool>> LazyPager::MapRawWorkingSet() {
  const uint64_t chunks = image_->chunk_count();
  std::vector<bool> mapped(chunks, false);
  std::vector<bool> wanted(chunks, false);
  for (uint32_t c : image_->manifest().working_set()) wanted[c] = true;
  for (uint64_t c = 0; c < chunks; ++c) {
    if (!wanted[c]) continue;
    SnapshotImage::Location where = image_->Locate(c);
    if (where.zero()) continue;
    const SnapshotFile& file = *image_->files()[where.file];
    const uint64_t offset = file.FrameOffset(where.frame);
    if (file.FrameSize(where.frame) != chunk_size_ ||
        offset % kRawFrameAlignment != 0) {
      continue;  // compressed: the prefetch thread streams it in
    }
    // Extend the previous run when both guest and file ranges continue it.
    if (!mapped_.empty()) {
      MappedRun& last = mapped_.back();
      if (last.first + last.count == c && last.file == where.file &&
          last.offset + last.count * chunk_size_ == offset) {
        ++last.count;
        mapped[c] = true;
        continue;
      }
    }
    mapped_.push_back({c, 1, where.file, offset});
    mapped[c] = true;
  }
  // A remote file's mapped frames must be in its stand-in first. The rest
  // of the working set (compressed frames, between the raw ones in the
  // file) comes in the same requests: the prefetcher needs it next.
  for (size_t f = 0; f < image_->files().size(); ++f) {
    const SnapshotFile& file = *image_->files()[f];
    if (!file.fetched()) continue;
    std::vector<uint32_t> frames;
    for (uint64_t c = 0; c < chunks; ++c) {
      SnapshotImage::Location where = image_->Locate(c);
      if (wanted[c] && !where.zero() && where.file == f) {
        frames.push_back(where.frame);
      }
    }
    if (absl::Status s = file.Fetch(frames); !s.ok()) return s;
  }
  for (const MappedRun& run : mapped_) {
    const SnapshotFile& file = *image_->files()[run.file];
    // Safe: replaces part of the Vm's own, still untouched guest mapping
    // with a private copy-on-write view of the snapshot file (which the
    // image keeps open); the guest never writes the file.
    void* at = mmap(memory_ + run.first * chunk_size_, run.count * chunk_size_,
                    PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, file.fd(),
                    run.offset);
    if (at == MAP_FAILED) {
      return ErrnoStatus(
          absl::StrFormat("map working set from \"%s\"", file.path()), errno);
    }
    for (uint64_t c = run.first; c < run.first + run.count; ++c) {
      state_[c].store(kInstalled, std::memory_order_relaxed);
    }
    counters_.mapped += run.count;
  }
  return mapped;
}

namespace {

// madvise(MADV_POPULATE_*) over [at, at + length), retried when
// interrupted. Best effort: a range it cannot fill faults in as usual.
bool Populate(uint8_t* at, uint64_t length, int advice) {
  while (madvise(at, length, advice) != 0) {
    if (errno != EINTR && errno != EAGAIN) return false;
  }
  return true;
}

}  // namespace

void LazyPager::PopulateMapped() {
  if (mapped_.empty()) return;  // nothing mapped from the file
  // A file not in the page cache (a host that never ran this function) is
  // read ahead in large sequential requests, all at once, before single
  // pages are asked for; on a cached file this finds every page present.
  for (const MappedRun& run : mapped_) {
    madvise(memory_ + run.first * chunk_size_, run.count * chunk_size_,
            MADV_WILLNEED);
  }
  // First the pages the recorded call wrote, each copied out of the page
  // cache into a private page while its entry is still empty. (Made
  // private after a read had mapped it, a page's old entry must be flushed
  // from every CPU's TLB: an interprocessor interrupt each, dear in a VM.)
  // Only pages mapped from the file: streamed chunks are installed private
  // already. Runs are cut at chunk boundaries, each piece checked.
  const auto& written = image_->manifest().working_set_written_pages();
  const uint64_t per_chunk = chunk_size_ / kPage;
  PageRuns to_write;
  for (int i = 0; i < written.size();) {
    uint64_t first = written[i];
    uint64_t end = first + 1;
    while (++i < written.size() && written[i] == end) ++end;
    while (first < end) {
      const uint64_t chunk = first / per_chunk;
      const uint64_t piece_end = std::min(end, (chunk + 1) * per_chunk);
      if (chunk < image_->chunk_count() && IsMapped(chunk)) {
        to_write.emplace_back(first, piece_end);
      }
      first = piece_end;
    }
  }
  // Then every mapped page's entry, in pieces of at most 2 MiB.
  PageRuns to_read;
  constexpr uint64_t kPiece = (2ull << 20) / kPage;
  for (const MappedRun& run : mapped_) {
    const uint64_t end = (run.first + run.count) * per_chunk;
    for (uint64_t p = run.first * per_chunk; p < end; p += kPiece) {
      to_read.emplace_back(p, std::min(end, p + kPiece));
    }
  }
  // On this thread alone: a second thread of this process running on the
  // other CPU makes every entry change there a TLB shootdown (measured
  // twice as slow).
  for (const auto& [first, end] : to_write) {
    if (!Populate(memory_ + first * kPage, (end - first) * kPage,
                  MADV_POPULATE_WRITE)) {
      return;
    }
    counters_.pages_made_private += end - first;
  }
  for (const auto& [first, end] : to_read) {
    if (!Populate(memory_ + first * kPage, (end - first) * kPage,
                  MADV_POPULATE_READ)) {
      return;
    }
    counters_.populated_pages += end - first;
  }
}

bool LazyPager::IsMapped(uint64_t chunk) const {
  // mapped_ is sorted by first chunk and never changes after Start.
  auto it = std::upper_bound(
      mapped_.begin(), mapped_.end(), chunk,
      [](uint64_t c, const MappedRun& run) { return c < run.first; });
  if (it == mapped_.begin()) return false;
  --it;
  return chunk < it->first + it->count;
}

namespace {

// Files whose raw working-set frames were checked in this process, by
// version (device, inode, size, modification and change times): a file is
// checked once, not at every restore; writing it changes its version. A
// check against signed digests counts for both kinds of handle, a checksum
// check only for handles opened without a key. Each
// entry keeps its file open, so that its inode number cannot be reused by
// another file (which could otherwise match an old version exactly); the
// 64 most recently checked files are kept.
constexpr size_t kVerifiedFilesKept = 64;

struct VerifiedFiles {
  std::mutex mutex;
  // Newest first; the files whose digests were checked are authenticated.
  std::deque<std::shared_ptr<const SnapshotFile>> files;

  bool Contains(const SnapshotFile& wanted) {
    for (const auto& file : files) {
      if (file->version() == wanted.version() &&
          (file->authenticated() || !wanted.authenticated())) {
        return true;
      }
    }
    return false;
  }
  void Add(std::shared_ptr<const SnapshotFile> file) {
    if (Contains(*file)) return;
    files.push_front(std::move(file));
    if (files.size() > kVerifiedFilesKept) files.pop_back();
  }
};
VerifiedFiles& Verified() {
  static auto* verified = new VerifiedFiles;
  return *verified;
}

}  // namespace

bool LazyPager::AlreadyVerified() {
  for (const MappedRun& run : mapped_) {
    const SnapshotFile& file = *image_->files()[run.file];
    {
      std::lock_guard<std::mutex> lock(Verified().mutex);
      if (Verified().Contains(file)) continue;
    }
    // A stand-in's frames that this process fetched were checked as they
    // came (remote/): reading them back to check them again finds nothing.
    for (uint64_t i = 0; i < run.count; ++i) {
      if (!file.CheckedHere(image_->Locate(run.first + i).frame)) {
        return false;
      }
    }
  }
  return true;
}

void LazyPager::VerifyMapped() {
  bool ok = true;
  for (const MappedRun& run : mapped_) {
    if (stopping_.load()) {
      ok = false;
      break;
    }
    // The check reads the file's pages through a view of our own, never the
    // guest's mapping (which the guest may already have written).
    const SnapshotFile& file = *image_->files()[run.file];
    const uint64_t length = run.count * chunk_size_;
    void* view =
        mmap(nullptr, length, PROT_READ, MAP_SHARED, file.fd(), run.offset);
    if (view == MAP_FAILED) {
      Fail(ErrnoStatus("map working set to check it", errno));
      ok = false;
      break;
    }
    const auto* bytes = static_cast<const uint8_t*>(view);
    for (uint64_t i = 0; i < run.count && ok; ++i) {
      SnapshotImage::Location where = image_->Locate(run.first + i);
      if (file.CheckedHere(where.frame)) continue;  // as it was fetched
      const auto chunk =
          absl::MakeConstSpan(bytes + i * chunk_size_, chunk_size_);
      // A signed file's digest covers what the checksum would: one pass.
      if (!file.authenticated() &&
          !(HashContent(chunk) == file.FrameContentHash(where.frame))) {
        Fail(file.Corrupt(
            absl::StrFormat("frame %d (at byte %d): content checksum mismatch",
                            where.frame, file.FrameOffset(where.frame))));
        ok = false;
      } else if (file.authenticated() &&
                 !file.DigestMatches(where.frame, chunk)) {
        // Mapped frames are raw: their stored bytes are the chunk.
        Fail(file.Corrupt(absl::StrFormat(
            "frame %d (at byte %d): its BLAKE2b digest does not match the "
            "signed manifest (the frame was changed after signing)",
            where.frame, file.FrameOffset(where.frame))));
        ok = false;
      }
    }
    munmap(view, length);
    if (!ok) break;
  }
  if (ok) {
    std::lock_guard<std::mutex> lock(Verified().mutex);
    for (const MappedRun& run : mapped_) {
      Verified().Add(image_->files()[run.file]);
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  verified_ = true;
  verified_cv_.notify_all();
}

void LazyPager::Fail(const absl::Status& status) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_.ok()) return;
    error_ = status;
  }
  if (options_.on_error) options_.on_error(status);
}

bool LazyPager::Claim(uint64_t chunk) {
  uint8_t expected = kAbsent;
  return state_[chunk].compare_exchange_strong(expected, kClaimed,
                                               std::memory_order_acq_rel);
}

void LazyPager::Install(uint64_t chunk, const uint8_t* stored) {
  thread_local AlignedBuffer buffer;
  thread_local size_t buffer_size = 0;
  if (buffer_size != chunk_size_) {
    buffer = NewAligned(chunk_size_);
    buffer_size = chunk_size_;
  }
  bool zero = stored == nullptr;
  if (!zero) {
    SnapshotImage::Location where = image_->Locate(chunk);
    const SnapshotFile& file = *image_->files()[where.file];
    absl::Status s = file.DecodeFrame(
        where.frame, absl::MakeConstSpan(stored, file.FrameSize(where.frame)),
        absl::MakeSpan(buffer.get(), chunk_size_));
    if (!s.ok()) {
      Fail(s);
      zero = true;  // never hand the guest bytes that failed their checksum
    }
  }
  Fill(chunk, 1, zero ? nullptr : buffer.get());
}

void LazyPager::Fill(uint64_t first, uint64_t count, const uint8_t* source) {
  const uint64_t dst =
      reinterpret_cast<uint64_t>(memory_) + first * chunk_size_;
  const uint64_t bytes = count * chunk_size_;
  // Both ioctls may stop early (EAGAIN while the address space changes);
  // pages already present (EEXIST) cannot happen for claimed chunks but are
  // skipped rather than retried forever. Neither wakes anyone: the chunks
  // are marked installed first.
  const uint64_t page = options_.huge_pages ? kHugePage : kPage;
  uint64_t done = 0;
  while (done < bytes) {
    long rc;
    int64_t progressed;
    if (source == nullptr) {
      uffdio_zeropage z{};
      z.range.start = dst + done;
      z.range.len = bytes - done;
      z.mode = UFFDIO_ZEROPAGE_MODE_DONTWAKE;
      rc = ioctl(uffd_, UFFDIO_ZEROPAGE, &z);
      progressed = z.zeropage;
    } else {
      uffdio_copy copy{};
      copy.dst = dst + done;
      copy.src = reinterpret_cast<uint64_t>(source) + done;
      copy.len = bytes - done;
      copy.mode = UFFDIO_COPY_MODE_DONTWAKE;
      rc = ioctl(uffd_, UFFDIO_COPY, &copy);
      progressed = copy.copy;
    }
    if (rc == 0) break;
    if (progressed > 0) {
      done += progressed;
    } else if (errno == EEXIST) {
      done += page;
    } else if (errno != EAGAIN) {
      Fail(ErrnoStatus(
          absl::StrFormat("userfaultfd install of chunk %d", first), errno));
      break;
    }
  }
  MarkInstalledAndWake(first, count);
}

void LazyPager::MarkInstalledAndWake(uint64_t first, uint64_t count) {
  // Installed first, woken second: a thread that faulted on these chunks
  // must find them installed when it runs again (Vm::Snapshot asks
  // installed() which chunks are still the image's).
  for (uint64_t c = first; c < first + count; ++c) {
    state_[c].store(kInstalled, std::memory_order_release);
  }
  uffdio_range range{reinterpret_cast<uint64_t>(memory_) + first * chunk_size_,
                     count * chunk_size_};
  ioctl(uffd_, UFFDIO_WAKE, &range);
}

bool LazyPager::InstallUnit(uint64_t chunk, UringReader& reader) {
  const uint64_t first = chunk / chunks_per_unit_ * chunks_per_unit_;
  const uint64_t count =
      std::min<uint64_t>(chunks_per_unit_, image_->chunk_count() - first);
  // The unit's first chunk is its lock: every path claims that one.
  if (!Claim(first)) return false;
  thread_local AlignedBuffer unit;
  thread_local AlignedBuffer stored;
  thread_local uint64_t unit_bytes = 0;
  const uint64_t bytes = count * chunk_size_;
  if (unit_bytes < bytes) {
    unit = NewAligned(bytes);
    stored = NewAligned(bytes);
    unit_bytes = bytes;
  }
  // Read every stored frame of the unit in one batch.
  std::vector<FileRead> reads;
  std::vector<uint64_t> read_chunks;
  uint64_t stored_at = 0;
  for (uint64_t c = first; c < first + count; ++c) {
    SnapshotImage::Location where = image_->Locate(c);
    uint8_t* out = unit.get() + (c - first) * chunk_size_;
    if (where.zero()) {
      std::memset(out, 0, chunk_size_);
      ++counters_.zero_chunks;
      continue;
    }
    const SnapshotFile& file = *image_->files()[where.file];
    reads.push_back({file.fd(), file.FrameOffset(where.frame),
                     file.FrameSize(where.frame), stored.get() + stored_at});
    read_chunks.push_back(c);
    stored_at += file.FrameSize(where.frame);
  }
  absl::Status status = absl::OkStatus();
  for (size_t i = 0; i < read_chunks.size() && status.ok(); ++i) {
    SnapshotImage::Location where = image_->Locate(read_chunks[i]);
    status = image_->files()[where.file]->Fetch({&where.frame, 1});
  }
  if (status.ok()) status = reader.ReadAll(reads, image_->top().path());
  for (size_t i = 0; i < reads.size() && status.ok(); ++i) {
    const uint64_t c = read_chunks[i];
    SnapshotImage::Location where = image_->Locate(c);
    status = image_->files()[where.file]->DecodeFrame(
        where.frame, absl::MakeConstSpan(reads[i].buffer, reads[i].size),
        absl::MakeSpan(unit.get() + (c - first) * chunk_size_, chunk_size_));
    ++counters_.chunks_read;
    counters_.bytes_read += reads[i].size;
  }
  if (!status.ok()) {
    Fail(status);
    std::memset(unit.get(), 0, bytes);  // never bytes that failed a check
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (recording_) {
      for (uint64_t c = first; c < first + count; ++c) touched_.push_back(c);
    }
  }
  // Always a copy: hugetlbfs has no UFFDIO_ZEROPAGE.
  Fill(first, count, unit.get());
  return true;
}

void LazyPager::ServeFaults() {
  UringReader reader(4, &counters_.reads_without_io_uring);
  AlignedBuffer stored = NewAligned(chunk_size_);
  pollfd fds[2] = {{uffd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
  uffd_msg messages[16];
  while (true) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      Fail(ErrnoStatus("poll on userfaultfd", errno));
      return;
    }
    if (fds[1].revents & POLLIN) return;
    ssize_t n = read(uffd_, messages, sizeof(messages));
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      Fail(ErrnoStatus("read userfaultfd", errno));
      return;
    }
    for (size_t i = 0; i < n / sizeof(uffd_msg); ++i) {
      if (messages[i].event != UFFD_EVENT_PAGEFAULT) continue;
      const uint64_t address = messages[i].arg.pagefault.address;
      const uint64_t offset = address - reinterpret_cast<uint64_t>(memory_);
      if (offset >= size_) continue;
      const uint64_t chunk = offset / chunk_size_;
      // Huge pages: the whole unit is read and installed by the claim.
      const bool mine =
          chunks_per_unit_ > 1 ? InstallUnit(chunk, reader) : Claim(chunk);
      if (!mine) {
        if (state_[chunk].load(std::memory_order_acquire) == kInstalled) {
          // Installed after the thread faulted: a stale message; make sure
          // the thread is not left waiting.
          uffdio_range range{address & ~(kPage - 1), kPage};
          ioctl(uffd_, UFFDIO_WAKE, &range);
        } else {
          // Another thread holds it; its install wakes the thread. Waking
          // it now would only make it fault again.
          ++counters_.prefetch_waits;
        }
        continue;
      }
      if (chunks_per_unit_ > 1) {
        ++counters_.faults;
        continue;
      }
      ++counters_.faults;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (recording_) touched_.push_back(chunk);
      }
      SnapshotImage::Location where = image_->Locate(chunk);
      if (where.zero()) {
        ++counters_.zero_chunks;
        Install(chunk, nullptr);
        continue;
      }
      const SnapshotFile& file = *image_->files()[where.file];
      FileRead read{file.fd(), file.FrameOffset(where.frame),
                    file.FrameSize(where.frame), stored.get()};
      absl::Status s = file.Fetch({&where.frame, 1});
      if (s.ok()) s = reader.ReadAll({&read, 1}, file.path());
      if (!s.ok()) {
        Fail(s);
        Install(chunk, nullptr);
        continue;
      }
      ++counters_.chunks_read;
      counters_.bytes_read += read.size;
      Install(chunk, stored.get());
    }
  }
}

void LazyPager::PrefetchWorkingSet() {
  UringReader reader(kPrefetchBatch, &counters_.reads_without_io_uring);
  const auto& working_set = image_->manifest().working_set();
  if (chunks_per_unit_ > 1) {
    // Huge pages: whole units, in the order their first chunk was touched.
    for (uint32_t c : working_set) {
      if (stopping_.load()) return;
      if (c < image_->chunk_count() && InstallUnit(c, reader)) {
        counters_.prefetched += chunks_per_unit_;
      }
    }
    return;
  }
  // A remote file: the whole working set is asked for at once (adjacent
  // frames in one request, the requests in parallel) rather than batch by
  // batch, one round trip each; the batches below then read it locally.
  for (size_t f = 0; f < image_->files().size() && !stopping_.load(); ++f) {
    const SnapshotFile& file = *image_->files()[f];
    if (!file.fetched()) continue;
    std::vector<uint32_t> frames;
    for (uint32_t c : working_set) {
      if (c >= image_->chunk_count() || installed(c)) continue;
      SnapshotImage::Location where = image_->Locate(c);
      if (!where.zero() && where.file == f) frames.push_back(where.frame);
    }
    // On failure the faults fetch what they need themselves (and fail
    // their calls if the store stays down).
    if (!file.Fetch(frames).ok()) return;
  }
  // Not zero-filled: every byte is read into before use.
  std::unique_ptr<uint8_t[]> buffer(
      new uint8_t[kPrefetchBatch * size_t{chunk_size_}]);
  std::vector<FileRead> reads;
  std::vector<uint64_t> claimed;
  std::vector<uint32_t> frames;
  int next = 0;
  size_t batch = kFirstPrefetchBatch;
  while (next < working_set.size() && !stopping_.load()) {
    reads.clear();
    claimed.clear();
    // One batch: up to `batch` claimed chunks from one file.
    int file_index = -1;
    while (next < working_set.size() && claimed.size() < batch) {
      const uint64_t chunk = working_set[next];
      SnapshotImage::Location where = image_->Locate(chunk);
      if (!where.zero() && file_index >= 0 &&
          static_cast<int>(where.file) != file_index) {
        break;
      }
      ++next;
      if (!Claim(chunk)) continue;
      if (where.zero()) {
        Install(chunk, nullptr);
        ++counters_.prefetched;
        continue;
      }
      file_index = where.file;
      const SnapshotFile& file = *image_->files()[where.file];
      reads.push_back({file.fd(), file.FrameOffset(where.frame),
                       file.FrameSize(where.frame),
                       buffer.get() + claimed.size() * size_t{chunk_size_}});
      claimed.push_back(chunk);
    }
    if (claimed.empty()) continue;
    batch = std::min(batch * 2, kPrefetchBatch);
    const SnapshotFile& file = *image_->files()[file_index];
    frames.clear();
    for (uint64_t c : claimed) frames.push_back(image_->Locate(c).frame);
    // A remote file: the batch's frames, one stretch of the file, come in
    // one request.
    absl::Status s = file.Fetch(frames);
    if (s.ok()) s = reader.ReadAll(reads, file.path());
    for (size_t i = 0; i < claimed.size(); ++i) {
      if (!s.ok()) {
        Fail(s);
        Install(claimed[i], nullptr);
        continue;
      }
      ++counters_.chunks_read;
      counters_.bytes_read += reads[i].size;
      ++counters_.prefetched;
      Install(claimed[i], reads[i].buffer);
    }
  }
}

}  // namespace thaw::snapshot
