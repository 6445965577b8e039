// Snapshots in a remote store: opened, restored, published and fetched by
// URL (http://, https://, s3://bucket/key) as local files are by path.
//
// Snapshot::Open(url) fetches the header and manifest (two range requests)
// and checks them as it checks a file; every engine then fetches frames
// with HTTP range requests as it needs them — lazy on a fault, prefetch the
// recorded working set first (one stretch of the file, so few requests),
// eager all of them, several in flight — and each frame is checked against
// the manifest's hashes (and, for a snapshot opened with a key, its signed
// digest) before any byte of it reaches a guest. doc/remote-store.md has the
// design and the measurements.
//
// Frames are kept in a per-host chunk cache: a directory shared by every
// process on the host, addressed by each frame's hashes (so versions of a
// snapshot that share chunks download them once), bounded in size (least
// recently used entries go first), and safe after a crash (an entry
// appears by an atomic rename and is checked on every use).
#ifndef THAW_REMOTE_H_
#define THAW_REMOTE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace thaw {

struct RemoteOptions {
  // The chunk cache. Empty: $THAW_CACHE_DIR, else $XDG_CACHE_HOME/thaw,
  // else $HOME/.cache/thaw.
  std::string cache_dir;
  uint64_t cache_max_bytes = 8ull << 30;
  bool use_cache = true;

  // S3 (s3://bucket/key). Each empty field is taken from the usual AWS
  // environment variables: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (else
  // https://s3.<region>.amazonaws.com), AWS_REGION or AWS_DEFAULT_REGION
  // (else us-east-1), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
  // AWS_SESSION_TOKEN. Without keys requests go unsigned (public buckets).
  // Requests are path-style: <endpoint>/<bucket>/<key>.
  std::string s3_endpoint;
  std::string s3_region;
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;
  // PushSnapshot to S3: files larger than this go up as a multipart upload
  // in parts of s3_part_size (S3's minimum part is 5 MiB), several at once.
  uint64_t s3_multipart_above = 64ull << 20;
  uint64_t s3_part_size = 16ull << 20;

  // Requests in flight at once per restore thread.
  int max_parallel_requests = 8;
  // Tries per request (timeouts, dropped connections, 5xx, bytes that fail
  // their hashes), with exponential backoff from first_backoff.
  int max_attempts = 5;
  absl::Duration first_backoff = absl::Milliseconds(50);
  absl::Duration connect_timeout = absl::Seconds(5);
  // One attempt ends after this, or after stall_timeout without a byte.
  absl::Duration request_timeout = absl::Seconds(60);
  absl::Duration stall_timeout = absl::Seconds(10);
  // Adjacent frames are fetched in one range request up to this size.
  uint64_t max_request_bytes = 8ull << 20;
  // How long a host may open a snapshot again from what it keeps (its
  // manifest and the frames it has) without asking the store: zero follows
  // the store's Cache-Control max-age (none: every open asks). A snapshot
  // replaced in the store within that time is not seen until it ends; stores
  // of versioned, never-rewritten snapshots can send a long max-age.
  absl::Duration manifest_max_age = absl::ZeroDuration();
  // Snapshot::Open starts fetching the recorded working set (through its
  // packed twins, format 1.5) in the background as soon as the manifest is
  // in: a restore that follows finds it there or on the way. On a host
  // that has not opened the file before, the twins at the file's front come
  // in the header's own request (doc/remote-store.md). Off: it is fetched
  // when a restore asks (InspectSnapshot never starts it).
  bool fetch_working_set_on_open = true;
  // A lazy fault on a remote file also fetches the frames that follow it
  // in the file, up to this many bytes, in the same request: a round trip
  // costs far more than the bytes (0 turns it off).
  uint64_t readahead_bytes = 1ull << 20;
};

// What a handle's remote reads did (all zero for a local file).
struct RemoteStats {
  uint64_t requests = 0;  // HTTP attempts, retries included
  uint64_t retries = 0;
  uint64_t bytes_fetched = 0;   // response bytes from the store
  uint64_t frames_fetched = 0;  // frames that came from the store
  uint64_t cache_hits = 0;      // frames found in the host cache
  uint64_t cache_misses = 0;
  // Bytes a restore did not download because the cache had them
  // (including frames another snapshot or version put there).
  uint64_t bytes_deduplicated = 0;
  // Frames the host's local copy of this version already held when the
  // handle opened it (restored on this host before: nothing to fetch or
  // copy for them).
  uint64_t frames_on_host = 0;
  std::string ToString() const;
};

// Whether `location` names a remote snapshot (http://, https://, s3://).
bool IsRemoteLocation(const std::string& location);

// Uploads snapshot file `path` (checked first: a damaged file is not
// published) to `url`: S3 multipart upload for large files, else one
// PUT (HTTP stores that accept PUT, e.g. nginx's WebDAV module); see
// RemoteOptions::s3_multipart_above. A diff
// snapshot names its parent by the path it was taken with: publish the
// parent beside it under the same relative name.
absl::Status PushSnapshot(const std::string& path, const std::string& url,
                          const RemoteOptions& options = {});

// Downloads `url` into the file `path` (atomically: a new file appears only
// once complete and checked end to end).
absl::Status PullSnapshot(const std::string& url, const std::string& path,
                          const RemoteOptions& options = {});

}  // namespace thaw

#endif  // THAW_REMOTE_H_
