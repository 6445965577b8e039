// Fuzz target: the snapshot reader. The input is a snapshot file; the
// harness first makes its header and manifest checksums right (so the
// fuzzer's mutations reach the manifest's checks, not just the checksum
// compare), opens it as a file, and decodes every chunk it maps. Any crash,
// sanitizer report or hang is a finding; an error status is the expected
// outcome for almost every input.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "base/little_endian.h"
#include "snapshot/format.h"
#include "snapshot/snapshot_file.h"
#include "xxhash.h"

namespace {

// Rewrites the header's manifest and header hashes to match the bytes, when
// the header's manifest range lies inside the input.
void FixChecksums(std::string& file) {
  using namespace thaw::snapshot;
  if (file.size() < kHeaderSize) return;
  auto* bytes = reinterpret_cast<uint8_t*>(file.data());
  const uint64_t manifest_offset = thaw::LoadLe64(bytes + 32);
  const uint64_t manifest_size = thaw::LoadLe64(bytes + 40);
  if (manifest_offset <= file.size() &&
      manifest_size <= file.size() - manifest_offset) {
    thaw::StoreLe(bytes + 48,
                  XXH3_64bits(bytes + manifest_offset, manifest_size), 8);
  }
  thaw::StoreLe(bytes + 56, XXH3_64bits(bytes, 56), 8);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string file(reinterpret_cast<const char*>(data), size);
  FixChecksums(file);
  int fd = memfd_create("thaw-fuzz-snapshot", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (write(fd, file.data(), file.size()) !=
      static_cast<ssize_t>(file.size())) {
    close(fd);
    return 0;
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  auto image = thaw::snapshot::SnapshotImage::Open(path);
  if (image.ok()) {
    std::vector<uint8_t> chunk((*image)->chunk_size());
    const uint64_t chunks = std::min<uint64_t>((*image)->chunk_count(), 4096);
    for (uint64_t c = 0; c < chunks; ++c) {
      (void)(*image)->ReadChunk(c, absl::MakeSpan(chunk));
    }
  }
  close(fd);
  return 0;
}
