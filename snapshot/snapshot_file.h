// SnapshotFile: one snapshot file, opened and checked; SnapshotImage: a
// snapshot with its chain of diff parents resolved, so that every chunk of
// guest memory maps to a frame in some file of the chain or to zeros.
//
// Nothing read from a file is trusted: Open() checks the header, the
// manifest's checksum and every length, offset, count and index in it before
// anything else uses them, and each frame's checksums are checked when it is
// decoded. Every failure is a status naming the file and what is wrong:
// DataLoss for corruption, FailedPrecondition for a file this build cannot
// use (another major version or architecture, a parent that does not match).
//
// Thread safety: both classes are immutable after Open(); their methods may
// be called from any number of threads.
#ifndef THAW_SNAPSHOT_SNAPSHOT_FILE_H_
#define THAW_SNAPSHOT_SNAPSHOT_FILE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "snapshot/frame_fetcher.h"
#include "snapshot/manifest.pb.h"
#include "snapshot/signature.h"

namespace thaw::snapshot {

// The 128-bit content hash of a chunk (XXH3-128).
struct ContentHash {
  uint64_t low = 0, high = 0;
  bool operator==(const ContentHash&) const = default;
};
ContentHash HashContent(absl::Span<const uint8_t> bytes);
uint64_t HashStored(absl::Span<const uint8_t> bytes);

class SnapshotFile {
 public:
  // Frame value of a chunk that is all zeros (never stored in the file).
  static constexpr uint32_t kZero = 0xFFFFFFFFu;

  // With `key`, the file must be signed by it (snapshot/signature.h):
  // PermissionDenied for an unsigned file, another signer or a signature
  // that does not verify, before the manifest's contents are used. Then
  // every frame is also checked against its signed BLAKE2b digest.
  static absl::StatusOr<std::shared_ptr<const SnapshotFile>> Open(
      const std::string& path, const PublicKey* key = nullptr);
  // The same over an open descriptor (taken over); `name` names the file
  // in messages.
  static absl::StatusOr<std::shared_ptr<const SnapshotFile>> OpenDescriptor(
      int fd, const std::string& name, const PublicKey* key = nullptr);
  // A stand-in for a file held elsewhere (snapshot/frame_fetcher.h): `fd`
  // holds its header, manifest and signature at their offsets; `fetcher`
  // fills in frames when Fetch() asks for them. `size`: the file's size,
  // when the stand-in keeps more after it (0: the stand-in's size).
  static absl::StatusOr<std::shared_ptr<const SnapshotFile>> OpenStandIn(
      int fd, const std::string& name, const PublicKey* key,
      std::shared_ptr<const FrameFetcher> fetcher, uint64_t size = 0);
  ~SnapshotFile();
  SnapshotFile(const SnapshotFile&) = delete;
  SnapshotFile& operator=(const SnapshotFile&) = delete;

  const std::string& path() const { return path_; }
  int fd() const { return fd_; }
  uint64_t file_size() const { return file_size_; }
  // Identifies this version of the file: device, inode, size, mtime, ctime.
  const std::string& version() const { return version_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t data_size() const { return data_size_; }
  const proto::Manifest& manifest() const { return manifest_; }
  int format_minor() const { return format_minor_; }
  // Whether the file carries a signature, and whose (not yet checked unless
  // authenticated()).
  bool is_signed() const { return manifest_.has_signing(); }
  const PublicKey& signer() const { return signer_; }
  // Opened with a key and its signature verified: frames are checked
  // against their BLAKE2b digests as well as their checksums.
  bool authenticated() const { return authenticated_; }
  uint32_t chunk_size() const { return manifest_.memory().chunk_size(); }
  uint64_t chunk_count() const { return chunk_frame_.size(); }
  uint32_t frame_count() const { return manifest_.frames().offset_size(); }

  // The frame holding chunk `chunk`, kZero, or kParentChunk (format.h).
  uint32_t ChunkFrame(uint64_t chunk) const { return chunk_frame_[chunk]; }
  // Absolute position of frame `frame` in the file.
  uint64_t FrameOffset(uint32_t frame) const {
    return data_offset_ + manifest_.frames().offset(frame);
  }
  uint32_t FrameSize(uint32_t frame) const {
    return manifest_.frames().stored_size(frame);
  }
  ContentHash FrameContentHash(uint32_t frame) const {
    return {manifest_.frames().content_hash_low(frame),
            manifest_.frames().content_hash_high(frame)};
  }

  // Makes `frames` readable at their offsets in fd() before they are read
  // or mapped: nothing for a local file; for a stand-in, fetched and
  // checked (snapshot/frame_fetcher.h). Every engine calls it.
  absl::Status Fetch(absl::Span<const uint32_t> frames) const {
    return fetcher_ == nullptr ? absl::OkStatus()
                               : fetcher_->Fetch(*this, frames);
  }
  // Whether frames come from elsewhere (a stand-in).
  bool fetched() const { return fetcher_ != nullptr; }
  // Whether this process checked frame `frame` as it fetched it into the
  // stand-in (FrameFetcher::CheckedHere); false for a local file.
  bool CheckedHere(uint32_t frame) const {
    return fetcher_ != nullptr && fetcher_->CheckedHere(frame);
  }
  uint64_t StoredHash(uint32_t frame) const {
    return manifest_.frames().stored_hash(frame);
  }

  // Format 1.5: where raw frame `frame`'s compressed twin is (its stored
  // bytes at an absolute file offset), if the file packs its working set.
  struct PackedTwin {
    uint64_t offset = 0;
    uint32_t size = 0;
    uint64_t stored_hash = 0;
  };
  const PackedTwin* Packed(uint32_t frame) const {
    return packed_.empty() || packed_[frame].size == 0 ? nullptr
                                                       : &packed_[frame];
  }
  // Whether the file has packed twins at all.
  bool has_packed() const { return !packed_.empty(); }
  // Checks `stored` (frame `frame`'s twin's bytes) and decodes it into
  // `out` (chunk_size bytes), which must then pass CheckStored for the raw
  // frame itself: its checksum and, when authenticated, its signed digest.
  absl::Status DecodePacked(uint32_t frame, absl::Span<const uint8_t> stored,
                            absl::Span<uint8_t> out) const;

  // Checks `stored` (the frame's bytes as read from the file) and decodes it
  // into `out` (chunk_size bytes), checking the result's size and hash.
  absl::Status DecodeFrame(uint32_t frame, absl::Span<const uint8_t> stored,
                           absl::Span<uint8_t> out) const;
  // Checks a frame's stored bytes: their checksum, and for an
  // authenticated file their digest.
  absl::Status CheckStored(uint32_t frame,
                           absl::Span<const uint8_t> stored) const;
  // Whether `bytes` match frame `frame`'s signed digest (signed files).
  bool DigestMatches(uint32_t frame, absl::Span<const uint8_t> bytes) const;
  // Reads (pread) and decodes frame `frame` into `out`.
  absl::Status ReadFrame(uint32_t frame, absl::Span<uint8_t> out) const;
  // Reads frame `frame`'s stored bytes, unchecked and undecoded.
  absl::StatusOr<std::string> ReadStored(uint32_t frame) const;

  // A DataLoss status "snapshot "<path>": <what>".
  absl::Status Corrupt(absl::string_view what) const;

 private:
  SnapshotFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  absl::Status Load(const PublicKey* key);
  absl::Status CheckSignature(absl::Span<const uint8_t> header,
                              absl::Span<const uint8_t> manifest, bool trailer,
                              const PublicKey* key);
  absl::Status CheckManifest();
  absl::Status CheckPacked();

  std::string path_;
  int fd_;
  uint64_t file_size_ = 0;
  uint64_t data_offset_ = 0;
  uint64_t data_size_ = 0;
  std::string version_;
  proto::Manifest manifest_;
  std::vector<uint32_t> chunk_frame_;
  std::vector<PackedTwin> packed_;  // per frame; empty without twins
  int format_minor_ = 0;
  PublicKey signer_{};
  bool authenticated_ = false;
  std::shared_ptr<const FrameFetcher> fetcher_;
};

class SnapshotImage {
 public:
  // Where a chunk's bytes are: frame `frame` of files()[file], or zeros.
  struct Location {
    uint32_t file = 0;
    uint32_t frame = SnapshotFile::kZero;
    bool zero() const { return frame == SnapshotFile::kZero; }
  };

  // Opens `path` and, for a diff snapshot, its parents (a relative parent
  // path is taken from the directory of the file that names it). With
  // `key`, every file of the chain must be signed by it.
  static absl::StatusOr<std::shared_ptr<const SnapshotImage>> Open(
      const std::string& path, const PublicKey* key = nullptr);
  bool authenticated() const { return files_[0]->authenticated(); }
  // The same over open descriptors (all taken over, closed on error):
  // fds[0] is the snapshot, fds[i + 1] the parent of fds[i]; `names` name
  // them in messages. How a worker process, which opens no files, gets one.
  static absl::StatusOr<std::shared_ptr<const SnapshotImage>> OpenDescriptors(
      std::vector<int> fds, const std::vector<std::string>& names,
      const PublicKey* key = nullptr);
  // The image of `top` and, for a diff snapshot, its parents, each opened
  // by `open_parent` from the path its child names (relative to the
  // child's own path), the links checked. How a remote snapshot's chain
  // is opened.
  using ParentOpener =
      std::function<absl::StatusOr<std::shared_ptr<const SnapshotFile>>(
          const std::string& path)>;
  static absl::StatusOr<std::shared_ptr<const SnapshotImage>> Link(
      std::shared_ptr<const SnapshotFile> top, const ParentOpener& open_parent);

  // files()[0] is the snapshot opened; files()[i + 1] is files()[i]'s parent.
  const std::vector<std::shared_ptr<const SnapshotFile>>& files() const {
    return files_;
  }
  const SnapshotFile& top() const { return *files_[0]; }
  const proto::Manifest& manifest() const { return files_[0]->manifest(); }
  uint32_t chunk_size() const { return files_[0]->chunk_size(); }
  uint64_t chunk_count() const { return locations_.size(); }
  uint64_t memory_size() const { return manifest().memory().size(); }

  Location Locate(uint64_t chunk) const { return locations_[chunk]; }
  ContentHash ChunkContentHash(uint64_t chunk) const;
  // Reads and decodes chunk `chunk` (zeros for a zero chunk) into `out`.
  absl::Status ReadChunk(uint64_t chunk, absl::Span<uint8_t> out) const;

 private:
  std::vector<std::shared_ptr<const SnapshotFile>> files_;
  std::vector<Location> locations_;
  ContentHash zero_hash_;
};

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_SNAPSHOT_FILE_H_
