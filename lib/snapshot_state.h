// SnapshotState: what a thaw::Snapshot handle holds — the opened and checked
// image (with its diff parents), its summary, and the shared base built for
// kSharedBase restores through it. Copies of a handle share one state.
//
// Thread safety: image() and info() are immutable; SharedBase() builds the
// base once under a mutex, so concurrent restores share one decompression.
#ifndef THAW_LIB_SNAPSHOT_STATE_H_
#define THAW_LIB_SNAPSHOT_STATE_H_

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "remote/remote_store.h"
#include "snapshot/restore_counters.h"
#include "snapshot/shared_base.h"
#include "snapshot/snapshot_file.h"
#include "thaw/snapshot.h"

namespace thaw::internal {

class SnapshotState {
 public:
  // With `key`, the file and its parents must be signed by it.
  static absl::StatusOr<std::shared_ptr<SnapshotState>> Open(
      const std::string& path, const VerifyKey* key = nullptr);
  // A local path or a remote location (thaw/remote.h).
  static absl::StatusOr<std::shared_ptr<SnapshotState>> Open(
      const std::string& location, const OpenOptions& options);
  // Over a snapshot and its parents open at `fds` (taken over; see
  // SnapshotImage::OpenDescriptors); `names` for messages.
  static absl::StatusOr<std::shared_ptr<SnapshotState>> OpenDescriptors(
      std::vector<int> fds, const std::vector<std::string>& names,
      const VerifyKey* key = nullptr);

  const std::shared_ptr<const snapshot::SnapshotImage>& image() const {
    return image_;
  }
  const SnapshotInfo& info() const { return info_; }
  // The key the handle was opened with, if any.
  const std::optional<VerifyKey>& verify_key() const { return verify_key_; }
  // The store a remote snapshot's frames come from; null for a local file.
  const std::shared_ptr<remote::RemoteStore>& remote() const { return remote_; }

  // The decompressed image, built by the first caller (which gets
  // *built = true and the reads counted in `counters`).
  absl::StatusOr<std::shared_ptr<const snapshot::SharedBase>> SharedBase(
      snapshot::RestoreCounters& counters, bool* built);

 private:
  SnapshotState(std::shared_ptr<const snapshot::SnapshotImage> image,
                SnapshotInfo info, std::optional<VerifyKey> verify_key)
      : image_(std::move(image)),
        info_(std::move(info)),
        verify_key_(std::move(verify_key)) {}

  const std::shared_ptr<const snapshot::SnapshotImage> image_;
  const SnapshotInfo info_;
  const std::optional<VerifyKey> verify_key_;
  std::shared_ptr<remote::RemoteStore> remote_;
  std::mutex base_mutex_;  // held while building
  std::shared_ptr<const snapshot::SharedBase> base_;
};

}  // namespace thaw::internal

#endif  // THAW_LIB_SNAPSHOT_STATE_H_
