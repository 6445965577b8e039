// Snapshots of thaw Vms: the options for taking and restoring them, and
// reading a snapshot file without restoring it (inspect, verify).
//
// A snapshot is one file (format: doc/snapshot-format.md) holding a parked
// Vm: its vCPU state, the guest-ABI state and its memory as independently
// compressed chunks. Vm::Snapshot() writes one; Vm::Restore() brings it back
// in a new Vm with one of the RestoreEngines below. Files are written
// atomically and checked on every read: a damaged file is an error naming
// the file and the damage (DataLoss), never a crash or a guest started on
// bad memory.
//
// Thread safety: these functions may be called from any thread; they share
// no state except the shared-base cache, which is internally locked.
#ifndef THAW_SNAPSHOT_H_
#define THAW_SNAPSHOT_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace thaw {

enum class BackendKind;

struct SnapshotOptions {
  // zstd level (1-19; 3 is the measured balance of speed and size).
  int compression_level = 3;
  // Memory is stored in chunks of this many bytes: a power of two from
  // 4 KiB to 4 MiB. Each chunk is one independent zstd frame.
  uint32_t chunk_size = 64u << 10;
  // Diff snapshot: the path of the snapshot this Vm was restored from.
  // Only chunks that differ from it are stored; a restore needs it too.
  std::string parent;
  // Called now and then with (chunks written, chunks in all).
  std::function<void(uint64_t done, uint64_t total)> progress;
};

enum class RestoreEngine {
  // Read and decompress the whole image before the guest runs.
  kEager,
  // Guest memory is filled on first touch (userfaultfd); chunks the guest
  // never touches are never read.
  kLazy,
  // Lazy, plus the snapshot's recorded working set brought in first: mapped
  // straight from the file where Vm::WriteWorkingSet stored it raw (checked
  // in the background once per file version and process, before any result
  // is returned), else streamed in while the guest already runs. Without a
  // recorded working set it is kLazy. Like Firecracker's memory file, a
  // snapshot file must not be truncated in place while Vms restored from it
  // this way run (thaw itself only ever replaces files by rename).
  kLazyPrefetch,
  // The image is decompressed once per process into shared memory that every
  // Vm restored from it maps copy-on-write; supports Vm::Reset().
  kSharedBase,
};

// "eager", "lazy", "prefetch", "shared".
absl::string_view RestoreEngineName(RestoreEngine engine);
absl::StatusOr<RestoreEngine> ParseRestoreEngine(absl::string_view name);

struct RestoreOptions {
  RestoreEngine engine = RestoreEngine::kLazyPrefetch;
  // The backend to restore on; a snapshot taken on one backend restores on
  // the other.
  BackendKind backend{};  // kAuto
  absl::Duration call_timeout = absl::Seconds(10);
  uint64_t console_limit = 1ull << 20;
  std::function<void(absl::string_view)> console_sink;
  // kLazy only (InvalidArgument with other engines): record the chunks the
  // restore and the first call touch, in first-touch order, for
  // Vm::WriteWorkingSet().
  bool record_working_set = false;
};

// What a restore did, counted.
struct RestoreStats {
  RestoreEngine engine = RestoreEngine::kEager;
  // Page faults the lazy engines served by reading (or zero-filling) the
  // chunk on the spot.
  uint64_t faults = 0;
  // Page faults on a chunk the prefetcher was already installing: the
  // guest waited for it, but nothing extra was read.
  uint64_t prefetch_waits = 0;
  uint64_t chunks_read = 0;     // chunks read from the file and decompressed
  uint64_t bytes_read = 0;      // compressed bytes read
  uint64_t zero_chunks = 0;     // all-zero chunks installed lazily
  uint64_t prefetched = 0;      // chunks installed by prefetch
  // Working-set chunks mapped straight from the file (stored raw by
  // Vm::WriteWorkingSet), checked in the background.
  uint64_t mapped = 0;
  // Reads done with plain pread because io_uring is unavailable here (a
  // seccomp filter, kernel.io_uring_disabled): restores still work.
  uint64_t reads_without_io_uring = 0;
  uint64_t resets = 0;          // Vm::Reset() calls
  uint64_t pages_reset = 0;     // pages the last Reset() restored
  bool shared_base_built = false;  // this restore decompressed the base
  // Reset finds what changed from KVM's dirty log (plus the host's own
  // writes) instead of walking the page tables (/proc/self/pagemap).
  bool reset_uses_dirty_log = false;
};

// A snapshot file's header and manifest, summarized.
struct SnapshotInfo {
  std::string path;
  int format_major = 0, format_minor = 0;
  std::string snapshot_id;    // 32 hex digits
  std::string parent_path;    // empty for a full snapshot
  std::string source_backend; // "kvm" or "emulated"
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
  int compression_level = 0;
  uint64_t restore_generation = 0;
  // memory_size / file_size.
  double compression_ratio() const;
  std::string ToString() const;
};

// The shared-base engine keeps the decompressed images of the 4 snapshots
// restored most recently even while no Vm uses them, so that restoring one
// Vm at a time does not decompress each time. This frees those idle images.
void DropIdleSharedBases();

// Reads and checks the header and manifest (not the frames).
absl::StatusOr<SnapshotInfo> InspectSnapshot(const std::string& path);

// Checks everything: header, manifest, every frame's checksums and sizes,
// and the chain of parents. OK only for an intact snapshot.
absl::Status VerifySnapshot(
    const std::string& path,
    std::function<void(uint64_t done, uint64_t total)> progress = nullptr);

}  // namespace thaw

#endif  // THAW_SNAPSHOT_H_
