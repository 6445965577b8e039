#include "snapshot/verify.h"

#include <unistd.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "snapshot/uring_reader.h"

namespace thaw::snapshot {

namespace {

// Bytes of the data section outside every frame (the padding before raw
// working-set frames) must be zero: nothing else checks them, and verify
// accepts only a file whose every byte is as written.
absl::Status CheckGapsAreZero(const SnapshotFile& file) {
  std::vector<std::pair<uint64_t, uint64_t>> frames;  // [start, end) in data
  for (uint32_t f = 0; f < file.frame_count(); ++f) {
    const uint64_t start = file.FrameOffset(f) - file.data_offset();
    frames.emplace_back(start, start + file.FrameSize(f));
    if (const auto* twin = file.Packed(f)) {
      const uint64_t at = twin->offset - file.data_offset();
      frames.emplace_back(at, at + twin->size);
    }
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

// Each packed twin (format 1.5) must decode to its raw frame. A remote
// file's twins are not fetched here: a restore that fetches one checks it
// the same way before using it.
absl::Status CheckPackedTwins(const SnapshotFile& file) {
  if (!file.has_packed() || file.fetched()) return absl::OkStatus();
  std::vector<uint8_t> chunk(file.chunk_size()), stored;
  for (uint32_t f = 0; f < file.frame_count(); ++f) {
    const auto* twin = file.Packed(f);
    if (twin == nullptr) continue;
    stored.resize(twin->size);
    if (absl::Status s = PreadFull(file.fd(), absl::MakeSpan(stored),
                                   twin->offset, file.path());
        !s.ok()) {
      return s;
    }
    if (absl::Status s = file.DecodePacked(f, stored, absl::MakeSpan(chunk));
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status VerifyImage(
    const SnapshotImage& image,
    const std::function<void(uint64_t done, uint64_t total)>& progress) {
  uint64_t total = 0;
  for (const auto& file : image.files()) total += file->frame_count();
  uint64_t done = 0;
  for (const auto& file : image.files()) {
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
    if (absl::Status s = CheckPackedTwins(*file); !s.ok()) return s;
    if (absl::Status s = CheckGapsAreZero(*file); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace thaw::snapshot
