#include "snapshot/shared_base.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "lib/errno_status.h"
#include "snapshot/eager_restore.h"
#include "thaw/snapshot.h"

namespace thaw::snapshot {
namespace {

// Bases stay alive while a Vm maps them; the most recently used few also
// stay while none does, so that restoring one clone at a time (serve a
// request, drop the Vm, restore the next) does not decompress every time.
constexpr size_t kKeptIdleBases = 4;

struct Cache {
  std::mutex mutex;  // held while building, so one thread builds a base
  absl::flat_hash_map<std::string, std::weak_ptr<const SharedBase>> bases;
  std::deque<std::shared_ptr<const SharedBase>> recent;  // newest first
};

void KeepRecent(Cache& cache, std::shared_ptr<const SharedBase> base) {
  auto it = std::find(cache.recent.begin(), cache.recent.end(), base);
  if (it != cache.recent.end()) cache.recent.erase(it);
  cache.recent.push_front(std::move(base));
  if (cache.recent.size() > kKeptIdleBases) cache.recent.pop_back();
}

Cache& GlobalCache() {
  static Cache* cache = new Cache;  // never destroyed: outlives all Vms
  return *cache;
}

}  // namespace

SharedBase::~SharedBase() { close(fd_); }

absl::StatusOr<std::shared_ptr<const SharedBase>> SharedBase::Get(
    std::shared_ptr<const SnapshotImage> image, RestoreCounters& counters,
    bool* built) {
  *built = false;
  Cache& cache = GlobalCache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  absl::erase_if(cache.bases,
                 [](const auto& entry) { return entry.second.expired(); });
  const std::string& key = image->manifest().snapshot_id();
  if (auto it = cache.bases.find(key); it != cache.bases.end()) {
    if (auto base = it->second.lock()) {
      KeepRecent(cache, base);
      return base;
    }
  }
  const uint64_t size = image->memory_size();
  int fd = memfd_create("thaw-shared-base", MFD_CLOEXEC);
  if (fd < 0) return ErrnoStatus("memfd_create for a shared base", errno);
  std::shared_ptr<const SharedBase> base(new SharedBase(fd, size));
  if (ftruncate(fd, size) != 0) {
    return ErrnoStatus("size the shared-base memfd", errno);
  }
  // Safe: a fresh mapping of our own memfd, unmapped below.
  void* view = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (view == MAP_FAILED) return ErrnoStatus("mmap the shared base", errno);
  absl::Status status =
      RestoreEagerly(*image, static_cast<uint8_t*>(view), counters);
  munmap(view, size);
  if (!status.ok()) return status;
  cache.bases[key] = base;
  KeepRecent(cache, base);
  *built = true;
  return base;
}

void SharedBase::DropIdle() {
  Cache& cache = GlobalCache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  cache.recent.clear();
}

}  // namespace thaw::snapshot

namespace thaw {
void DropIdleSharedBases() { snapshot::SharedBase::DropIdle(); }
}  // namespace thaw
