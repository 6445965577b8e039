#include "remote/leading_twins.h"

#include <algorithm>

#include "snapshot/format.h"
#include "snapshot/manifest.pb.h"

namespace thaw::remote {

uint64_t LeadingTwinsEnd(absl::string_view manifest_bytes,
                         const ChunkCache* cache) {
  using snapshot::kHeaderSize;
  snapshot::proto::Manifest manifest;
  if (!manifest.ParseFromArray(manifest_bytes.data(),
                               static_cast<int>(manifest_bytes.size()))) {
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
