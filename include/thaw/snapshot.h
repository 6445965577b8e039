// thaw::Snapshot — a handle on one snapshot file: opened and checked once,
// restored many times.
//
// A snapshot is one file (format: doc/snapshot-format.md) holding a parked
// Vm: its vCPU state, its guest's state and its memory as independently
// compressed chunks. Vm::Snapshot() writes one. Snapshot::Open() reads and
// checks its header and manifest (and those of its diff parents) once;
// Restore() then makes Vms from it without parsing the file again, with one
// of the RestoreEngines (thaw/kinds.h). Files are written atomically and
// checked on every read: a damaged file is an error naming the file and the
// damage (DataLoss), never a crash or a guest started on bad memory.
//
// Ownership (LevelDB's Snapshot): the handle owns what restores through it
// share. For RestoreEngine::kSharedBase that is the decompressed image,
// built by the first such restore; it is freed when the last copy of the
// handle and the last Vm restored from it are gone. There is no hidden
// process-wide cache: keep the handle to keep the image.
//
// Thread safety: a Snapshot is immutable once open; every method may be
// called from any number of threads at once, and copies share one state.
// Concurrent kSharedBase restores build the image once.
#ifndef THAW_SNAPSHOT_H_
#define THAW_SNAPSHOT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "thaw/options.h"
#include "thaw/remote.h"
#include "thaw/signing.h"

namespace thaw {

class Vm;

namespace internal {
class SnapshotState;  // lib/snapshot_state.h
struct VmAccess;      // lib/vm_internal.h
}  // namespace internal

// A snapshot file's header and manifest, summarized.
struct SnapshotInfo {
  std::string path;
  int format_major = 0, format_minor = 0;
  std::string snapshot_id;     // 32 hex digits
  std::string parent_path;     // empty for a full snapshot
  std::string source_backend;  // "kvm" or "emulated"
  std::string guest_name;
  absl::Time created;
  uint64_t file_size = 0;
  uint64_t memory_size = 0;
  uint32_t chunk_size = 0;
  uint64_t chunks = 0;         // memory_size / chunk_size
  uint64_t zero_chunks = 0;    // stored as a bit
  uint64_t parent_chunks = 0;  // diff snapshots: taken from the parent
  uint64_t frames = 0;         // distinct chunks stored
  uint64_t stored_bytes = 0;   // bytes of all frames
  uint64_t working_set_chunks = 0;
  // Format 1.5: bytes of the working set's compressed twins, what a restore
  // from a remote store fetches instead of its raw frames (0: none).
  uint64_t packed_working_set_bytes = 0;
  int compression_level = 0;
  uint64_t restore_generation = 0;
  // "function" or "linux-program".
  std::string guest_kind;
  // Linux programs: the file view's mounts ("HOST -> GUEST") and the host
  // files the program had open, as the program names them.
  std::vector<std::string> program_mounts;
  std::vector<std::string> program_files;
  // A signed file (format 1.3): the key that signed it ("ed25519:<hex>"),
  // and whether this handle checked the signature (opened with that key).
  // Empty for an unsigned file.
  std::string signer;
  bool signature_verified = false;
  // memory_size / file_size.
  double compression_ratio() const;
  std::string ToString() const;
};

// How Snapshot::Open reads a snapshot.
struct OpenOptions {
  // Require a signature by this key (as Open(path, key)).
  std::optional<VerifyKey> key;
  // For a remote location (http://, https://, s3://; thaw/remote.h).
  RemoteOptions remote;
};

class Snapshot {
 public:
  // Opens `path` (or a remote location, with default RemoteOptions; see
  // below) and, for a diff snapshot, its parents, and checks their
  // headers and manifests. DataLoss names the file and the damage;
  // FailedPrecondition for a file this build cannot use; NotFound etc. from
  // the file system.
  static absl::StatusOr<Snapshot> Open(const std::string& path);
  // Opens `path` requiring a signature by `key` on it and on every diff
  // parent (thaw/signing.h): PermissionDenied names the file for an
  // unsigned file, another signer or a signature that does not verify,
  // checked before anything in the manifest is used. Frames are then also
  // checked against their signed digests wherever they are read or mapped.
  static absl::StatusOr<Snapshot> Open(const std::string& path,
                                       const VerifyKey& key);
  // Opens a local path or a remote location (thaw/remote.h): a URL's
  // header and manifest are fetched and checked now, its frames when a
  // restore needs them (through the host's chunk cache). Unavailable when
  // the store does not answer (after retries), NotFound / PermissionDenied
  // as the store says, each naming the URL.
  static absl::StatusOr<Snapshot> Open(const std::string& location,
                                       const OpenOptions& options);

  // What reading a remote snapshot has cost so far, over every restore
  // through this handle (zeros for a local file).
  RemoteStats remote_stats() const;

  // A new Vm, parked where the snapshot was taken and ready for Call(). The
  // guest sees a new restore generation and fresh entropy, and its
  // after-restore hook runs before the first call. FailedPrecondition for a
  // state this backend cannot run. With a lazy engine a damaged chunk shows
  // when the guest first touches it: that call fails with DataLoss and the
  // Vm refuses further calls. Host functions are not part of a snapshot:
  // register them again on the restored Vm.
  absl::StatusOr<std::unique_ptr<Vm>> Restore(
      const RestoreOptions& options = {}) const;

  // What `thaw inspect` prints; read at Open(), no I/O.
  const SnapshotInfo& Info() const;

  // Checks everything: every frame's checksums and sizes in this file and
  // its parents, and the padding between frames. OK only for an intact
  // snapshot. `progress` is called now and then with (frames done, total).
  absl::Status Verify(std::function<void(uint64_t done, uint64_t total)>
                          progress = nullptr) const;

  const std::string& path() const;

 private:
  friend struct internal::VmAccess;
  explicit Snapshot(std::shared_ptr<internal::SnapshotState> state)
      : state_(std::move(state)) {}
  std::shared_ptr<internal::SnapshotState> state_;
};

// Snapshot::Open(path) then Info().
absl::StatusOr<SnapshotInfo> InspectSnapshot(const std::string& path);

// Snapshot::Open(path) (with `key` when given) then Verify(progress).
absl::Status VerifySnapshot(
    const std::string& path,
    std::function<void(uint64_t done, uint64_t total)> progress = nullptr,
    const VerifyKey* key = nullptr);

}  // namespace thaw

#endif  // THAW_SNAPSHOT_H_
