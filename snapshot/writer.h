// Writes snapshot files (format: snapshot/format.h, doc/snapshot-format.md).
//
// The writer walks guest memory chunk by chunk. The caller says, per chunk,
// what it already knows without reading it (never touched, so zero; or still
// the same as the image the Vm was restored from), so that taking a snapshot
// of a lazily restored Vm does not pull its whole image in, and a diff
// snapshot stores only chunks that really changed.
#ifndef THAW_SNAPSHOT_WRITER_H_
#define THAW_SNAPSHOT_WRITER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "snapshot/manifest.pb.h"
#include "snapshot/snapshot_file.h"

namespace thaw::snapshot {

enum class ChunkHint {
  kZero,       // known to be all zeros
  kUnchanged,  // known to equal the source image's chunk
  kRead,       // read it from memory
};

struct WriteRequest {
  std::string path;
  // Everything but snapshot_id, created_unix_ns, memory, frames, parent and
  // working_set, which the writer fills in.
  proto::Manifest manifest;
  const uint8_t* memory = nullptr;
  uint64_t memory_size = 0;
  uint32_t chunk_size = 0;
  int level = 3;
  // Threads that compress (0: one per core this process may run on). The
  // file is the same whatever the number.
  unsigned threads = 0;
  std::function<ChunkHint(uint64_t chunk)> hint;
  // The image the Vm was restored from, if any (for kUnchanged chunks).
  std::shared_ptr<const SnapshotImage> source;
  // Store only chunks that differ from `source`, naming it as the parent.
  bool diff = false;
  std::string parent_path;  // as recorded in the file when diff
  // Chunks to store first, in this order (the recorded working set).
  std::vector<uint32_t> working_set;
  // Called now and then with (chunks done, chunks in all).
  std::function<void(uint64_t, uint64_t)> progress;
  // Sign the file with this key (format 1.3; snapshot/signature.h).
  const SecretKey* signing_key = nullptr;
  // >= 0: write into this empty file instead of creating one at `path`
  // (`path` names it in messages); its creator commits it. The caller
  // keeps the descriptor.
  int output_fd = -1;
};

absl::Status WriteSnapshot(const WriteRequest& request);

// Rewrites `file` atomically with `working_set` recorded and its frames
// reordered so that the working set's frames come first, in that order (one
// sequential stretch). The working set's own frames (those in this file,
// not a parent) are stored raw at 4 KiB-aligned offsets, so that a
// prefetching restore maps them from the file instead of decompressing
// them; the other frames are copied, not recompressed.
// `written_pages` (ascending page numbers the recorded call wrote) is
// recorded beside it. A signed file is signed again with `signing_key`;
// without one it is FailedPrecondition (the rewrite would drop the
// signature).
absl::Status RewriteWithWorkingSet(const SnapshotFile& file,
                                   const std::vector<uint32_t>& working_set,
                                   const std::vector<uint32_t>& written_pages,
                                   const SecretKey* signing_key = nullptr);

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_WRITER_H_
