#include "remote/remote_store.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/errno_status.h"
#include "base/little_endian.h"
#include "base/pwrite_full.h"
#include "remote/leading_twins.h"
#include "remote/local_image.h"
#include "remote/store_location.h"
#include "snapshot/format.h"
#include "snapshot/uring_reader.h"

namespace thaw::remote {
namespace {

// Frames this close in the file are fetched in one request with the bytes
// between them: the alignment padding before a raw frame.
constexpr uint64_t kPaddingGap = 16u << 10;
// And frames up to this far apart when every frame between them is missing
// too (at 20 ms a round trip, 256 KiB more costs less than a second
// request). Not when the cache has them: a new version's changed chunks lie
// scattered among the old ones, and fetching those again cost a second
// version 3x its bytes.
constexpr uint64_t kCoalesceGap = 256u << 10;

// A fetch of more than this is split into slices fetched at once.
constexpr uint64_t kSliceBytes = 512u << 10;
// Packed twins are asked for in ranges of at most this, all in flight at
// once: each is decoded as soon as it is in, while the rest are still on
// the way, rather than all of a slice after its last byte.
constexpr uint64_t kTwinRangeBytes = 256u << 10;
// Enough for the eager engine's threads and a lazy restore's fault server
// and prefetcher to each have a fetch in flight.
constexpr int kFetchThreads = 6;

// Set on a fetch thread whose job dropped the store's last reference.
thread_local bool store_gone_on_this_thread = false;

// Opening fetches this much of the file's end with the header: most
// manifests fit (55 KB for the benchmarks' 512 MiB guest).
constexpr uint64_t kSpeculativeTail = 96u << 10;

// Writes `bytes` into the local copy of `what` (a file or URL).
absl::Status WriteAt(int fd, absl::Span<const uint8_t> bytes, uint64_t offset,
                     const std::string& what) {
  absl::Status s = PwriteFull(fd, bytes, offset, "write");
  if (s.ok()) return s;
  return absl::Status(s.code(),
                      absl::StrCat("local copy of ", what, ": ", s.message()));
}

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

const uint8_t* Data(absl::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

// Whether `header` (a file's first bytes) is a whole header whose own
// checksum matches.
bool HeaderIntact(absl::string_view header) {
  return header.size() >= snapshot::kHeaderSize &&
         LoadLe64(Data(header) + snapshot::kHeaderHashOffset) ==
             snapshot::HashStored({Data(header), snapshot::kHeaderHashOffset});
}

// Whether `bytes` begin with the manifest that intact `header` describes:
// its size, and its checksum.
bool ManifestMatches(absl::string_view header, absl::string_view bytes) {
  const uint64_t size =
      LoadLe64(Data(header) + snapshot::kHeaderManifestSizeOffset);
  return bytes.size() >= size &&
         snapshot::HashStored({Data(bytes), size}) ==
             LoadLe64(Data(header) + snapshot::kHeaderManifestHashOffset);
}

// The manifest that intact `header` places, out of `tail` (an answer
// that ends with the file), when `tail` holds all of it and it matches.
std::optional<absl::string_view> ManifestIn(absl::string_view header,
                                            const HttpResponse& tail) {
  const uint64_t at =
      LoadLe64(Data(header) + snapshot::kHeaderManifestOffsetOffset);
  if (at < tail.range_first || at - tail.range_first > tail.body.size()) {
    return std::nullopt;
  }
  const absl::string_view bytes =
      absl::string_view(tail.body).substr(at - tail.range_first);
  if (!ManifestMatches(header, bytes)) return std::nullopt;
  return bytes.substr(
      0, LoadLe64(Data(header) + snapshot::kHeaderManifestSizeOffset));
}

// A new, unnamed file in `dir` (gone when closed), or in the temporary
// directory when `dir` is empty.
absl::StatusOr<int> NewStandInFile(std::string dir) {
  if (dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    dir = tmp != nullptr && *tmp ? tmp : "/var/tmp";
  }
  int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return fd;
  std::string name = absl::StrCat(dir, "/thaw-standin-XXXXXX");
  fd = mkostemp(name.data(), O_CLOEXEC);
  if (fd < 0) {
    return ErrnoStatus(absl::StrCat("create a local copy in ", dir), errno);
  }
  unlink(name.c_str());
  return fd;
}

}  // namespace

// The stand-in's frame fetcher: present frames are read from the stand-in,
// missing ones from the cache or the store.
class RemoteStore::Frames : public snapshot::FrameFetcher {
 public:
  Frames(std::shared_ptr<RemoteStore> store, HttpClient* client,
         std::string url, std::string etag,
         std::shared_ptr<const std::string> leading)
      : store_(std::move(store)),
        client_(client),
        url_(std::move(url)),
        etag_(std::move(etag)),
        leading_(std::move(leading)) {}

  // `shared`: the presence bytes of a host image (remote/local_image.h),
  // which other processes set too; without, this handle's own. Returns
  // whether every frame is on the host already.
  bool Init(const snapshot::SnapshotFile& file,
            std::optional<Presence> shared) {
    const uint32_t frames = file.frame_count();
    uint64_t on_host = 0;
    if (shared.has_value()) {
      shared_present_.emplace(*std::move(shared));
      present_ = shared_present_->bytes();
      for (uint32_t i = 0; i < frames; ++i) {
        on_host += present_[i].load(std::memory_order_relaxed) != 0;
      }
      store_->fetch_.frames_on_host.fetch_add(on_host,
                                              std::memory_order_relaxed);
    } else {
      own_present_ = std::make_unique<std::atomic<uint8_t>[]>(frames);
      for (uint32_t i = 0; i < frames; ++i) own_present_[i].store(0);
      present_ = own_present_.get();
    }
    // File order is not index order (the working set's frames come first).
    by_offset_.resize(frames);
    for (uint32_t i = 0; i < frames; ++i) by_offset_[i] = i;
    std::sort(by_offset_.begin(), by_offset_.end(),
              [&](uint32_t a, uint32_t b) {
                return file.FrameOffset(a) < file.FrameOffset(b);
              });
    rank_.resize(frames);
    for (uint32_t i = 0; i < frames; ++i) rank_[by_offset_[i]] = i;
    zero_hash_ = snapshot::HashContent(ZeroChunk(file.chunk_size()));
    checked_here_ = std::make_unique<std::atomic<uint8_t>[]>(frames);
    for (uint32_t i = 0; i < frames; ++i) checked_here_[i].store(0);
    return on_host == frames;
  }

  bool CheckedHere(uint32_t frame) const override {
    return checked_here_ != nullptr &&
           checked_here_[frame].load(std::memory_order_acquire) != 0;
  }

  absl::Status Fetch(const snapshot::SnapshotFile& file,
                     absl::Span<const uint32_t> frames) const override {
    // The common case, in the asking thread: everything is here.
    bool all_here = true;
    for (uint32_t f : frames) {
      if (f < file.frame_count() &&
          !present_[f].load(std::memory_order_acquire)) {
        all_here = false;
        break;
      }
    }
    if (all_here) return absl::OkStatus();
    // One frame (a lazy fault): the frames after it come in the same
    // request, up to readahead_bytes.
    std::vector<uint32_t> wanted(frames.begin(), frames.end());
    if (frames.size() == 1) {
      const uint64_t limit = store_->options_.readahead_bytes;
      uint64_t bytes = file.FrameSize(frames[0]);
      for (uint32_t f = frames[0] + 1; f < file.frame_count(); ++f) {
        bytes += file.FrameSize(f);
        if (bytes > limit || present_[f].load(std::memory_order_acquire)) {
          break;
        }
        wanted.push_back(f);
      }
    }
    const Plan plan = PlanFetch(file, std::move(wanted));
    if (absl::Status s = MakeZeros(file, plan.zeros); !s.ok()) return s;
    std::vector<std::function<absl::Status()>> jobs;
    for (const auto& slice : plan.slices) {
      jobs.push_back([&] { return FetchHere(file, slice); });
    }
    absl::Status fetched = store_->OnFetchThreads(jobs);
    if (!fetched.ok() || plan.copies.empty()) return fetched;
    return store_->OnFetchThreads(
        {[&] { return CopyEqual(file, plan.copies); }});
  }

  // Starts fetching `frames` of `file` on the fetch threads and returns: a
  // restore that asks for them later waits for those on the way. Failures
  // are left for that restore to meet (it fetches again and reports).
  static void Start(const std::shared_ptr<const Frames>& self,
                    const std::shared_ptr<const snapshot::SnapshotFile>& file,
                    std::vector<uint32_t> frames) {
    std::erase_if(frames, [&](uint32_t f) {
      return f >= file->frame_count() ||
             self->present_[f].load(std::memory_order_acquire);
    });
    if (frames.empty()) {
      self->DropLeading();
      return;
    }
    const Plan plan = self->PlanFetch(*file, std::move(frames));
    if (!self->MakeZeros(*file, plan.zeros).ok()) {  // left to Fetch
      self->DropLeading();
      return;
    }
    // The bytes that came with the header serve these fetches only: the
    // last one lets them go.
    auto left = std::make_shared<std::atomic<size_t>>(plan.slices.size());
    for (const auto& slice : plan.slices) {
      self->store_->Later([self, file, slice, left] {
        self->FetchHere(*file, slice).IgnoreError();
        if (left->fetch_sub(1) == 1) self->DropLeading();
      });
    }
  }

  // Lets the bytes that came with the header go.
  void DropLeading() const {
    std::lock_guard<std::mutex> lock(mutex_);
    leading_.reset();
  }

 private:
  // How a fetch is run: the distinct frames in slices, each fetched on a
  // fetch thread of its own, so that checking and decoding a big fetch (a
  // working set) use every core while the rest is on the way; and the
  // frames equal to one fetched (a raw working set holds each zero chunk
  // as a frame of its own), copied once that one is in.
  struct Plan {
    std::vector<std::vector<uint32_t>> slices;
    std::vector<std::pair<uint32_t, uint32_t>> copies;  // (frame, equal one)
    std::vector<uint32_t> zeros;  // raw frames of zeros (ZeroFrame)
  };
  // A chunk of zeros, for hashes and checks.
  static absl::Span<const uint8_t> ZeroChunk(uint32_t size) {
    static const auto* zeros =
        new std::vector<uint8_t>(snapshot::kMaxChunkSize);
    return absl::MakeConstSpan(*zeros).first(size);
  }
  // Whether raw frame `f` is a chunk of zeros (a recorded working set keeps
  // each zero chunk as a raw frame of its own, so that it can be mapped):
  // its content hash says so, and its checksum (and signed digest) agree.
  bool ZeroFrame(const snapshot::SnapshotFile& file, uint32_t f) const {
    return file.FrameSize(f) == file.chunk_size() &&
           file.FrameContentHash(f) == zero_hash_ &&
           file.CheckStored(f, ZeroChunk(file.chunk_size())).ok();
  }
  // Makes each of `zeros` a hole in the stand-in, which reads as zeros:
  // no bytes fetched, decoded or written (a working set's zero chunks
  // were a third of its frames, each written at a restore before).
  absl::Status MakeZeros(const snapshot::SnapshotFile& file,
                         const std::vector<uint32_t>& zeros) const {
    for (uint32_t f : zeros) {
      if (present_[f].load(std::memory_order_acquire)) continue;
      const uint64_t at = file.FrameOffset(f), size = file.FrameSize(f);
      // (A hole is made even where one may already be: bytes a torn
      // write left there are not zeros.)
      if (fallocate(file.fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, at,
                    size) != 0) {
        if (errno != EOPNOTSUPP) {
          return ErrnoStatus(
              absl::StrCat("clear frame ", f, " of \"", file.path(), "\""),
              errno);
        }
        if (absl::Status s =
                WriteAt(file.fd(), ZeroChunk(size), at, file.path());
            !s.ok()) {
          return s;
        }
      }
      Placed(f);
    }
    return absl::OkStatus();
  }
  Plan PlanFetch(const snapshot::SnapshotFile& file,
                 std::vector<uint32_t> wanted) const {
    Plan plan;
    absl::flat_hash_map<std::tuple<uint64_t, uint64_t, uint64_t, uint32_t>,
                        uint32_t>
        first;
    std::vector<uint32_t> unique;
    for (uint32_t f : wanted) {
      if (f >= file.frame_count()) continue;
      if (ZeroFrame(file, f)) {
        plan.zeros.push_back(f);
        continue;
      }
      const snapshot::ContentHash h = file.FrameContentHash(f);
      auto [it, inserted] = first.try_emplace(
          std::tuple{h.low, h.high, file.StoredHash(f), file.FrameSize(f)}, f);
      if (inserted) {
        unique.push_back(f);
      } else {
        plan.copies.emplace_back(f, it->second);
      }
    }
    // Where each frame's bytes are fetched from: its twin, if it has one.
    auto place = [&](uint32_t f) -> std::pair<uint64_t, uint64_t> {
      const auto* twin = file.Packed(f);
      if (twin != nullptr) return {twin->offset, twin->size};
      return {file.FrameOffset(f), file.FrameSize(f)};
    };
    uint64_t bytes = 0;
    for (uint32_t f : unique) bytes += place(f).second;
    const uint64_t slices =
        std::clamp<uint64_t>(bytes / kSliceBytes, 1, kFetchThreads);
    if (slices == 1) {
      plan.slices.push_back(std::move(unique));
      return plan;
    }
    std::sort(unique.begin(), unique.end(), [&](uint32_t a, uint32_t b) {
      return place(a).first < place(b).first;
    });
    plan.slices.resize(slices);
    uint64_t taken = 0;
    for (uint32_t f : unique) {
      plan.slices[std::min<uint64_t>(taken * slices / bytes, slices - 1)]
          .push_back(f);
      taken += place(f).second;
    }
    return plan;
  }

  // Fills each frame of `copies` from the equal one beside it (present).
  absl::Status CopyEqual(
      const snapshot::SnapshotFile& file,
      const std::vector<std::pair<uint32_t, uint32_t>>& copies) const {
    std::vector<uint8_t> bytes;
    for (const auto& [f, from] : copies) {
      if (present_[f].load(std::memory_order_acquire)) continue;
      bytes.resize(file.FrameSize(f));
      if (absl::Status s =
              snapshot::PreadFull(file.fd(), absl::MakeSpan(bytes),
                                  file.FrameOffset(from), file.path());
          !s.ok()) {
        return s;
      }
      if (absl::Status s = file.CheckStored(f, bytes); !s.ok()) return s;
      if (absl::Status s =
              WriteAt(file.fd(), bytes, file.FrameOffset(f), file.path());
          !s.ok()) {
        return s;
      }
      Placed(f);
    }
    return absl::OkStatus();
  }

  // Fetch, on a fetch thread.
  absl::Status FetchHere(const snapshot::SnapshotFile& file,
                         absl::Span<const uint32_t> frames) const {
    std::vector<uint32_t> mine, theirs;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (uint32_t f : frames) {
        if (f >= file.frame_count() ||
            present_[f].load(std::memory_order_acquire)) {
          continue;
        }
        if (in_flight_.contains(f)) {
          theirs.push_back(f);
        } else {
          in_flight_.insert(f);
          mine.push_back(f);
        }
      }
    }
    if (mine.empty() && theirs.empty()) return absl::OkStatus();
    absl::Status status = FetchClaimed(file, mine);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (uint32_t f : mine) in_flight_.erase(f);
    }
    cv_.notify_all();
    if (!status.ok()) return status;
    std::vector<uint32_t> again;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      for (uint32_t f : theirs) {
        cv_.wait(lock, [&] { return !in_flight_.contains(f); });
        if (!present_[f].load(std::memory_order_acquire)) again.push_back(f);
      }
    }
    // Another thread's fetch of these failed: try them here.
    return again.empty() ? absl::OkStatus() : FetchHere(file, again);
  }

  // The cache entry of raw frame `f`'s packed twin.
  static std::string TwinKey(const snapshot::SnapshotFile& file, uint32_t f) {
    const snapshot::ContentHash h = file.FrameContentHash(f);
    const auto* twin = file.Packed(f);
    return ChunkCache::Key(h.low, h.high, twin->stored_hash, twin->size);
  }

  std::string KeyOf(const snapshot::SnapshotFile& file, uint32_t f) const {
    const snapshot::ContentHash h = file.FrameContentHash(f);
    return ChunkCache::Key(h.low, h.high, file.StoredHash(f),
                           file.FrameSize(f));
  }

  // From the cache if it has frame `f` (entry `key`) intact.
  // (A raw working-set frame may be there as its packed twin.)
  absl::StatusOr<bool> FromCache(const snapshot::SnapshotFile& file, uint32_t f,
                                 const std::string& key,
                                 std::vector<uint8_t>& buffer) const {
    ChunkCache* cache = store_->cache();
    if (cache == nullptr) return false;
    buffer.resize(file.FrameSize(f));
    if (!cache->Get(key, absl::MakeSpan(buffer))) {
      const auto* twin = file.Packed(f);
      if (twin == nullptr) return false;
      std::vector<uint8_t> packed(twin->size);
      const std::string twin_key = TwinKey(file, f);
      if (!cache->Get(twin_key, absl::MakeSpan(packed))) return false;
      if (!file.DecodePacked(f, packed, absl::MakeSpan(buffer)).ok()) {
        cache->Remove(twin_key);  // torn or tampered with: fetch it again
        return false;
      }
    } else if (!file.CheckStored(f, buffer).ok()) {
      cache->Remove(key);  // torn or tampered with: fetch it again
      return false;
    }
    if (absl::Status s =
            WriteAt(file.fd(), buffer, file.FrameOffset(f), file.path());
        !s.ok()) {
      return s;
    }
    Placed(f);
    store_->fetch_.cache_hits.fetch_add(1, std::memory_order_relaxed);
    store_->fetch_.bytes_deduplicated.fetch_add(buffer.size(),
                                                std::memory_order_relaxed);
    return true;
  }

  absl::Status FetchClaimed(const snapshot::SnapshotFile& file,
                            std::vector<uint32_t> frames) const {
    std::sort(frames.begin(), frames.end(), [&](uint32_t a, uint32_t b) {
      return file.FrameOffset(a) < file.FrameOffset(b);
    });
    ChunkCache* cache = store_->cache();
    std::vector<uint8_t> buffer;
    std::vector<uint32_t> network, wait_for;
    std::vector<std::unique_ptr<ChunkCache::Claim>> claims;
    absl::flat_hash_set<std::string> claimed_keys;
    for (uint32_t f : frames) {
      if (cache == nullptr) {
        network.push_back(f);
        continue;
      }
      std::string key = KeyOf(file, f);
      auto hit = FromCache(file, f, key, buffer);
      if (!hit.ok()) return hit.status();
      if (*hit) continue;
      if (claimed_keys.contains(key)) {
        // An equal frame of this fetch holds the claim: fetched alike.
        network.push_back(f);
        continue;
      }
      auto claim = cache->TryClaim(key);
      if (claim == nullptr) {
        wait_for.push_back(f);  // another thread or process fetches it
        continue;
      }
      // Whoever held the claim before may have put it in since we looked.
      hit = FromCache(file, f, key, buffer);
      if (!hit.ok()) return hit.status();
      if (*hit) continue;
      claimed_keys.insert(std::move(key));
      claims.push_back(std::move(claim));
      network.push_back(f);
    }
    auto puts = std::make_shared<PendingPuts>();
    puts->keys = std::move(claimed_keys);
    absl::Status status = FromStore(file, network, puts.get());
    // The cache entries are written after the waiting restore goes on, and
    // the claims let go once they are in (a waiter then finds them).
    for (auto& claim : claims) puts->claims.push_back(std::move(claim));
    // (Moved: the claims must go with the job, not stay with this frame,
    // which may itself wait below for a claim it holds on a duplicate.)
    store_->InBackground([puts = std::move(puts), cache] {
      for (auto& [key, bytes] : puts->entries) {
        // Best effort: a cache that cannot take it (a full disk) costs a
        // later download, not this restore.
        cache->Put(key, Bytes(bytes)).IgnoreError();
      }
    });
    if (!status.ok()) return status;
    network.clear();
    for (uint32_t f : wait_for) {
      const std::string key = KeyOf(file, f);
      cache->WaitForClaim(key);
      auto hit = FromCache(file, f, key, buffer);
      if (!hit.ok()) return hit.status();
      if (!*hit) network.push_back(f);
    }
    return FromStore(file, network, nullptr);
  }

  // Entries to write into the cache once a fetch is done, and the claims
  // held until they are.
  struct PendingPuts {
    std::vector<std::pair<std::string, std::string>> entries;
    std::vector<std::unique_ptr<ChunkCache::Claim>> claims;
    // The keys this fetch holds claims on (a raw working set holds equal
    // chunks more than once: one claim serves them all).
    absl::flat_hash_set<std::string> keys;
  };

  // Whether the frames stored between frames `a` and `b` are all missing
  // here and in the cache, so that fetching them with their neighbours
  // wastes nothing.
  // With a cache, the gap's frames are claimed (into `puts`) as any fetch
  // claims its frames; a claim another holds makes the gap not missing.
  bool GapIsMissing(const snapshot::SnapshotFile& file, uint32_t a, uint32_t b,
                    PendingPuts* puts) const {
    if (rank_[b] <= rank_[a]) return false;
    ChunkCache* cache = store_->cache();
    if (cache != nullptr && puts == nullptr) return false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (uint32_t r = rank_[a] + 1; r < rank_[b]; ++r) {
        const uint32_t g = by_offset_[r];
        if (present_[g].load(std::memory_order_acquire) ||
            in_flight_.contains(g)) {
          return false;
        }
      }
    }
    if (cache == nullptr) return true;
    std::vector<std::unique_ptr<ChunkCache::Claim>> claims;
    std::vector<std::string> keys;
    for (uint32_t r = rank_[a] + 1; r < rank_[b]; ++r) {
      std::string key = KeyOf(file, by_offset_[r]);
      if (puts->keys.contains(key)) continue;  // ours already
      if (cache->Has(key)) return false;
      auto claim = cache->TryClaim(key);
      if (claim == nullptr || cache->Has(key)) return false;
      claims.push_back(std::move(claim));
      keys.push_back(std::move(key));
    }
    for (auto& claim : claims) puts->claims.push_back(std::move(claim));
    for (auto& key : keys) puts->keys.insert(std::move(key));
    return true;
  }

  // A stretch of the file one request fetches: frames stored there, or
  // the packed twins (format 1.5) of raw frames.
  struct Range {
    uint64_t first, size;
    std::vector<uint32_t> frames;
    bool packed = false;
  };

  // Fetches `frames` (sorted by offset) with range requests, adjacent ones
  // together; a raw frame with a packed twin through its twin (about a
  // quarter of the bytes for a recorded working set). Checks each frame,
  // then writes it into the stand-in, and into `puts` for the cache (when
  // given and there is a cache).
  absl::Status FromStore(const snapshot::SnapshotFile& file,
                         const std::vector<uint32_t>& frames,
                         PendingPuts* puts) const {
    if (frames.empty()) return absl::OkStatus();
    std::vector<Range> ranges;
    const uint64_t max_request = store_->options_.max_request_bytes;
    std::vector<uint32_t> twinned;
    // Twins that came with the header are taken from there; one that fails
    // its checks is fetched like the others.
    std::shared_ptr<const std::string> leading;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      leading = leading_;
    }
    if (leading != nullptr) {
      Range here{0, leading->size(), {}, true};
      for (uint32_t f : frames) {
        const auto* twin = file.Packed(f);
        if (twin != nullptr && twin->offset + twin->size <= leading->size()) {
          here.frames.push_back(f);
        }
      }
      if (!here.frames.empty()) {
        absl::Status took = TakePacked(file, here, Bytes(*leading), puts);
        if (took.code() == absl::StatusCode::kResourceExhausted) return took;
        // A twin damaged on the way: what is left is asked for again.
        if (!took.ok()) {
          store_->fetch_.retries.fetch_add(1, std::memory_order_relaxed);
        }
      }
    }
    for (uint32_t f : frames) {
      if (present_[f].load(std::memory_order_acquire)) continue;
      if (file.Packed(f) != nullptr) {
        twinned.push_back(f);
        continue;
      }
      const uint64_t at = file.FrameOffset(f), size = file.FrameSize(f);
      if (!ranges.empty()) {
        Range& last = ranges.back();
        const uint64_t end = last.first + last.size;
        // Frames stored between the two join only if they are missing
        // everywhere; bare padding only if it is small.
        const bool frames_between = rank_[f] > rank_[last.frames.back()] + 1;
        if (at >= end && at + size - last.first <= max_request &&
            (frames_between
                 ? at - end <= kCoalesceGap &&
                       GapIsMissing(file, last.frames.back(), f, puts)
                 : at - end <= kPaddingGap)) {
          // The frames in the gap come too (checked and kept like the
          // others): they are missing here and in the cache.
          if (frames_between) {
            const uint32_t from = rank_[last.frames.back()] + 1;
            for (uint32_t r = from; r < rank_[f]; ++r) {
              last.frames.push_back(by_offset_[r]);
            }
          }
          last.size = at + size - last.first;
          last.frames.push_back(f);
          continue;
        }
      }
      ranges.push_back({at, size, {f}});
    }
    // Twins lie one after another in working-set order: the few bytes
    // between two wanted ones come along.
    std::sort(twinned.begin(), twinned.end(), [&](uint32_t a, uint32_t b) {
      return file.Packed(a)->offset < file.Packed(b)->offset;
    });
    const size_t plain_ranges = ranges.size();
    for (uint32_t f : twinned) {
      const auto* twin = file.Packed(f);
      if (ranges.size() > plain_ranges) {
        Range& last = ranges.back();
        const uint64_t end = last.first + last.size;
        if (twin->offset >= end && twin->offset - end <= kPaddingGap &&
            twin->offset + twin->size - last.first <=
                std::min(max_request, kTwinRangeBytes)) {
          last.size = twin->offset + twin->size - last.first;
          last.frames.push_back(f);
          continue;
        }
      }
      ranges.push_back({twin->offset, twin->size, {f}, true});
    }
    std::vector<HttpRequest> requests(ranges.size());
    for (size_t i = 0; i < ranges.size(); ++i) {
      requests[i].url = url_;
      requests[i].range_first = ranges[i].first;
      requests[i].range_size = ranges[i].size;
      // The same version of the file as the manifest we hold, or 412.
      if (!etag_.empty()) requests[i].headers.push_back("If-Match: " + etag_);
    }
    store_->fetch_.cache_misses.fetch_add(frames.size(),
                                          std::memory_order_relaxed);
    return client_->Run(
        requests, [&](size_t i, const HttpResponse& response) -> absl::Status {
          return ranges[i].packed
                     ? TakePacked(file, ranges[i], Bytes(response.body), puts)
                     : TakeFrames(file, ranges[i], response, puts);
        });
  }

  // A range of frames has come: checks each, writes them into the stand-in.
  absl::Status TakeFrames(const snapshot::SnapshotFile& file,
                          const Range& range, const HttpResponse& response,
                          PendingPuts* puts) const {
    const auto body = Bytes(response.body);
    for (uint32_t f : range.frames) {
      const auto stored =
          body.subspan(file.FrameOffset(f) - range.first, file.FrameSize(f));
      if (absl::Status s = file.CheckStored(f, stored); !s.ok()) {
        return absl::DataLossError(
            absl::StrFormat("frame %d failed its check (%s)", f, s.message()));
      }
    }
    if (absl::Status s = WriteAt(file.fd(), body, range.first, file.path());
        !s.ok()) {
      // Not DataLoss: a full local disk is not cured by fetching again.
      return absl::ResourceExhaustedError(s.message());
    }
    for (uint32_t f : range.frames) {
      Arrived(
          file, f,
          body.subspan(file.FrameOffset(f) - range.first, file.FrameSize(f)),
          puts);
    }
    return absl::OkStatus();
  }

  // A range of packed twins has come: decodes each into its raw frame,
  // checked as the raw frame itself would be, and writes that in its place.
  absl::Status TakePacked(const snapshot::SnapshotFile& file,
                          const Range& range, absl::Span<const uint8_t> body,
                          PendingPuts* puts) const {
    std::vector<uint8_t> raw(file.chunk_size());
    for (uint32_t f : range.frames) {
      const auto* twin = file.Packed(f);
      const auto stored = body.subspan(twin->offset - range.first, twin->size);
      if (absl::Status s = file.DecodePacked(f, stored, absl::MakeSpan(raw));
          !s.ok()) {
        return absl::DataLossError(
            absl::StrFormat("frame %d failed its check (%s)", f, s.message()));
      }
      if (absl::Status s =
              WriteAt(file.fd(), raw, file.FrameOffset(f), file.path());
          !s.ok()) {
        return absl::ResourceExhaustedError(s.message());
      }
      // The cache keeps the twin (a quarter of the bytes to write; a new
      // version whose chunk did not change has the same twin).
      Arrived(file, f, stored, puts, TwinKey(file, f));
    }
    return absl::OkStatus();
  }

  // Frame `f`, checked here, is in the stand-in: present for every handle
  // on it, and checked for this one's engines.
  void Placed(uint32_t f) const {
    checked_here_[f].store(1, std::memory_order_release);
    present_[f].store(1, std::memory_order_release);
  }

  // Frame `f` is in the stand-in: marks it present and keeps `stored` for
  // the cache as entry `key` (its own stored bytes when empty).
  void Arrived(const snapshot::SnapshotFile& file, uint32_t f,
               absl::Span<const uint8_t> stored, PendingPuts* puts,
               std::string key = "") const {
    Placed(f);
    store_->fetch_.frames_fetched.fetch_add(1, std::memory_order_relaxed);
    if (store_->cache() == nullptr || puts == nullptr) return;
    std::lock_guard<std::mutex> lock(puts_mutex_);
    puts->entries.push_back(
        {key.empty() ? KeyOf(file, f) : std::move(key),
         std::string(reinterpret_cast<const char*>(stored.data()),
                     stored.size())});
  }

  const std::shared_ptr<RemoteStore> store_;
  HttpClient* const client_;
  const std::string url_;
  const std::string etag_;
  std::unique_ptr<std::atomic<uint8_t>[]> own_present_;
  std::optional<Presence> shared_present_;
  std::atomic<uint8_t>* present_ = nullptr;  // one of the two
  std::vector<uint32_t> by_offset_;          // frame indices in file order
  std::vector<uint32_t> rank_;               // each frame's place in by_offset_
  snapshot::ContentHash zero_hash_;          // of a chunk of zeros
  // The frames this handle checked as it put them in the stand-in.
  std::unique_ptr<std::atomic<uint8_t>[]> checked_here_;
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  mutable absl::flat_hash_set<uint32_t> in_flight_;  // guarded by mutex_
  // The file's bytes from offset 0 that came with the header, until the
  // working set's fetch is done with them.
  mutable std::shared_ptr<const std::string> leading_;  // guarded by mutex_
  mutable std::mutex puts_mutex_;
};

RemoteStore::~RemoteStore() {
  {
    std::lock_guard<std::mutex> lock(jobs_mutex_);
    stopping_ = true;
  }
  jobs_cv_.notify_all();
  for (std::thread& t : fetch_threads_) {
    if (t.get_id() == std::this_thread::get_id()) {
      // The last reference went with a job this thread ran (a working set
      // started at open holds its file, which holds the store): the thread
      // leaves its loop without touching the store again.
      t.detach();
      store_gone_on_this_thread = true;
    } else {
      t.join();
    }
  }
}

absl::Status RemoteStore::StartThreads() {
  std::lock_guard<std::mutex> lock(jobs_mutex_);
  if (!fetch_threads_.empty()) return absl::OkStatus();
  try {
    StartThreadsLocked();
  } catch (const std::system_error& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("start the remote store's fetch threads: ", e.what()));
  }
  return absl::OkStatus();
}

void RemoteStore::StartThreadsLocked() {
  // Fetch threads, and one thread for background jobs (cache writes) of
  // its own: a fetch may wait on a claim that a background job releases,
  // so background jobs never queue behind fetches. Started when the store
  // is asked or a stand-in lacks frames, not with the store: a handle
  // whose frames are all on the host (a warm open) needs none.
  for (int i = 0; i <= kFetchThreads; ++i) {
    const bool background = i == kFetchThreads;
    fetch_threads_.emplace_back([s = this, background] {
      pthread_setname_np(pthread_self(),
                         background ? "thaw-cache-put" : "thaw-fetch");
      // Cache writes yield the cores to the restore they follow (a cold
      // restore writes most of what it fetched into the cache too).
      if (background) setpriority(PRIO_PROCESS, gettid(), 10);
      auto& queue = background ? s->background_ : s->jobs_;
      std::unique_lock<std::mutex> lock(s->jobs_mutex_);
      while (true) {
        s->jobs_cv_.wait(lock, [&] { return s->stopping_ || !queue.empty(); });
        if (queue.empty()) return;  // stopping, nothing left
        std::function<void()> job = std::move(queue.front());
        queue.pop_front();
        lock.unlock();
        job();
        job = nullptr;  // may destroy the store (see ~RemoteStore)
        if (store_gone_on_this_thread) return;
        lock.lock();
      }
    });
  }
}

void RemoteStore::Enqueue(std::deque<std::function<void()>>& queue,
                          std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(jobs_mutex_);
    if (!fetch_threads_.empty()) {
      queue.push_back(std::move(job));
      job = nullptr;
    }
  }
  if (job) {
    // No threads (every frame was on the host at open): here. (The caller
    // holds what the job holds, so the store outlives it.)
    job();
    return;
  }
  // (notify_all: the background thread waits on the same variable for
  // another queue, and could take a single wake-up meant for a fetch.)
  jobs_cv_.notify_all();
}

absl::Status RemoteStore::OnFetchThreads(
    const std::vector<std::function<absl::Status()>>& jobs) {
  bool threads;
  {
    std::lock_guard<std::mutex> lock(jobs_mutex_);
    threads = !fetch_threads_.empty();
  }
  if (!threads) {
    // No threads (every frame was on the host at open): here.
    for (const auto& job : jobs) {
      if (absl::Status s = job(); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  std::mutex done_mutex;
  std::condition_variable done_cv;
  size_t done = 0;
  absl::Status result;
  {
    std::lock_guard<std::mutex> lock(jobs_mutex_);
    for (const auto& job : jobs) {
      jobs_.push_back([&] {
        absl::Status s = job();
        std::lock_guard<std::mutex> l(done_mutex);
        if (result.ok()) result = std::move(s);
        ++done;
        done_cv.notify_one();
      });
    }
  }
  // (notify_all: the background thread waits on the same variable for
  // another queue, and could take a single wake-up meant for a fetch.)
  jobs_cv_.notify_all();
  std::unique_lock<std::mutex> lock(done_mutex);
  done_cv.wait(lock, [&] { return done == jobs.size(); });
  return result;
}

absl::StatusOr<std::shared_ptr<RemoteStore>> RemoteStore::Create(
    const RemoteOptions& options) {
  if (options.max_request_bytes < snapshot::kMaxChunkSize) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "RemoteOptions: max_request_bytes must be at least %d (a frame)",
        snapshot::kMaxChunkSize));
  }
  std::shared_ptr<RemoteStore> store(new RemoteStore(options));
  if (options.use_cache) {
    auto cache = ChunkCache::Open(
        options.cache_dir.empty() ? DefaultCacheDir() : options.cache_dir,
        options.cache_max_bytes);
    if (!cache.ok()) return cache.status();
    store->cache_ = *std::move(cache);
  }
  return store;
}

absl::StatusOr<HttpClient*> RemoteStore::ClientFor(const StoreLocation& where) {
  const std::string key =
      where.s3 ? absl::StrCat("s3 ", where.endpoint) : std::string("http");
  std::lock_guard<std::mutex> lock(mutex_);
  for (size_t i = 0; i < client_keys_.size(); ++i) {
    if (client_keys_[i] == key) return clients_[i].get();
  }
  clients_.push_back(std::make_unique<HttpClient>(where.http));
  client_keys_.push_back(key);
  return clients_.back().get();
}

absl::StatusOr<std::shared_ptr<const snapshot::SnapshotFile>>
RemoteStore::OpenFile(const std::string& location,
                      const snapshot::PublicKey* key, bool start_working_set) {
  auto where = ParseLocation(location, options_);
  if (!where.ok()) return where.status();
  auto client = ClientFor(*where);
  if (!client.ok()) return client.status();
  // Frames checked against a key are kept apart from frames that were not
  // (remote/local_image.h).
  const std::string checked_by =
      key != nullptr
          ? absl::BytesToHexString(absl::string_view(
                reinterpret_cast<const char*>(key->data()), key->size()))
          : "";
  const std::string record_key = absl::StrCat(where->url, " ", checked_by);
  // A version of the file this host has, and may use without asking the
  // store again: no round trip.
  bool host_knows_file = false;
  if (cache_ != nullptr) {
    auto record = FindManifestRecord(cache_->dir(), record_key);
    host_knows_file = record.has_value();
    if (record.has_value() &&
        absl::Now() <
            record->fetched + (options_.manifest_max_age > absl::ZeroDuration()
                                   ? options_.manifest_max_age
                                   : record->store_max_age)) {
      if (auto image = FindImage(cache_->dir(), record->image)) {
        auto file =
            StandIn(image->fd, record->size, /*shared=*/true, location, key,
                    *client, where->url, record->etag, start_working_set);
        if (file.ok() || file.status().code() != absl::StatusCode::kDataLoss) {
          return file;
        }
        RemoveImage(cache_->dir(), record->image);  // damaged: ask the store
      }
    }
  }
  // The header says where the manifest is; the manifest is at the end of
  // the file. Both are asked for at once — the header and the file's last
  // kSpeculativeTail bytes — so that a manifest of that size or less costs
  // one round trip. The header is checked against its checksum as it
  // arrives, so bytes damaged on the way are fetched again.
  // On a host that has not opened this file before, the header's request
  // runs on into the packed working set at the file's front, and is cut
  // where the manifest, arriving meanwhile, says that ends
  // (remote/leading_twins.h): the working set comes in the open's round
  // trip.
  // The store is asked: threads to fetch with start while it answers.
  if (absl::Status s = StartThreads(); !s.ok()) return s;
  const bool lead = start_working_set && options_.fetch_working_set_on_open &&
                    !host_knows_file;
  HttpResponse head, end;
  bool end_in = false;
  std::optional<uint64_t> lead_end;
  std::vector<HttpRequest> first = {
      RangeRequest(where->url, 0,
                   snapshot::kHeaderSize + (lead ? kLeadingTwinsMax : 0)),
      SuffixRequest(where->url, kSpeculativeTail)};
  if (lead) {
    // Until the manifest is in, the request takes the header and a little
    // more, then waits: a file with nothing at its front wastes no more.
    first[0].progress = [&](const HttpResponse& so_far) {
      const absl::string_view body = so_far.body;
      if (!lead_end.has_value() && end_in &&
          body.size() >= snapshot::kHeaderSize) {
        std::optional<absl::string_view> manifest;
        if (HeaderIntact(body)) manifest = ManifestIn(body, end);
        lead_end = manifest.has_value()
                       ? LeadingTwinsEnd(*manifest, cache_.get())
                       : snapshot::kHeaderSize;
      }
      if (!lead_end.has_value()) {
        return body.size() >= kLeadingTwinsUndecided ? HttpRequest::Want::kWait
                                                     : HttpRequest::Want::kMore;
      }
      return body.size() >= *lead_end ? HttpRequest::Want::kEnough
                                      : HttpRequest::Want::kMore;
    };
  }
  absl::Status s = (*client)->Run(
      first, [&](size_t i, const HttpResponse& r) -> absl::Status {
        if (i == 1) {
          end = r;
          end_in = true;
          return absl::OkStatus();
        }
        if (r.body.size() < snapshot::kHeaderSize) {
          return absl::DataLossError(
              absl::StrFormat("the file is shorter than the %d-byte header",
                              snapshot::kHeaderSize));
        }
        if (!HeaderIntact(r.body)) {
          return absl::DataLossError(
              "the header's checksum does not match (not a thaw snapshot, "
              "or damaged)");
        }
        head = r;
        return absl::OkStatus();
      });
  if (!s.ok()) {
    if (s.code() == absl::StatusCode::kFailedPrecondition &&
        absl::StrContains(s.message(), "416")) {
      return absl::DataLossError(
          absl::StrFormat("snapshot \"%s\": shorter than the %d-byte header",
                          location, snapshot::kHeaderSize));
    }
    if (s.code() == absl::StatusCode::kDataLoss) {
      return absl::DataLossError(
          absl::StrFormat("snapshot \"%s\": %s", location, s.message()));
    }
    return s;
  }
  // What came after the header: twins, checked when they are used.
  std::shared_ptr<const std::string> leading;
  if (lead_end.has_value() && *lead_end > snapshot::kHeaderSize &&
      head.body.size() > snapshot::kHeaderSize) {
    head.body.resize(std::min<uint64_t>(head.body.size(), *lead_end));
    leading = std::make_shared<const std::string>(std::move(head.body));
    head.body = leading->substr(0, snapshot::kHeaderSize);
  }
  head.body.resize(snapshot::kHeaderSize);
  const uint64_t total = head.total_size;
  const uint8_t* h = reinterpret_cast<const uint8_t*>(head.body.data());
  const uint64_t manifest_at =
      LoadLe64(h + snapshot::kHeaderManifestOffsetOffset);
  const uint64_t manifest_size =
      LoadLe64(h + snapshot::kHeaderManifestSizeOffset);
  if (manifest_at < snapshot::kHeaderSize || manifest_at > total ||
      manifest_size > total - manifest_at ||
      total - manifest_at > snapshot::kMaxManifestSize + 64) {
    return absl::DataLossError(absl::StrFormat(
        "snapshot \"%s\": the header places a %d-byte manifest at %d of a "
        "%d-byte file (truncated, or damaged)",
        location, manifest_size, manifest_at, total));
  }
  const uint64_t manifest_hash =
      LoadLe64(h + snapshot::kHeaderManifestHashOffset);
  std::string tail;
  // The speculative tail serves if it holds the whole manifest, came from
  // the same version of the file, and checks.
  if (end.total_size == total && end.etag == head.etag && manifest_at < total &&
      ManifestIn(head.body, end).has_value()) {
    tail = end.body.substr(manifest_at - end.range_first);
  } else if (manifest_at < total) {
    HttpRequest rest =
        RangeRequest(where->url, manifest_at, total - manifest_at);
    if (!head.etag.empty()) rest.headers.push_back("If-Match: " + head.etag);
    s = (*client)->Run({rest},
                       [&](size_t, const HttpResponse& r) -> absl::Status {
                         if (!ManifestMatches(head.body, r.body)) {
                           return absl::DataLossError(
                               "the manifest's checksum does not match");
                         }
                         tail = r.body;
                         return absl::OkStatus();
                       });
    if (!s.ok()) return s;
  }
  const auto tail_bytes = Bytes(tail);
  if (cache_ != nullptr) {
    // This version's image on the host (made now if new), and a record
    // that lets the next open skip the store while the store allows it.
    const std::string name =
        ImageName(where->url, total, head.etag, manifest_hash, checked_by);
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto image = OpenImage(cache_->dir(), name, total, Bytes(head.body),
                             tail_bytes, manifest_at);
      if (!image.ok()) break;  // (a cache that cannot take it: a tmp file)
      const bool created = image->created;
      auto file =
          StandIn(image->fd, total, /*shared=*/true, location, key, *client,
                  where->url, head.etag, start_working_set, leading);
      if (file.ok()) {
        WriteManifestRecord(
            cache_->dir(), record_key,
            {name, head.etag, total, absl::Now(), head.max_age});
        return file;
      }
      // An image made before that fails its checks is damaged: made again.
      if (created || file.status().code() != absl::StatusCode::kDataLoss) {
        return file.status();
      }
      RemoveImage(cache_->dir(), name);
    }
  }
  auto fd = NewStandInFile(cache_ != nullptr ? cache_->dir() + "/tmp" : "");
  if (!fd.ok()) return fd.status();
  s = ftruncate(*fd, total) == 0 ? absl::OkStatus()
                                 : ErrnoStatus("size the local copy", errno);
  if (s.ok()) s = WriteAt(*fd, Bytes(head.body), 0, location);
  if (s.ok()) s = WriteAt(*fd, tail_bytes, manifest_at, location);
  if (!s.ok()) {
    close(*fd);
    return s;
  }
  return StandIn(*fd, total, /*shared=*/false, location, key, *client,
                 where->url, head.etag, start_working_set, std::move(leading));
}

absl::StatusOr<std::shared_ptr<const snapshot::SnapshotFile>>
RemoteStore::StandIn(int fd, uint64_t size, bool shared,
                     const std::string& location,
                     const snapshot::PublicKey* key, HttpClient* client,
                     const std::string& url, const std::string& etag,
                     bool start_working_set,
                     std::shared_ptr<const std::string> leading) {
  auto frames = std::make_shared<Frames>(shared_from_this(), client, url, etag,
                                         std::move(leading));
  auto file =
      snapshot::SnapshotFile::OpenStandIn(fd, location, key, frames, size);
  if (!file.ok()) return file.status();
  std::optional<Presence> presence;
  if (shared) {
    auto mapped = Presence::Map(fd, size, (*file)->frame_count());
    if (!mapped.ok()) return mapped.status();
    presence.emplace(*std::move(mapped));
  }
  const bool all_on_host = frames->Init(**file, std::move(presence));
  // Threads to fetch with, unless every frame is on the host already
  // (started here, on the opening thread: the threads that serve a
  // restore's faults are confined and cannot start threads).
  if (!all_on_host) {
    if (absl::Status s = StartThreads(); !s.ok()) return s;
  }
  if (start_working_set && options_.fetch_working_set_on_open) {
    // The recorded working set is what a restore asks for first: on its
    // way now, it overlaps what the caller does before restoring.
    const snapshot::SnapshotFile& f = **file;
    std::vector<uint32_t> ws;
    for (uint32_t c : f.manifest().working_set()) {
      const uint32_t frame = f.ChunkFrame(c);
      if (frame < f.frame_count()) ws.push_back(frame);
    }
    if (!ws.empty()) {
      Frames::Start(frames, *file, std::move(ws));
      return file;
    }
  }
  frames->DropLeading();
  return file;
}

RemoteStats RemoteStore::stats() const {
  RemoteStats out;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& c : clients_) {
      out.requests += c->counters().requests.load();
      out.retries += c->counters().retries.load();
      out.bytes_fetched += c->counters().bytes_received.load();
    }
  }
  out.retries += fetch_.retries.load();
  out.frames_fetched = fetch_.frames_fetched.load();
  out.cache_hits = fetch_.cache_hits.load();
  out.cache_misses = fetch_.cache_misses.load();
  out.bytes_deduplicated = fetch_.bytes_deduplicated.load();
  out.frames_on_host = fetch_.frames_on_host.load();
  return out;
}

}  // namespace thaw::remote
