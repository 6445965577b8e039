// InspectSnapshot, VerifySnapshot and the RestoreEngine names
// (include/thaw/snapshot.h).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "snapshot/format.h"
#include "snapshot/snapshot_file.h"
#include "thaw/snapshot.h"

namespace thaw {

absl::string_view RestoreEngineName(RestoreEngine engine) {
  switch (engine) {
    case RestoreEngine::kEager:
      return "eager";
    case RestoreEngine::kLazy:
      return "lazy";
    case RestoreEngine::kLazyPrefetch:
      return "prefetch";
    case RestoreEngine::kSharedBase:
      return "shared";
  }
  return "unknown";
}

absl::StatusOr<RestoreEngine> ParseRestoreEngine(absl::string_view name) {
  for (RestoreEngine engine :
       {RestoreEngine::kEager, RestoreEngine::kLazy,
        RestoreEngine::kLazyPrefetch, RestoreEngine::kSharedBase}) {
    if (name == RestoreEngineName(engine)) return engine;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown restore engine \"", name,
                   "\" (expected eager, lazy, prefetch or shared)"));
}

double SnapshotInfo::compression_ratio() const {
  return file_size == 0 ? 0.0 : static_cast<double>(memory_size) / file_size;
}

std::string SnapshotInfo::ToString() const {
  std::string out;
  absl::StrAppendFormat(&out, "file: %s (%d bytes, format %d.%d)\n", path,
                        file_size, format_major, format_minor);
  absl::StrAppendFormat(&out, "snapshot id: %s\n", snapshot_id);
  if (!parent_path.empty()) {
    absl::StrAppendFormat(&out, "parent: %s (diff snapshot)\n", parent_path);
  }
  absl::StrAppendFormat(&out, "taken on: %s backend, %s\n", source_backend,
                        absl::FormatTime(created, absl::UTCTimeZone()));
  absl::StrAppendFormat(&out, "guest: %s (restore generation %d)\n", guest_name,
                        restore_generation);
  absl::StrAppendFormat(&out, "memory: %d bytes in %d chunks of %d bytes\n",
                        memory_size, chunks, chunk_size);
  absl::StrAppendFormat(
      &out,
      "chunks: %d zero, %d from parent, %d stored as %d distinct frames "
      "(%d bytes, zstd level %d)\n",
      zero_chunks, parent_chunks, chunks - zero_chunks - parent_chunks, frames,
      stored_bytes, compression_level);
  absl::StrAppendFormat(&out, "compression ratio: %.1fx (memory / file)\n",
                        compression_ratio());
  absl::StrAppendFormat(&out, "working set: %d chunks (%d bytes)%s\n",
                        working_set_chunks,
                        working_set_chunks * uint64_t{chunk_size},
                        working_set_chunks == 0 ? ", none recorded" : "");
  return out;
}

absl::StatusOr<SnapshotInfo> InspectSnapshot(const std::string& path) {
  auto file = snapshot::SnapshotFile::Open(path);
  if (!file.ok()) return file.status();
  const snapshot::proto::Manifest& m = (*file)->manifest();
  SnapshotInfo info;
  info.path = path;
  info.format_major = snapshot::kMajorVersion;
  info.format_minor = snapshot::kMinorVersion;
  info.snapshot_id = absl::BytesToHexString(m.snapshot_id());
  if (m.has_parent()) info.parent_path = m.parent().path();
  info.source_backend = m.source_backend();
  info.guest_name = m.abi().guest_name();
  info.created = absl::FromUnixNanos(m.created_unix_ns());
  info.file_size = (*file)->file_size();
  info.memory_size = m.memory().size();
  info.chunk_size = (*file)->chunk_size();
  info.chunks = (*file)->chunk_count();
  for (uint64_t c = 0; c < info.chunks; ++c) {
    const uint32_t frame = (*file)->ChunkFrame(c);
    if (frame == snapshot::SnapshotFile::kZero) ++info.zero_chunks;
    if (frame == snapshot::kParentChunk) ++info.parent_chunks;
  }
  info.frames = (*file)->frame_count();
  for (uint32_t size : m.frames().stored_size()) info.stored_bytes += size;
  info.working_set_chunks = m.working_set_size();
  info.compression_level = m.compression_level();
  info.restore_generation = m.abi().restore_generation();
  return info;
}

namespace {

// Bytes of the data section outside every frame (the padding before raw
// working-set frames) must be zero: nothing else checks them, and verify
// accepts only a file whose every byte is as written.
absl::Status CheckGapsAreZero(const snapshot::SnapshotFile& file) {
  std::vector<std::pair<uint64_t, uint64_t>> frames;  // [start, end) in data
  for (uint32_t f = 0; f < file.frame_count(); ++f) {
    const uint64_t start = file.FrameOffset(f) - file.data_offset();
    frames.emplace_back(start, start + file.FrameSize(f));
  }
  std::sort(frames.begin(), frames.end());
  uint64_t at = 0;
  frames.emplace_back(file.data_size(), file.data_size());
  for (const auto& [start, end] : frames) {
    if (start > at) {
      std::string gap(start - at, '\0');
      if (pread(file.fd(), gap.data(), gap.size(), file.data_offset() + at) !=
          static_cast<ssize_t>(gap.size())) {
        return file.Corrupt("cannot read the padding between frames");
      }
      if (gap.find_first_not_of('\0') != std::string::npos) {
        return file.Corrupt(absl::StrFormat(
            "non-zero bytes in the padding at byte %d",
            file.data_offset() + at + gap.find_first_not_of('\0')));
      }
    }
    at = std::max(at, end);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status VerifySnapshot(
    const std::string& path,
    std::function<void(uint64_t done, uint64_t total)> progress) {
  auto image = snapshot::SnapshotImage::Open(path);
  if (!image.ok()) return image.status();
  uint64_t total = 0;
  for (const auto& file : (*image)->files()) total += file->frame_count();
  uint64_t done = 0;
  for (const auto& file : (*image)->files()) {
    std::vector<uint8_t> chunk(file->chunk_size());
    for (uint32_t frame = 0; frame < file->frame_count(); ++frame) {
      if (absl::Status s = file->ReadFrame(frame, absl::MakeSpan(chunk));
          !s.ok()) {
        return s;
      }
      if (progress && (++done % 64 == 0 || done == total)) {
        progress(done, total);
      }
    }
    if (absl::Status s = CheckGapsAreZero(*file); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace thaw
