// The packed working set at the front of a snapshot file (format 1.5
// writes its twins right after the header): a host opening a file it has
// never seen asks for the header and, in the same request, for what
// follows it, on speculation, and cuts that request where the manifest —
// asked for at the same time, at the file's end — says the stretch of
// twins ends. The working set then arrives one round trip after the open
// starts instead of two.
#ifndef THAW_REMOTE_LEADING_TWINS_H_
#define THAW_REMOTE_LEADING_TWINS_H_

#include <cstdint>

#include "absl/strings/string_view.h"
#include "remote/chunk_cache.h"

namespace thaw::remote {

// At most this much of a file is asked for with its header on speculation
// (twins past it come in ranges, as for a host that had the file's record).
inline constexpr uint64_t kLeadingTwinsMax = 32ull << 20;
// What the header's request takes before the manifest has said how much is
// wanted; it then waits (so a file with nothing at its front costs this).
inline constexpr uint64_t kLeadingTwinsUndecided = 64u << 10;

// The file offset where the stretch of packed twins that starts right after
// the header ends, from the file's manifest (its bytes, checked against the
// header); capped at kHeaderSize + kLeadingTwinsMax. kHeaderSize, meaning
// nothing is worth taking, when the manifest does not parse, the file has
// no twins at its front, or `cache` (may be null) holds a quarter or more
// of them already (a new version of a function whose last version this
// host ran: those come from the cache instead).
uint64_t LeadingTwinsEnd(absl::string_view manifest_bytes,
                         const ChunkCache* cache);

}  // namespace thaw::remote

#endif  // THAW_REMOTE_LEADING_TWINS_H_
