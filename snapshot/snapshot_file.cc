#include "snapshot/snapshot_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/errno_status.h"
#include "base/little_endian.h"
#include "snapshot/format.h"
#include "snapshot/signature.h"
#include "snapshot/uring_reader.h"
#include "thaw/abi.h"

namespace thaw::snapshot {
namespace {

// A zstd context per thread: creating one costs more than a small frame.
ZSTD_DCtx* ThreadDecoder() {
  thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(
      ZSTD_createDCtx(), ZSTD_freeDCtx);
  return dctx.get();
}

constexpr uint64_t kMaxMemorySize = 64ull << 30;

bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

ContentHash HashContent(absl::Span<const uint8_t> bytes) {
  XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  return {h.low64, h.high64};
}

uint64_t HashStored(absl::Span<const uint8_t> bytes) {
  return XXH3_64bits(bytes.data(), bytes.size());
}

absl::StatusOr<std::shared_ptr<const SnapshotFile>> SnapshotFile::Open(
    const std::string& path, const PublicKey* key) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return ErrnoStatus(absl::StrCat("open snapshot \"", path, "\""), errno);
  }
  return OpenDescriptor(fd, path, key);
}

absl::StatusOr<std::shared_ptr<const SnapshotFile>>
SnapshotFile::OpenDescriptor(int fd, const std::string& name,
                             const PublicKey* key) {
  std::shared_ptr<SnapshotFile> file(new SnapshotFile(name, fd));
  if (absl::Status s = file->Load(key); !s.ok()) return s;
  return file;
}

absl::StatusOr<std::shared_ptr<const SnapshotFile>> SnapshotFile::OpenStandIn(
    int fd, const std::string& name, const PublicKey* key,
    std::shared_ptr<const FrameFetcher> fetcher, uint64_t size) {
  std::shared_ptr<SnapshotFile> file(new SnapshotFile(name, fd));
  file->file_size_ = size;
  if (absl::Status s = file->Load(key); !s.ok()) return s;
  file->fetcher_ = std::move(fetcher);
  return file;
}

SnapshotFile::~SnapshotFile() { close(fd_); }

absl::Status SnapshotFile::Corrupt(absl::string_view what) const {
  return absl::DataLossError(absl::StrCat("snapshot \"", path_, "\": ", what));
}

absl::Status SnapshotFile::Load(const PublicKey* key) {
  struct stat st;
  if (fstat(fd_, &st) != 0) {
    return ErrnoStatus(absl::StrCat("stat snapshot \"", path_, "\""), errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot \"", path_, "\": not a regular file"));
  }
  // (A stand-in may say its size: it can keep more after the file.)
  if (file_size_ == 0 || file_size_ > static_cast<uint64_t>(st.st_size)) {
    file_size_ = st.st_size;
  }
  version_ = absl::StrFormat("%d:%d:%d:%d.%d:%d.%d", st.st_dev, st.st_ino,
                             st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
                             st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
  if (file_size_ < kHeaderSize) {
    return Corrupt(
        absl::StrFormat("file is %d bytes, shorter than the %d-byte header",
                        file_size_, kHeaderSize));
  }
  uint8_t header[kHeaderSize];
  if (absl::Status s = PreadFull(fd_, absl::MakeSpan(header), 0, path_);
      !s.ok()) {
    return s;
  }
  if (std::memcmp(header + kHeaderMagicOffset, kMagic, sizeof(kMagic)) != 0) {
    return Corrupt("bad magic: not a thaw snapshot file");
  }
  if (LoadLe64(header + kHeaderHashOffset) !=
      XXH3_64bits(header, kHeaderHashOffset)) {
    return Corrupt("header checksum mismatch");
  }
  const uint16_t major = LoadLe16(header + kHeaderMajorOffset);
  const uint16_t minor = LoadLe16(header + kHeaderMinorOffset);
  if (major != kMajorVersion || minor > kMinorVersion) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "snapshot \"%s\": format version %d.%d; this build reads %d.0 to "
        "%d.%d",
        path_, major, minor, kMajorVersion, kMajorVersion, kMinorVersion));
  }
  format_minor_ = minor;
  const uint32_t arch = LoadLe32(header + kHeaderArchOffset);
  if (arch != kArchX86_64) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "snapshot \"%s\": architecture %d; this build runs x86-64 (%d)", path_,
        arch, kArchX86_64));
  }
  data_offset_ = LoadLe64(header + kHeaderDataOffsetOffset);
  data_size_ = LoadLe64(header + kHeaderDataSizeOffset);
  const uint64_t data_size = data_size_;
  const uint64_t manifest_offset =
      LoadLe64(header + kHeaderManifestOffsetOffset);
  const uint64_t manifest_size = LoadLe64(header + kHeaderManifestSizeOffset);
  // The sections must tile the file exactly: header, data, manifest, and
  // in a signed file the signature, then the end.
  const uint64_t after_manifest =
      manifest_offset <= file_size_ ? file_size_ - manifest_offset : 0;
  const bool trailer = minor >= kSignedMinorVersion &&
                       manifest_size + kSignatureSize == after_manifest;
  if (data_offset_ != kHeaderSize || data_size > file_size_ - kHeaderSize ||
      manifest_offset != kHeaderSize + data_size ||
      (manifest_size != after_manifest && !trailer)) {
    return Corrupt(absl::StrFormat(
        "sections do not tile the file: data [%d, +%d), manifest [%d, +%d), "
        "file size %d (truncated or extended?)",
        data_offset_, data_size, manifest_offset, manifest_size, file_size_));
  }
  if (manifest_size > kMaxManifestSize) {
    return Corrupt(absl::StrFormat("manifest of %d bytes exceeds the %d limit",
                                   manifest_size, kMaxManifestSize));
  }
  std::string bytes(manifest_size, '\0');
  if (absl::Status s =
          PreadFull(fd_,
                    absl::MakeSpan(reinterpret_cast<uint8_t*>(bytes.data()),
                                   bytes.size()),
                    manifest_offset, path_);
      !s.ok()) {
    return s;
  }
  if (XXH3_64bits(bytes.data(), bytes.size()) !=
      LoadLe64(header + kHeaderManifestHashOffset)) {
    return Corrupt("manifest checksum mismatch");
  }
  if (!manifest_.ParseFromString(bytes)) {
    return Corrupt("manifest does not parse");
  }
  if (absl::Status s = CheckSignature(
          absl::MakeConstSpan(header),
          absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()),
                              bytes.size()),
          trailer, key);
      !s.ok()) {
    return s;
  }
  return CheckManifest();
}

absl::Status SnapshotFile::CheckSignature(absl::Span<const uint8_t> header,
                                          absl::Span<const uint8_t> manifest,
                                          bool trailer, const PublicKey* key) {
  const bool signed_file = manifest_.has_signing();
  if (signed_file != trailer) {
    return Corrupt(signed_file ? "the manifest names a signer but the file "
                                 "has no signature after it"
                               : "64 bytes follow the manifest but it names "
                                 "no signer");
  }
  if (signed_file) {
    const proto::Signing& signing = manifest_.signing();
    if (signing.public_key().size() != kPublicKeySize) {
      return Corrupt("the signer's key is not 32 bytes");
    }
    std::memcpy(signer_.data(), signing.public_key().data(), kPublicKeySize);
    if (signing.frame_digests().size() !=
        uint64_t{kFrameDigestSize} * manifest_.frames().offset_size()) {
      return Corrupt(absl::StrFormat(
          "%d bytes of frame digests for %d frames (32 bytes each)",
          signing.frame_digests().size(), manifest_.frames().offset_size()));
    }
  }
  if (key == nullptr) return absl::OkStatus();
  if (!signed_file) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "snapshot \"%s\" is not signed; it must be signed by %s", path_,
        KeyName(*key)));
  }
  if (signer_ != *key) {
    return absl::PermissionDeniedError(
        absl::StrFormat("snapshot \"%s\" is signed by %s, not by %s", path_,
                        KeyName(signer_), KeyName(*key)));
  }
  Signature signature;
  if (absl::Status s =
          PreadFull(fd_, absl::MakeSpan(signature),
                    kHeaderSize + data_size_ + manifest.size(), path_);
      !s.ok()) {
    return s;
  }
  if (!VerifySnapshotSignature(*key, header, manifest, signature)) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "snapshot \"%s\": the signature by %s does not verify (the header or "
        "manifest changed after signing, or the signature is damaged)",
        path_, KeyName(*key)));
  }
  authenticated_ = true;
  return absl::OkStatus();
}

absl::Status SnapshotFile::CheckManifest() {
  const proto::Manifest& m = manifest_;
  if (m.snapshot_id().size() != 16)
    return Corrupt("snapshot id is not 16 bytes");
  if (m.config().guest_kind() > 2) {
    return Corrupt(
        absl::StrFormat("unknown guest kind %d", m.config().guest_kind()));
  }
  // A Linux VM (kind 2, format 1.4) carries its machine instead of the
  // function-guest ABI's state; the two never come together.
  const bool linux_vm = m.config().guest_kind() == 2;
  if (linux_vm != m.has_linux_machine() ||
      (linux_vm && format_minor_ < kLinuxVmMinorVersion)) {
    return Corrupt(absl::StrFormat(
        "guest kind %d in a format 1.%d file %s a Linux VM's machine state",
        m.config().guest_kind(), format_minor_,
        m.has_linux_machine() ? "with" : "without"));
  }
  if (!linux_vm && m.abi().abi_version() != THAW_ABI_VERSION) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "snapshot \"%s\": guest ABI version %d; this build runs version %d",
        path_, m.abi().abi_version(), THAW_ABI_VERSION));
  }
  const proto::Memory& mem = m.memory();
  const uint32_t chunk = mem.chunk_size();
  if (!IsPowerOfTwo(chunk) || chunk < kMinChunkSize || chunk > kMaxChunkSize) {
    return Corrupt(
        absl::StrFormat("chunk size %d is not a power of two in "
                        "[%d, %d]",
                        chunk, kMinChunkSize, kMaxChunkSize));
  }
  if (mem.size() == 0 || mem.size() > kMaxMemorySize ||
      mem.size() % chunk != 0 || mem.size() % (2ull << 20) != 0 ||
      mem.size() != m.config().memory_size()) {
    return Corrupt(absl::StrFormat(
        "memory size %d is not a multiple of 2 MiB and of the chunk size up "
        "to 64 GiB, or differs from the configured %d",
        mem.size(), m.config().memory_size()));
  }
  const uint64_t chunks = mem.size() / chunk;
  if (mem.zero_bitmap().size() != (chunks + 7) / 8) {
    return Corrupt(absl::StrFormat("zero bitmap is %d bytes; %d chunks need %d",
                                   mem.zero_bitmap().size(), chunks,
                                   (chunks + 7) / 8));
  }
  const auto* bitmap =
      reinterpret_cast<const uint8_t*>(mem.zero_bitmap().data());
  if (chunks % 8 != 0 && (bitmap[chunks / 8] >> (chunks % 8)) != 0) {
    return Corrupt("zero bitmap has bits set past the last chunk");
  }
  const proto::Frames& f = m.frames();
  const int frames = f.offset_size();
  if (f.stored_size_size() != frames || f.stored_hash_size() != frames ||
      f.content_hash_low_size() != frames ||
      f.content_hash_high_size() != frames) {
    return Corrupt("frame table columns differ in length");
  }
  for (int i = 0; i < frames; ++i) {
    const uint64_t off = f.offset(i);
    const uint32_t size = f.stored_size(i);
    if (size == 0 || size > chunk || off > data_size_ ||
        size > data_size_ - off) {
      return Corrupt(absl::StrFormat(
          "frame %d [%d, +%d) lies outside the data section of %d bytes or has "
          "a bad size",
          i, off, size, data_size_));
    }
  }
  const bool has_parent = m.has_parent();
  if (has_parent && m.parent().snapshot_id().size() != 16) {
    return Corrupt("parent snapshot id is not 16 bytes");
  }
  chunk_frame_.assign(chunks, kZero);
  int next = 0;
  for (uint64_t c = 0; c < chunks; ++c) {
    if (bitmap[c / 8] & (1u << (c % 8))) continue;
    if (next >= mem.chunk_frame_size()) {
      return Corrupt(absl::StrFormat(
          "chunk table has %d entries; the zero bitmap needs more",
          mem.chunk_frame_size()));
    }
    const uint32_t frame = mem.chunk_frame(next++);
    if (!(frame < static_cast<uint32_t>(frames) ||
          (frame == kParentChunk && has_parent))) {
      return Corrupt(absl::StrFormat(
          "chunk %d refers to frame %d; the file has %d frames%s", c, frame,
          frames, has_parent ? "" : " and no parent"));
    }
    chunk_frame_[c] = frame;
  }
  if (next != mem.chunk_frame_size()) {
    return Corrupt(absl::StrFormat(
        "chunk table has %d entries; the zero bitmap leaves %d chunks",
        mem.chunk_frame_size(), next));
  }
  for (uint32_t c : m.working_set()) {
    if (c >= chunks) {
      return Corrupt(
          absl::StrFormat("working set names chunk %d of %d", c, chunks));
    }
  }
  if (absl::Status s = CheckPacked(); !s.ok()) return s;
  // A Linux VM's vCPUs are in its machine state, whose shapes the restore
  // checks field by field (lib/linuxvm/linux_machine_persist.cc).
  const proto::VcpuState& v = m.vcpu();
  if (!linux_vm && (v.gpr_size() != 16 || v.fpu().st().size() != 128 ||
                    v.fpu().xmm().size() != 256)) {
    return Corrupt("vCPU state is incomplete");
  }
  return absl::OkStatus();
}

absl::Status SnapshotFile::CheckPacked() {
  if (!manifest_.has_packed_working_set()) return absl::OkStatus();
  if (format_minor_ < kPackedWorkingSetMinorVersion) {
    return Corrupt(absl::StrFormat(
        "a packed working set in a format 1.%d file (it came in 1.%d)",
        format_minor_, kPackedWorkingSetMinorVersion));
  }
  const proto::PackedWorkingSet& p = manifest_.packed_working_set();
  const int n = p.frame_size();
  if (p.offset_size() != n || p.stored_size_size() != n ||
      p.stored_hash_size() != n) {
    return Corrupt("packed working set columns differ in length");
  }
  packed_.assign(frame_count(), PackedTwin{});
  for (int i = 0; i < n; ++i) {
    const uint32_t frame = p.frame(i);
    const uint64_t off = p.offset(i);
    const uint32_t size = p.stored_size(i);
    // Twins stand for raw frames only, one each.
    if (frame >= frame_count() || FrameSize(frame) != chunk_size() ||
        packed_[frame].size != 0) {
      return Corrupt(absl::StrFormat(
          "packed working set entry %d stands for frame %d, which is not a "
          "raw frame of this file or has a twin already",
          i, frame));
    }
    if (size == 0 || size > chunk_size() || off > data_size_ ||
        size > data_size_ - off) {
      return Corrupt(absl::StrFormat(
          "packed working set entry %d [%d, +%d) lies outside the data "
          "section of %d bytes or has a bad size",
          i, off, size, data_size_));
    }
    packed_[frame] = {data_offset_ + off, size, p.stored_hash(i)};
  }
  return absl::OkStatus();
}

absl::Status SnapshotFile::DecodePacked(uint32_t frame,
                                        absl::Span<const uint8_t> stored,
                                        absl::Span<uint8_t> out) const {
  const PackedTwin* twin = frame < frame_count() ? Packed(frame) : nullptr;
  if (twin == nullptr || stored.size() != twin->size ||
      out.size() != chunk_size()) {
    return absl::InternalError(absl::StrFormat(
        "snapshot \"%s\": DecodePacked(%d) with %d stored and %d out bytes",
        path_, frame, stored.size(), out.size()));
  }
  if (HashStored(stored) != twin->stored_hash) {
    return Corrupt(absl::StrFormat(
        "the packed twin of frame %d (at byte %d): checksum mismatch", frame,
        twin->offset));
  }
  if (stored.size() == out.size()) {  // an incompressible chunk, raw
    std::memcpy(out.data(), stored.data(), out.size());
    return CheckStored(frame, out);
  }
  const size_t n = ZSTD_decompressDCtx(ThreadDecoder(), out.data(), out.size(),
                                       stored.data(), stored.size());
  if (ZSTD_isError(n) || n != out.size()) {
    return Corrupt(absl::StrFormat(
        "the packed twin of frame %d (at byte %d) does not decompress to a "
        "chunk (%s)",
        frame, twin->offset,
        ZSTD_isError(n) ? ZSTD_getErrorName(n)
                        : absl::StrFormat("%d bytes", n).c_str()));
  }
  return CheckStored(frame, out);
}

absl::Status SnapshotFile::DecodeFrame(uint32_t frame,
                                       absl::Span<const uint8_t> stored,
                                       absl::Span<uint8_t> out) const {
  const uint32_t chunk = chunk_size();
  if (frame >= frame_count() || out.size() != chunk ||
      stored.size() != FrameSize(frame)) {
    return absl::InternalError(absl::StrFormat(
        "snapshot \"%s\": DecodeFrame(%d) with %d stored and %d out bytes",
        path_, frame, stored.size(), out.size()));
  }
  if (absl::Status s = CheckStored(frame, stored); !s.ok()) return s;
  if (stored.size() == chunk) {
    std::memcpy(out.data(), stored.data(), chunk);
  } else {
    size_t n = ZSTD_decompressDCtx(ThreadDecoder(), out.data(), out.size(),
                                   stored.data(), stored.size());
    if (ZSTD_isError(n)) {
      return Corrupt(absl::StrFormat("frame %d (at byte %d): zstd: %s", frame,
                                     FrameOffset(frame), ZSTD_getErrorName(n)));
    }
    if (n != chunk) {
      return Corrupt(absl::StrFormat(
          "frame %d (at byte %d) decompresses to %d bytes, not the chunk size "
          "%d",
          frame, FrameOffset(frame), n, chunk));
    }
  }
  if (!(HashContent(out) == FrameContentHash(frame))) {
    return Corrupt(absl::StrFormat(
        "frame %d (at byte %d): decompressed content checksum mismatch", frame,
        FrameOffset(frame)));
  }
  return absl::OkStatus();
}

absl::Status SnapshotFile::CheckStored(uint32_t frame,
                                       absl::Span<const uint8_t> stored) const {
  if (HashStored(stored) != manifest_.frames().stored_hash(frame)) {
    return Corrupt(absl::StrFormat("frame %d (at byte %d): checksum mismatch",
                                   frame, FrameOffset(frame)));
  }
  if (authenticated_ && !DigestMatches(frame, stored)) {
    return Corrupt(absl::StrFormat(
        "frame %d (at byte %d): its BLAKE2b digest does not match the signed "
        "manifest (the frame was changed after signing)",
        frame, FrameOffset(frame)));
  }
  return absl::OkStatus();
}

bool SnapshotFile::DigestMatches(uint32_t frame,
                                 absl::Span<const uint8_t> bytes) const {
  const FrameDigest digest = DigestFrame(bytes);
  return std::memcmp(digest.data(),
                     manifest_.signing().frame_digests().data() +
                         uint64_t{frame} * kFrameDigestSize,
                     kFrameDigestSize) == 0;
}

absl::StatusOr<std::string> SnapshotFile::ReadStored(uint32_t frame) const {
  if (absl::Status s = Fetch({&frame, 1}); !s.ok()) return s;
  std::string stored(FrameSize(frame), '\0');
  if (absl::Status s =
          PreadFull(fd_,
                    absl::MakeSpan(reinterpret_cast<uint8_t*>(stored.data()),
                                   stored.size()),
                    FrameOffset(frame), path_);
      !s.ok()) {
    return s;
  }
  return stored;
}

absl::Status SnapshotFile::ReadFrame(uint32_t frame,
                                     absl::Span<uint8_t> out) const {
  auto stored = ReadStored(frame);
  if (!stored.ok()) return stored.status();
  return DecodeFrame(
      frame,
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(stored->data()),
                          stored->size()),
      out);
}

absl::StatusOr<std::shared_ptr<const SnapshotImage>> SnapshotImage::Open(
    const std::string& path, const PublicKey* key) {
  auto top = SnapshotFile::Open(path, key);
  if (!top.ok()) return top.status();
  // With a key, every link of a diff chain must be signed by it.
  return Link(*std::move(top), [key](const std::string& parent) {
    return SnapshotFile::Open(parent, key);
  });
}

absl::StatusOr<std::shared_ptr<const SnapshotImage>>
SnapshotImage::OpenDescriptors(std::vector<int> fds,
                               const std::vector<std::string>& names,
                               const PublicKey* key) {
  auto close_from = [&fds](size_t i) {
    for (; i < fds.size(); ++i) close(fds[i]);
  };
  if (fds.empty() || names.size() != fds.size()) {
    close_from(0);
    return absl::InvalidArgumentError(
        "OpenDescriptors: one name for each descriptor, at least one");
  }
  auto top = SnapshotFile::OpenDescriptor(fds[0], names[0], key);
  size_t next = 1;
  if (!top.ok()) {
    close_from(next);
    return top.status();
  }
  auto image =
      Link(*std::move(top),
           [&](const std::string& parent)
               -> absl::StatusOr<std::shared_ptr<const SnapshotFile>> {
             if (next >= fds.size()) {
               return absl::FailedPreconditionError(absl::StrFormat(
                   "snapshot \"%s\": its parent \"%s\" was not passed",
                   names[0], parent));
             }
             const size_t i = next++;
             return SnapshotFile::OpenDescriptor(fds[i], names[i], key);
           });
  close_from(next);  // any not taken
  return image;
}

absl::StatusOr<std::shared_ptr<const SnapshotImage>> SnapshotImage::Link(
    std::shared_ptr<const SnapshotFile> top, const ParentOpener& open_parent) {
  auto image = std::make_shared<SnapshotImage>();
  image->files_.push_back(std::move(top));
  for (int depth = 1;; ++depth) {
    const SnapshotFile& child = *image->files_.back();
    if (!child.manifest().has_parent()) break;
    if (depth >= kMaxChainDepth) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "snapshot \"%s\": chain of diff parents is longer than %d (or "
          "cyclic)",
          image->files_[0]->path(), kMaxChainDepth));
    }
    // A relative parent path is taken from the directory of its child.
    std::filesystem::path next(child.manifest().parent().path());
    if (next.is_relative()) {
      next = std::filesystem::path(child.path()).parent_path() / next;
    }
    auto file = open_parent(next.string());
    if (!file.ok()) return file.status();
    const proto::Manifest& pm = (*file)->manifest();
    if (pm.snapshot_id() != child.manifest().parent().snapshot_id()) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "snapshot \"%s\": its parent \"%s\" is not the snapshot it was "
          "taken from (snapshot id differs)",
          child.path(), next.string()));
    }
    if (pm.memory().size() != child.manifest().memory().size() ||
        pm.memory().chunk_size() != child.chunk_size()) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "snapshot \"%s\": its parent \"%s\" has a different memory size "
          "or chunk size",
          child.path(), next.string()));
    }
    image->files_.push_back(*std::move(file));
  }
  const uint64_t chunks = image->files_[0]->chunk_count();
  image->locations_.resize(chunks);
  for (uint64_t c = 0; c < chunks; ++c) {
    uint32_t file = 0;
    uint32_t frame = image->files_[0]->ChunkFrame(c);
    while (frame == kParentChunk) {
      ++file;  // CheckManifest allows kParentChunk only where a parent exists
      frame = image->files_[file]->ChunkFrame(c);
    }
    image->locations_[c] = {file, frame};
  }
  std::vector<uint8_t> zeros(image->chunk_size(), 0);
  image->zero_hash_ = HashContent(zeros);
  return image;
}

ContentHash SnapshotImage::ChunkContentHash(uint64_t chunk) const {
  Location where = locations_[chunk];
  if (where.zero()) return zero_hash_;
  return files_[where.file]->FrameContentHash(where.frame);
}

absl::Status SnapshotImage::ReadChunk(uint64_t chunk,
                                      absl::Span<uint8_t> out) const {
  Location where = locations_[chunk];
  if (where.zero()) {
    std::memset(out.data(), 0, out.size());
    return absl::OkStatus();
  }
  return files_[where.file]->ReadFrame(where.frame, out);
}

}  // namespace thaw::snapshot
