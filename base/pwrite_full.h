// PwriteFull: the one pwrite loop of thaw — snapshot files (AtomicFile),
// remote stand-ins, pulled files and cache entries all write through it.
#ifndef THAW_BASE_PWRITE_FULL_H_
#define THAW_BASE_PWRITE_FULL_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace thaw {

// Writes all of `bytes` at `offset` of `fd`, through short writes and
// EINTR. On failure ErrnoStatus(context, errno) — ENOSPC when the kernel
// accepts no byte at all, rather than looping for ever.
absl::Status PwriteFull(int fd, absl::Span<const uint8_t> bytes,
                        uint64_t offset, absl::string_view context);

}  // namespace thaw

#endif  // THAW_BASE_PWRITE_FULL_H_
