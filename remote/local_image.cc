#include "remote/local_image.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/errno_status.h"
#include "base/pwrite_full.h"
#include "remote/chunk_cache.h"

namespace thaw::remote {
namespace {

// Room for the presence bytes of the most frames a snapshot can have
// (64 GiB of 4 KiB chunks); sparse, so it costs nothing on disk.
constexpr uint64_t kMaxPresence = 16ull << 20;

std::string Hex128(const std::string& bytes) {
  const XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  return absl::StrFormat("%016x%016x", h.high64, h.low64);
}

// This boot's id: an image made before a power loss is not trusted after.
const std::string& BootId() {
  static const std::string* id = [] {
    std::string line;
    std::ifstream("/proc/sys/kernel/random/boot_id") >> line;
    return new std::string(line);
  }();
  return *id;
}

std::string ImagePath(const std::string& dir, const std::string& name) {
  return absl::StrCat(dir, "/images/", name);
}

std::string RecordPath(const std::string& dir, const std::string& url) {
  return absl::StrCat(dir, "/manifests/", Hex128(url));
}

}  // namespace

uint64_t PresenceOffset(uint64_t size) { return (size + 4095) / 4096 * 4096; }

std::string ImageName(const std::string& url, uint64_t size,
                      const std::string& etag, uint64_t manifest_hash,
                      const std::string& checked_by) {
  return Hex128(absl::StrCat(url, "\n", size, "\n", etag, "\n", manifest_hash,
                             "\n", checked_by, "\n", BootId()));
}

std::optional<ImageFile> FindImage(const std::string& cache_dir,
                                   const std::string& name) {
  const std::string path = ImagePath(cache_dir, name);
  const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  // Recently used (the sweep evicts by mtime), marked coarsely: a file's
  // times are part of its version, and a restore checks the frames it maps
  // once per version and process, so an image touched on every open would
  // be checked again on every open.
  struct stat st;
  if (fstat(fd, &st) == 0 && time(nullptr) - st.st_mtim.tv_sec > 600) {
    futimens(fd, nullptr);
  }
  return ImageFile{fd, path, false};
}

void RemoveImage(const std::string& cache_dir, const std::string& name) {
  unlink(ImagePath(cache_dir, name).c_str());
}

absl::StatusOr<ImageFile> OpenImage(const std::string& cache_dir,
                                    const std::string& name, uint64_t size,
                                    absl::Span<const uint8_t> head,
                                    absl::Span<const uint8_t> tail,
                                    uint64_t tail_at) {
  if (auto found = FindImage(cache_dir, name)) return *found;
  const std::string path = ImagePath(cache_dir, name);
  const std::string tmp = CacheTmpPath(cache_dir, name);
  const int fd = open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(absl::StrCat("create ", tmp), errno);
  absl::Status s = ftruncate(fd, PresenceOffset(size) + kMaxPresence) == 0
                       ? absl::OkStatus()
                       : ErrnoStatus(absl::StrCat("size ", tmp), errno);
  if (s.ok()) s = PwriteFull(fd, head, 0, absl::StrCat("write ", tmp));
  if (s.ok()) s = PwriteFull(fd, tail, tail_at, absl::StrCat("write ", tmp));
  if (s.ok()) {
    const int e = PlaceInCache(tmp, path, /*keep_existing=*/true);
    if (e == EEXIST) {  // another process made it first: use theirs
      unlink(tmp.c_str());
      close(fd);
      if (auto found = FindImage(cache_dir, name)) return *found;
      return absl::UnavailableError(
          absl::StrCat("image ", path, " vanished while opened"));
    }
    if (e != 0) s = ErrnoStatus(absl::StrCat("link ", path), e);
  }
  unlink(tmp.c_str());
  if (!s.ok()) {
    close(fd);
    return s;
  }
  return ImageFile{fd, path, true};
}

absl::StatusOr<Presence> Presence::Map(int fd, uint64_t size, uint32_t frames) {
  const uint64_t length = std::max<uint64_t>(frames, 1);
  if (length > kMaxPresence) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d frames: more than an image has room for", frames));
  }
  void* map = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                   PresenceOffset(size));
  if (map == MAP_FAILED) return ErrnoStatus("map an image's presence", errno);
  return Presence(map, length);
}

Presence::Presence(Presence&& other) noexcept
    : map_(other.map_), length_(other.length_), bytes_(other.bytes_) {
  other.map_ = nullptr;
}

Presence::~Presence() {
  if (map_ != nullptr) munmap(map_, length_);
}

std::optional<ManifestRecord> FindManifestRecord(const std::string& cache_dir,
                                                 const std::string& url) {
  std::ifstream in(RecordPath(cache_dir, url));
  std::string stored_url, image, etag, size, fetched, age;
  if (!std::getline(in, stored_url) || stored_url != url ||
      !std::getline(in, image) || !std::getline(in, etag) ||
      !std::getline(in, size) || !std::getline(in, fetched) ||
      !std::getline(in, age)) {
    return std::nullopt;
  }
  ManifestRecord record;
  int64_t fetched_ns = 0, age_s = 0;
  if (!absl::SimpleAtoi(size, &record.size) ||
      !absl::SimpleAtoi(fetched, &fetched_ns) ||
      !absl::SimpleAtoi(age, &age_s)) {
    return std::nullopt;
  }
  record.image = image;
  record.etag = etag;
  record.fetched = absl::FromUnixNanos(fetched_ns);
  record.store_max_age = absl::Seconds(age_s);
  return record;
}

void WriteManifestRecord(const std::string& cache_dir, const std::string& url,
                         const ManifestRecord& record) {
  // (A URL or ETag with a line break cannot be recorded: it is not.)
  if (url.find('\n') != std::string::npos ||
      record.etag.find('\n') != std::string::npos) {
    return;
  }
  const std::string path = RecordPath(cache_dir, url);
  const std::string tmp = CacheTmpPath(cache_dir, "manifest");
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << url << "\n"
        << record.image << "\n"
        << record.etag << "\n"
        << record.size << "\n"
        << absl::ToUnixNanos(record.fetched) << "\n"
        << absl::ToInt64Seconds(record.store_max_age) << "\n";
    if (!out.flush()) {
      unlink(tmp.c_str());
      return;
    }
  }
  if (PlaceInCache(tmp, path, /*keep_existing=*/false) != 0) {
    unlink(tmp.c_str());
  }
}

}  // namespace thaw::remote
