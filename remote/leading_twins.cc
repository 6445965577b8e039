#include "remote/leading_twins.h"

#include <algorithm>

#include "base/little_endian.h"
#include "snapshot/format.h"
#include "snapshot/manifest.pb.h"
#include "snapshot/snapshot_file.h"

namespace thaw::remote {

uint64_t LeadingTwinsEnd(absl::string_view header, const HttpResponse& tail,
                         const ChunkCache* cache) {
  using snapshot::kHeaderSize;
  if (header.size() < kHeaderSize) return kHeaderSize;
  const auto* h = reinterpret_cast<const uint8_t*>(header.data());
  if (LoadLe64(h + snapshot::kHeaderHashOffset) !=
      snapshot::HashStored({h, snapshot::kHeaderHashOffset})) {
    return kHeaderSize;
  }
  const uint64_t manifest_at =
      LoadLe64(h + snapshot::kHeaderManifestOffsetOffset);
  const uint64_t manifest_size =
      LoadLe64(h + snapshot::kHeaderManifestSizeOffset);
  if (manifest_at < tail.range_first ||
      manifest_at - tail.range_first > tail.body.size() ||
      tail.body.size() - (manifest_at - tail.range_first) < manifest_size) {
    return kHeaderSize;
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(tail.body.data()) +
                      (manifest_at - tail.range_first);
  if (snapshot::HashStored({bytes, manifest_size}) !=
      LoadLe64(h + snapshot::kHeaderManifestHashOffset)) {
    return kHeaderSize;
  }
  snapshot::proto::Manifest manifest;
  if (!manifest.ParseFromArray(bytes, static_cast<int>(manifest_size))) {
    return kHeaderSize;
  }
  const auto& packed = manifest.packed_working_set();
  const int twins =
      std::min({packed.frame_size(), packed.offset_size(),
                packed.stored_size_size(), packed.stored_hash_size()});
  uint64_t end = kHeaderSize;
  int count = 0;
  for (; count < twins && kHeaderSize + packed.offset(count) == end; ++count) {
    end += packed.stored_size(count);
    if (end - kHeaderSize >= kLeadingTwinsMax) break;
  }
  if (count == 0) return kHeaderSize;
  if (cache != nullptr) {
    // A sample of the twins, spread over the stretch.
    const auto& frames = manifest.frames();
    const int samples = std::min(count, 32);
    int have = 0;
    for (int s = 0; s < samples; ++s) {
      const int i = static_cast<int>(int64_t{s} * count / samples);
      const uint32_t f = packed.frame(i);
      if (static_cast<int>(f) >= frames.content_hash_low_size() ||
          static_cast<int>(f) >= frames.content_hash_high_size()) {
        return kHeaderSize;
      }
      have += cache->Has(ChunkCache::Key(
          frames.content_hash_low(f), frames.content_hash_high(f),
          packed.stored_hash(i), packed.stored_size(i)));
    }
    if (4 * have >= samples) return kHeaderSize;
  }
  return std::min(end, kHeaderSize + kLeadingTwinsMax);
}

}  // namespace thaw::remote
