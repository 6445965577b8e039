// FrameFetcher: the seam through which a snapshot file whose frames are
// somewhere else (a remote store, remote/) fills them in before they are
// read.
//
// A remote snapshot is opened as a local stand-in: a sparse file of the
// remote file's size holding its header, manifest and signature, so that
// SnapshotFile's checks, and every engine's reads at frame offsets (pread,
// io_uring, mmap of raw frames), work unchanged. Before an engine reads or
// maps frames it calls SnapshotFile::Fetch(frames); for a local file that
// does nothing, for a stand-in it returns once each frame's stored bytes are
// in the stand-in at their offsets and passed CheckStored (checksum, and
// for a signed file the signed digest) — so no fetched byte reaches a guest
// unchecked.
//
// Thread safety: Fetch may be called from any number of threads at once;
// an implementation merges concurrent fetches of one frame.
#ifndef THAW_SNAPSHOT_FRAME_FETCHER_H_
#define THAW_SNAPSHOT_FRAME_FETCHER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace thaw::snapshot {

class SnapshotFile;

class FrameFetcher {
 public:
  virtual ~FrameFetcher() = default;
  // Makes frames `frames` of `file` readable at their offsets in
  // file.fd(). Errors name the file and what failed (Unavailable for a
  // store that did not answer, DataLoss for bytes that failed their
  // checks however often they were fetched).
  virtual absl::Status Fetch(const SnapshotFile& file,
                             absl::Span<const uint32_t> frames) const = 0;
  // Whether this process checked frame `frame`'s bytes (as CheckStored
  // does) when it put them in file.fd(): an engine that maps the frame
  // need not read them again to check them. False for a frame that was
  // there before (put there by another process, or earlier).
  virtual bool CheckedHere(uint32_t /*frame*/) const { return false; }
};

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_FRAME_FETCHER_H_
