#include "remote/chunk_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/errno_status.h"
#include "base/pwrite_full.h"
#include "snapshot/uring_reader.h"

namespace thaw::remote {
namespace {

// Stale files in tmp/ (a writer that crashed) are removed by a sweep once
// they are this old.
constexpr int64_t kStaleTmpSeconds = 3600;

// All of `out` from the start of `fd`, and nothing after it: the entry is
// exactly this size.
bool ReadExactly(int fd, absl::Span<uint8_t> out, const std::string& path) {
  if (!snapshot::PreadFull(fd, out, 0, path).ok()) return false;
  uint8_t extra;
  return pread(fd, &extra, 1, out.size()) == 0;
}

}  // namespace

std::string DefaultCacheDir() {
  if (const char* d = std::getenv("THAW_CACHE_DIR"); d != nullptr && *d) {
    return d;
  }
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d != nullptr && *d) {
    return absl::StrCat(d, "/thaw");
  }
  if (const char* d = std::getenv("HOME"); d != nullptr && *d) {
    return absl::StrCat(d, "/.cache/thaw");
  }
  return "/var/tmp/thaw-cache";
}

absl::StatusOr<std::shared_ptr<ChunkCache>> ChunkCache::Open(
    const std::string& dir, uint64_t max_bytes) {
  if (dir.empty()) return absl::InvalidArgumentError("cache_dir is empty");
  if (max_bytes == 0) {
    return absl::InvalidArgumentError("cache_max_bytes must be above 0");
  }
  static std::mutex mutex;
  static auto* caches = new std::map<std::string, std::weak_ptr<ChunkCache>>;
  std::error_code error;
  for (const char* sub : {"objects", "tmp"}) {
    std::filesystem::create_directories(std::filesystem::path(dir) / sub,
                                        error);
    if (error) {
      return absl::FailedPreconditionError(
          absl::StrFormat("chunk cache \"%s\": cannot create %s/: %s", dir, sub,
                          error.message()));
    }
  }
  const std::string canonical = std::filesystem::canonical(dir, error).string();
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = (*caches)[canonical];
  if (auto cache = slot.lock(); cache != nullptr) return cache;
  std::shared_ptr<ChunkCache> cache(new ChunkCache(canonical, max_bytes));
  // (A cache that cannot be locked, read-only say, still serves; fetches
  // are then not merged.)
  const std::string claims = canonical + "/claims";
  cache->claims_fd_ = open(claims.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (cache->claims_fd_ >= 0) {
    cache->wait_fd_ = open(claims.c_str(), O_RDWR | O_CLOEXEC);
  }
  slot = cache;
  return cache;
}

std::string ChunkCache::Key(uint64_t content_low, uint64_t content_high,
                            uint64_t stored_hash, uint32_t size) {
  return absl::StrFormat("%016x%016x-%016x-%x", content_high, content_low,
                         stored_hash, size);
}

std::string CacheTmpPath(const std::string& cache_dir,
                         const std::string& what) {
  thread_local std::mt19937_64 random(std::random_device{}());
  return absl::StrFormat("%s/tmp/%s.%d.%016x", cache_dir, what, getpid(),
                         random());
}

int PlaceInCache(const std::string& tmp, const std::string& path,
                 bool keep_existing) {
  auto place = [&] {
    return (keep_existing ? link(tmp.c_str(), path.c_str())
                          : rename(tmp.c_str(), path.c_str())) == 0
               ? 0
               : errno;
  };
  int e = place();
  if (e == ENOENT) {
    mkdir(std::filesystem::path(path).parent_path().c_str(), 0755);
    e = place();
  }
  return e;
}

std::string ChunkCache::EntryPath(const std::string& key) const {
  return absl::StrCat(dir_, "/objects/", key.substr(0, 2), "/", key);
}

bool ChunkCache::Get(const std::string& key, absl::Span<uint8_t> out) {
  const std::string path = EntryPath(key);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ReadExactly(fd, out, path);
  if (ok) futimens(fd, nullptr);  // recently used (least recently: evicted)
  close(fd);
  return ok;
}

absl::Status ChunkCache::Put(const std::string& key,
                             absl::Span<const uint8_t> bytes) {
  const std::string final_path = EntryPath(key);
  const std::string tmp = CacheTmpPath(dir_, key);
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    return ErrnoStatus(absl::StrCat("chunk cache: create ", tmp), errno);
  }
  if (absl::Status s =
          PwriteFull(fd, bytes, 0, absl::StrCat("chunk cache: write ", tmp));
      !s.ok()) {
    close(fd);
    unlink(tmp.c_str());
    return s;
  }
  close(fd);
  if (const int e = PlaceInCache(tmp, final_path, /*keep_existing=*/false);
      e != 0) {
    unlink(tmp.c_str());
    return ErrnoStatus(absl::StrCat("chunk cache: rename into ", final_path),
                       e);
  }
  if (written_since_sweep_.fetch_add(bytes.size()) + bytes.size() >
      max_bytes_ / 8) {
    written_since_sweep_.store(0);
    return Sweep();
  }
  return absl::OkStatus();
}

bool ChunkCache::Has(const std::string& key) const {
  return access(EntryPath(key).c_str(), F_OK) == 0;
}

void ChunkCache::Remove(const std::string& key) {
  unlink(EntryPath(key).c_str());
}

ChunkCache::~ChunkCache() {
  if (claims_fd_ >= 0) close(claims_fd_);
  if (wait_fd_ >= 0) close(wait_fd_);
}

ChunkCache::Claim::~Claim() {
  if (slot_ >= 0) cache_->Release(slot_);
}

int64_t ChunkCache::SlotOf(const std::string& key) {
  return static_cast<int64_t>(XXH3_64bits(key.data(), key.size()) >> 2);
}

namespace {

// Locks (or with F_UNLCK unlocks) byte `slot` of `fd`, or from `slot` to
// the end with `len` 0.
int LockSlot(int fd, int cmd, short type, int64_t slot, int64_t len = 1) {
  struct flock l = {};
  l.l_type = type;
  l.l_whence = SEEK_SET;
  l.l_start = slot;
  l.l_len = len;
  int r;
  while ((r = fcntl(fd, cmd, &l)) != 0 && errno == EINTR) {
  }
  return r;
}

}  // namespace

std::unique_ptr<ChunkCache::Claim> ChunkCache::TryClaim(
    const std::string& key) {
  if (claims_fd_ < 0) {
    // Cannot lock (a read-only cache): fetch without merging.
    return std::unique_ptr<Claim>(new Claim(this, -1));
  }
  const int64_t slot = SlotOf(key);
  {
    std::lock_guard<std::mutex> lock(held_mutex_);
    if (!held_.insert(slot).second) return nullptr;  // this process has it
  }
  if (LockSlot(claims_fd_, F_OFD_SETLK, F_WRLCK, slot) != 0) {
    const int e = errno;
    {
      std::lock_guard<std::mutex> lock(held_mutex_);
      held_.erase(slot);
    }
    // Another process has it; any other failure: fetch without merging.
    if (e == EAGAIN || e == EACCES) return nullptr;
    return std::unique_ptr<Claim>(new Claim(this, -1));
  }
  return std::unique_ptr<Claim>(new Claim(this, slot));
}

void ChunkCache::Release(int64_t slot) {
  LockSlot(claims_fd_, F_OFD_SETLK, F_UNLCK, slot);
  std::lock_guard<std::mutex> lock(held_mutex_);
  held_.erase(slot);
}

void ChunkCache::WaitForClaim(const std::string& key) {
  if (wait_fd_ < 0) return;
  const int64_t slot = SlotOf(key);
  if (LockSlot(wait_fd_, F_OFD_SETLKW, F_RDLCK, slot) == 0) {
    LockSlot(wait_fd_, F_OFD_SETLK, F_UNLCK, slot);
  }
}

void ChunkCache::WaitForAllClaims() {
  if (wait_fd_ < 0) return;
  if (LockSlot(wait_fd_, F_OFD_SETLKW, F_WRLCK, 0, 0) == 0) {
    LockSlot(wait_fd_, F_OFD_SETLK, F_UNLCK, 0, 0);
  }
}

absl::Status ChunkCache::Sweep() {
  const std::string lock_path = absl::StrCat(dir_, "/evict.lock");
  int lock = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0) return ErrnoStatus("chunk cache: open evict.lock", errno);
  if (flock(lock, LOCK_EX | LOCK_NB) != 0) {
    close(lock);
    return absl::OkStatus();  // another process is sweeping
  }
  struct Entry {
    std::string path;
    int64_t used_ns;
    uint64_t size;
  };
  std::vector<Entry> entries;
  uint64_t total = 0;
  std::error_code error;
  // Entries, and the host's images of remote files (remote/local_image.h),
  // by the disk they hold (an image is sparse).
  auto add = [&](const std::filesystem::path& path) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return;
    const uint64_t bytes = static_cast<uint64_t>(st.st_blocks) * 512;
    entries.push_back({path.string(),
                       st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec,
                       bytes});
    total += bytes;
  };
  for (const auto& sub : std::filesystem::directory_iterator(
           std::filesystem::path(dir_) / "objects", error)) {
    std::error_code e2;
    for (const auto& f : std::filesystem::directory_iterator(sub.path(), e2)) {
      add(f.path());
    }
  }
  std::error_code e3;
  for (const auto& f : std::filesystem::directory_iterator(
           std::filesystem::path(dir_) / "images", e3)) {
    add(f.path());
  }
  const time_t now = time(nullptr);
  for (const auto& f : std::filesystem::directory_iterator(
           std::filesystem::path(dir_) / "tmp", error)) {
    struct stat st;
    if (stat(f.path().c_str(), &st) == 0 &&
        now - st.st_mtim.tv_sec > kStaleTmpSeconds) {
      unlink(f.path().c_str());
    }
  }
  const uint64_t target = max_bytes_ / 10 * 9;
  if (total > target) {
    std::sort(
        entries.begin(), entries.end(),
        [](const Entry& a, const Entry& b) { return a.used_ns < b.used_ns; });
    for (const Entry& e : entries) {
      if (total <= target) break;
      if (unlink(e.path.c_str()) == 0) total -= e.size;
    }
  }
  close(lock);
  return absl::OkStatus();
}

}  // namespace thaw::remote
