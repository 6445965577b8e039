// ChunkCache: the per-host cache of snapshot frames, a directory shared by
// every process on the host.
//
//   DIR/objects/XX/KEY   one frame's stored bytes; KEY names the frame's
//                        content hash, stored hash and size (Key()), XX
//                        is KEY's first two digits
//   DIR/tmp/             entries being written; renamed into objects/
//   DIR/claims           one byte per key (at a hash of it) locked, with an
//                        open-file-description lock, by the one fetching it
//   DIR/evict.lock       held by the one evicting
//   DIR/images/, DIR/manifests/
//                        local copies of remote files (remote/local_image.h),
//                        evicted with the entries
//
// Crash safety: an entry appears only by rename(2) of a complete file, and
// every reader checks the bytes against the manifest it holds before use
// (a torn entry after a power loss is thrown away and fetched again).
// Deduplication: entries are named by content, not by snapshot, so two
// snapshots (or versions) sharing a chunk stored alike share the entry.
// Fetches of one entry are merged across threads and processes by a claim
// on it: the first claims it and fetches; the others wait for it and read
// the entry. A claim is a byte-range lock on one shared file (no file is
// created per claim: under load that cost several milliseconds each here),
// so a crashed holder's claims vanish with it. Bounded: when the entries
// written since the last sweep pass an eighth of the bound, the least recently
// used entries (by mtime, which Get() renews) are removed until the cache is
// under 90% of it.
//
// Thread safety: all methods may be called from any thread.
#ifndef THAW_REMOTE_CHUNK_CACHE_H_
#define THAW_REMOTE_CHUNK_CACHE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace thaw::remote {

class ChunkCache {
 public:
  // Creates DIR's folders if missing. One instance per directory per
  // process (a second Open returns the same one).
  static absl::StatusOr<std::shared_ptr<ChunkCache>> Open(
      const std::string& dir, uint64_t max_bytes);
  ~ChunkCache();

  static std::string Key(uint64_t content_low, uint64_t content_high,
                         uint64_t stored_hash, uint32_t size);

  // Reads entry `key` into `out` (its exact size); false if absent or of
  // another size. Marks it recently used.
  bool Get(const std::string& key, absl::Span<uint8_t> out);
  // Adds an entry (atomically); sweeps when due. Errors (a full disk) are
  // returned but leave the cache consistent.
  absl::Status Put(const std::string& key, absl::Span<const uint8_t> bytes);
  // Whether entry `key` exists (unchecked; a hint).
  bool Has(const std::string& key) const;
  // Drops an entry that failed its check.
  void Remove(const std::string& key);

  // A claim on fetching `key`: TryClaim gives one if nobody on the host is
  // fetching it; release by destroying it.
  class Claim {
   public:
    Claim(const Claim&) = delete;
    Claim& operator=(const Claim&) = delete;
    ~Claim();

   private:
    friend class ChunkCache;
    Claim(ChunkCache* cache, int64_t slot) : cache_(cache), slot_(slot) {}
    ChunkCache* cache_;
    int64_t slot_;  // the byte locked; -1: none (a read-only cache)
  };
  std::unique_ptr<Claim> TryClaim(const std::string& key);
  // Waits until whoever holds `key`'s claim lets it go.
  void WaitForClaim(const std::string& key);
  // Waits until no claim on the host is held (everything being fetched is
  // in or given up): for benchmarks that want a settled cache.
  void WaitForAllClaims();

  // Removes least recently used entries until under 90% of the bound.
  absl::Status Sweep();

  const std::string& dir() const { return dir_; }
  uint64_t max_bytes() const { return max_bytes_; }

 private:
  ChunkCache(std::string dir, uint64_t max_bytes)
      : dir_(std::move(dir)), max_bytes_(max_bytes) {}
  std::string EntryPath(const std::string& key) const;
  static int64_t SlotOf(const std::string& key);
  void Release(int64_t slot);

  const std::string dir_;
  const uint64_t max_bytes_;
  std::atomic<uint64_t> written_since_sweep_{0};
  // DIR/claims twice: claims are locked through `claims_fd_`, waits go
  // through `wait_fd_` (locks of one open file description never conflict
  // with each other, so a wait through the claiming one would not wait).
  int claims_fd_ = -1;
  int wait_fd_ = -1;
  // The slots this process holds: its threads exclude one another here,
  // since their locks share claims_fd_.
  std::mutex held_mutex_;
  absl::flat_hash_set<int64_t> held_;  // guarded by held_mutex_
};

// The cache directory RemoteOptions::cache_dir names, or its default.
std::string DefaultCacheDir();

// A new, unique path under `cache_dir`/tmp/ for a file about `what` to be
// written before it is put in place.
std::string CacheTmpPath(const std::string& cache_dir, const std::string& what);
// Puts the written file `tmp` in place at `path`: renamed over what is
// there, or with `keep_existing` linked, so that a file already there
// stays (EEXIST). `path`'s folder is made on first need (not a mkdir per
// file: on this ext4 each cost ~0.7 ms). 0, or the errno.
int PlaceInCache(const std::string& tmp, const std::string& path,
                 bool keep_existing);

}  // namespace thaw::remote

#endif  // THAW_REMOTE_CHUNK_CACHE_H_
