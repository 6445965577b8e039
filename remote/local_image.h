// LocalImage: the local copy of one version of a remote snapshot file,
// kept in the host's cache directory and shared by every process on the
// host that opens that version, so that a new handle on a host that has
// restored it before fetches and copies nothing:
//
//   DIR/images/NAME    the remote file's bytes at their offsets (sparse:
//                      only what has been fetched), then, from the next
//                      4 KiB boundary, one byte per frame, set to 1 once
//                      that frame's bytes are in and checked
//   DIR/manifests/KEY  the last open of a URL: its version (NAME), when it
//                      was asked for, and how long the store allowed it to
//                      be used without asking again (Cache-Control
//                      max-age; RemoteOptions::manifest_max_age overrides)
//
// NAME names the version: a hash of the URL, the file's size, its ETag and
// the header's manifest hash, and this boot. A presence byte is set only
// after its frame's bytes are written, so within a boot whoever sees it set
// reads the bytes (one page cache); a power loss can keep presence bytes
// whose data it lost, and after a reboot no image is reused.
//
// An image is made under tmp/ (sized, header and manifest written) and
// linked into place, so another process never sees half of one. The cache's
// sweep evicts images like entries, least recently used first; a process
// with one open keeps using it.
//
// Thread safety: Open and the record functions may be called from any
// thread; an image's presence bytes are atomics.
#ifndef THAW_REMOTE_LOCAL_IMAGE_H_
#define THAW_REMOTE_LOCAL_IMAGE_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace thaw::remote {

// Where the presence bytes of an image of a `size`-byte file start.
uint64_t PresenceOffset(uint64_t size);

// An image file, open. Takes the descriptor's ownership until release().
struct ImageFile {
  int fd = -1;
  std::string path;
  bool created = false;  // made by this open (nothing in it fetched yet)
};

// Opens images/`name` in `cache_dir`, or makes it: a file of `size` bytes
// (then room for the presence bytes) with `head` at 0 and `tail` at
// `tail_at`.
absl::StatusOr<ImageFile> OpenImage(const std::string& cache_dir,
                                    const std::string& name, uint64_t size,
                                    absl::Span<const uint8_t> head,
                                    absl::Span<const uint8_t> tail,
                                    uint64_t tail_at);
// Opens images/`name` if it exists.
std::optional<ImageFile> FindImage(const std::string& cache_dir,
                                   const std::string& name);
// Removes images/`name` (it failed its checks).
void RemoveImage(const std::string& cache_dir, const std::string& name);

// The presence bytes of `frames` frames of an image of a `size`-byte file,
// mapped shared: what every process on the host sees.
class Presence {
 public:
  static absl::StatusOr<Presence> Map(int fd, uint64_t size, uint32_t frames);
  Presence(Presence&& other) noexcept;
  Presence& operator=(Presence&&) = delete;
  ~Presence();
  std::atomic<uint8_t>* bytes() const { return bytes_; }

 private:
  Presence(void* map, uint64_t length)
      : map_(map),
        length_(length),
        bytes_(static_cast<std::atomic<uint8_t>*>(map)) {}
  void* map_;
  uint64_t length_;
  std::atomic<uint8_t>* bytes_;
};

// The name of one version of the file at `url`. `checked_by`: the key
// its frames are checked against (opened with a key), or empty: frames
// checked against a signed digest never share an image with frames that
// were not.
std::string ImageName(const std::string& url, uint64_t size,
                      const std::string& etag, uint64_t manifest_hash,
                      const std::string& checked_by);

// What the last open of a URL found. The functions take the URL with what
// its frames are checked by (the `checked_by` of ImageName) after a space.
struct ManifestRecord {
  std::string image;  // ImageName
  std::string etag;
  uint64_t size = 0;
  absl::Time fetched;
  absl::Duration store_max_age;  // what the store allowed
};
// The record of `url`, if there is one (fresh or not).
std::optional<ManifestRecord> FindManifestRecord(const std::string& cache_dir,
                                                 const std::string& url);
// Writes the record of `url` (atomically; best effort).
void WriteManifestRecord(const std::string& cache_dir, const std::string& url,
                         const ManifestRecord& record);

}  // namespace thaw::remote

#endif  // THAW_REMOTE_LOCAL_IMAGE_H_
