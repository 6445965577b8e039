// RemoteStore: opens snapshot files held in a remote store as local
// stand-ins (snapshot/frame_fetcher.h) whose frames come, when an engine
// asks, from the host's chunk cache or by HTTP range requests, checked
// against the manifest before they are used. With a cache, a stand-in is
// the host's shared image of that version of the file
// (remote/local_image.h), so frames another process brought are there
// already; without, an unnamed temporary file. One store serves one
// thaw::Snapshot handle: its files (a diff chain's links included) share
// one HTTP client (connections) and one set of counters. Jobs queued on
// its threads may hold its files, and so the store: its last reference
// can go on one of its own threads (see ~RemoteStore).
//
// Fetches run on the store's own threads ("thaw-fetch"), started on the
// opening thread once the store is asked or a stand-in lacks frames (none
// for a handle whose frames are all on the host): the restore threads that
// ask for frames (the lazy fault server, the prefetcher) are confined by a
// seccomp filter that allows no socket, no open and no new thread
// (base/thread_confinement.h), and they only wait for the answer.
//
// Thread safety: OpenFile, stats and every stand-in's Fetch may be used
// from any thread.
#ifndef THAW_REMOTE_REMOTE_STORE_H_
#define THAW_REMOTE_REMOTE_STORE_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "remote/chunk_cache.h"
#include "remote/http_client.h"
#include "snapshot/signature.h"
#include "snapshot/snapshot_file.h"
#include "thaw/remote.h"

namespace thaw::remote {

struct FetchCounters {
  std::atomic<uint64_t> frames_fetched{0};
  std::atomic<uint64_t> cache_hits{0};
  std::atomic<uint64_t> cache_misses{0};
  std::atomic<uint64_t> bytes_deduplicated{0};
  std::atomic<uint64_t> frames_on_host{0};
  // Fetches again of twins that came with the header and failed a check.
  std::atomic<uint64_t> retries{0};
};

class RemoteStore : public std::enable_shared_from_this<RemoteStore> {
 public:
  // Checks `options` and opens the cache (unless use_cache is false).
  static absl::StatusOr<std::shared_ptr<RemoteStore>> Create(
      const RemoteOptions& options);

  // Fetches `location`'s header, manifest and signature into a stand-in
  // and checks them (with `key`, the signature) as SnapshotFile::Open does.
  // With `start_working_set` (and RemoteOptions::fetch_working_set_on_open)
  // the file's recorded working set starts coming in the background.
  absl::StatusOr<std::shared_ptr<const snapshot::SnapshotFile>> OpenFile(
      const std::string& location, const snapshot::PublicKey* key,
      bool start_working_set = false);

  ~RemoteStore();
  RemoteStats stats() const;
  const RemoteOptions& options() const { return options_; }
  ChunkCache* cache() const { return cache_.get(); }

 private:
  class Frames;
  explicit RemoteStore(RemoteOptions options) : options_(std::move(options)) {}
  // The snapshot file over stand-in `fd` (taken over) holding a remote
  // file of `size` bytes; `shared`: a host image (remote/local_image.h).
  // `leading`: the file's bytes from offset 0 as far as they came with the
  // header (remote/leading_twins.h), for its packed twins.
  absl::StatusOr<std::shared_ptr<const snapshot::SnapshotFile>> StandIn(
      int fd, uint64_t size, bool shared, const std::string& location,
      const snapshot::PublicKey* key, HttpClient* client,
      const std::string& url, const std::string& etag, bool start_working_set,
      std::shared_ptr<const std::string> leading = nullptr);
  // Runs `job` on the background thread (cache writes) later; the store
  // runs every queued job before it is destroyed.
  void InBackground(std::function<void()> job) {
    Enqueue(background_, std::move(job));
  }
  // Runs `job` on a fetch thread when one is free.
  void Later(std::function<void()> job) { Enqueue(jobs_, std::move(job)); }
  void Enqueue(std::deque<std::function<void()>>& queue,
               std::function<void()> job);
  // Starts the fetch threads, once; jobs run on the calling thread until
  // then. StartThreadsLocked holds jobs_mutex_ and may throw
  // std::system_error.
  absl::Status StartThreads();
  void StartThreadsLocked();
  // Runs `jobs` on fetch threads (at once, as many as are free) and
  // returns the first error, once all are done.
  absl::Status OnFetchThreads(
      const std::vector<std::function<absl::Status()>>& jobs);
  // The HTTP client for `location`'s store (one per store; credentials
  // differ between S3 and plain HTTP).
  absl::StatusOr<HttpClient*> ClientFor(const struct StoreLocation& where);

  const RemoteOptions options_;
  std::shared_ptr<ChunkCache> cache_;
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<HttpClient>> clients_;  // guarded by mutex_
  std::vector<std::string> client_keys_;              // guarded by mutex_
  FetchCounters fetch_;
  std::mutex jobs_mutex_;
  std::condition_variable jobs_cv_;
  std::deque<std::function<void()>> jobs_;        // guarded by jobs_mutex_
  std::deque<std::function<void()>> background_;  // guarded by jobs_mutex_
  bool stopping_ = false;                         // guarded by jobs_mutex_
  std::vector<std::thread> fetch_threads_;        // guarded by jobs_mutex_
};

}  // namespace thaw::remote

#endif  // THAW_REMOTE_REMOTE_STORE_H_
