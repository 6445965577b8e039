// Checking a whole snapshot: every frame of every file in an image's chain
// read and decoded (size and both checksums), and the padding between
// frames all zeros, so that an intact file is exactly the bytes written.
#ifndef THAW_SNAPSHOT_VERIFY_H_
#define THAW_SNAPSHOT_VERIFY_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "snapshot/snapshot_file.h"

namespace thaw::snapshot {

// OK only if every frame and gap of `image`'s files is intact; otherwise
// DataLoss naming the file and the damage. `progress` (may be empty) is
// called now and then with (frames done, frames in all).
absl::Status VerifyImage(
    const SnapshotImage& image,
    const std::function<void(uint64_t done, uint64_t total)>& progress);

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_VERIFY_H_
