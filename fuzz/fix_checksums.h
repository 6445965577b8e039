// Shared by the snapshot fuzz targets: makes a fuzzed file's header and
// manifest checksums right, so that mutations reach the checks behind them
// instead of all stopping at the checksum compare.
#ifndef THAW_FUZZ_FIX_CHECKSUMS_H_
#define THAW_FUZZ_FIX_CHECKSUMS_H_

#include <xxhash.h>

#include <cstdint>
#include <string>

#include "base/little_endian.h"
#include "snapshot/format.h"

namespace thaw::fuzz {

// Rewrites the header's manifest and header hashes to match the bytes, when
// the header's manifest range lies inside the input.
inline void FixChecksums(std::string& file) {
  using namespace thaw::snapshot;
  if (file.size() < kHeaderSize) return;
  auto* bytes = reinterpret_cast<uint8_t*>(file.data());
  const uint64_t manifest_offset =
      thaw::LoadLe64(bytes + kHeaderManifestOffsetOffset);
  const uint64_t manifest_size =
      thaw::LoadLe64(bytes + kHeaderManifestSizeOffset);
  if (manifest_offset <= file.size() &&
      manifest_size <= file.size() - manifest_offset) {
    thaw::StoreLe(bytes + kHeaderManifestHashOffset,
                  XXH3_64bits(bytes + manifest_offset, manifest_size), 8);
  }
  thaw::StoreLe(bytes + kHeaderHashOffset,
                XXH3_64bits(bytes, kHeaderHashOffset), 8);
}

}  // namespace thaw::fuzz

#endif  // THAW_FUZZ_FIX_CHECKSUMS_H_
