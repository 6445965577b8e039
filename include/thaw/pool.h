// thaw::Pool — sandboxes of one guest, kept ready and leased one request at a
// time: what a FaaS layer puts between its requests and its Vms.
//
// A Pool is made from a Snapshot handle (or from a guest it boots, inits and
// snapshots once: SnapStart) and a PoolPolicy. Acquire() hands out a Lease
// on a Vm that no other caller holds: an idle one if there is one (a warm
// start), else a new one restored for this request while fewer than
// max_concurrency exist (a restored start), else it waits for a returned
// one until the deadline and then fails with ResourceExhausted ("throttled").
// Returning the lease (its destructor) applies the policy's isolation: the
// Vm is reset to the snapshot, kept as it is, or dropped. A Vm whose call
// failed (a guest exception, an abort, a timeout: Vm::failure()) or whose
// lease was Discard()ed is dropped and never handed out again; the pool
// restores a replacement in the background while it holds fewer than
// `provisioned`. Idle Vms beyond `provisioned` are dropped after
// idle_reclaim, which gives their memory back.
//
// Thread safety: every method may be called from any thread; a Lease is
// used by one thread at a time (it is a unique handle). Leases may outlive
// the Pool: a Vm returned after the Pool is gone is dropped.
#ifndef THAW_POOL_H_
#define THAW_POOL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "thaw/options.h"
#include "thaw/snapshot.h"
#include "thaw/vm.h"

namespace thaw {

namespace internal {
class PoolCore;  // lib/pool.cc
}  // namespace internal

// What a returned lease's Vm goes through before the next request.
enum class Isolation {
  // Vm::Reset() to the snapshot: the next request sees none of this one's
  // writes. Needs RestoreEngine::kSharedBase.
  kResetPerRequest,
  // Kept as it is: the next request sees this one's state (as Lambda reuses
  // a warm execution environment).
  kReuseWarm,
  // Dropped: every lease is a Vm no request has used (restored ahead of
  // time for the provisioned ones, else for the request).
  kRestorePerRequest,
  // Dropped, and every new Vm boots the guest from scratch (init included)
  // instead of restoring: the baseline a snapshot is measured against.
  // Only for a Pool made by Pool::Boot.
  kBootPerRequest,
};

// "reset", "reuse", "restore", "boot".
absl::string_view IsolationName(Isolation isolation);
// Parses IsolationName's output; InvalidArgument for anything else.
absl::StatusOr<Isolation> ParseIsolation(absl::string_view name);

struct PoolPolicy {
  // Vms restored when the pool is made and kept ready (Lambda's
  // provisioned concurrency); at most max_concurrency.
  int provisioned = 0;
  // Vms that may exist at once, leased, idle or being restored (Lambda's
  // reserved concurrency); Acquire beyond it waits, then throttles. >= 1.
  // A provisioned Vm being restored in the background (after a discard)
  // counts too, so a burst right then can be throttled one Vm early.
  int max_concurrency = 8;
  Isolation isolation = Isolation::kResetPerRequest;
  // An idle Vm beyond `provisioned` is dropped after this long unused.
  absl::Duration idle_reclaim = absl::Minutes(10);
  // How the pool restores (engine, backend, call timeout, console).
  // kResetPerRequest needs engine kSharedBase.
  RestoreOptions restore;
};

// How the Vm of a lease came to be ready.
enum class StartKind {
  kWarm,      // was idle in the pool (provisioned, or returned earlier)
  kRestored,  // restored from the snapshot for this request
  kBooted,    // booted from scratch for this request (kBootPerRequest)
};

// "warm", "restored", "cold".
absl::string_view StartKindName(StartKind kind);

// Counted since the pool was made.
struct PoolStats {
  uint64_t warm_starts = 0;          // leases given an idle Vm
  uint64_t restored_starts = 0;      // leases that waited for a restore
  uint64_t cold_starts = 0;          // leases that waited for a boot
  uint64_t background_restores = 0;  // provisioned Vms made ahead of time
  uint64_t queue_waits = 0;          // Acquires that had to wait for a Vm
  absl::Duration queue_wait_time;    // their waiting, summed
  uint64_t throttles = 0;            // Acquires refused at the deadline
  uint64_t resets = 0;               // Vms reset after a lease
  uint64_t discards = 0;             // Vms dropped after a failure or Discard()
  uint64_t reclaimed = 0;            // idle Vms dropped after idle_reclaim
  uint64_t start_failures = 0;       // restores or boots that failed
  // Now:
  int idle = 0;
  int leased = 0;
  int starting = 0;
};

// A Vm held by one caller until the lease is destroyed or Release()d.
class Lease {
 public:
  Lease(Lease&& other) noexcept;
  Lease& operator=(Lease&& other) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease();  // Release()

  Vm& vm() const { return *vm_; }
  Vm* operator->() const { return vm_.get(); }

  StartKind start() const { return start_; }
  // Restoring (or booting) the Vm for this lease; zero for a warm start.
  absl::Duration start_time() const { return start_time_; }
  // Time Acquire waited for a Vm to be returned.
  absl::Duration queue_wait() const { return queue_wait_; }

  // The Vm is dropped when the lease ends, whatever the policy says (use
  // it when a request left the guest in a state you do not trust).
  void Discard() { discard_ = true; }
  // Returns the Vm to the pool now (the policy's isolation runs on this
  // thread). The status is the isolation's: a failed reset is reported
  // here and the Vm dropped. Afterwards the lease is empty.
  absl::Status Release();

 private:
  friend class internal::PoolCore;
  Lease(std::shared_ptr<internal::PoolCore> core, std::unique_ptr<Vm> vm,
        StartKind start, absl::Duration start_time, absl::Duration queue_wait);

  std::shared_ptr<internal::PoolCore> core_;
  std::unique_ptr<Vm> vm_;
  StartKind start_ = StartKind::kWarm;
  absl::Duration start_time_;
  absl::Duration queue_wait_;
  bool discard_ = false;
};

// How to boot a guest from scratch (Pool::Boot).
struct GuestRecipe {
  VmConfig config;
  std::string path;        // function-guest ELF, or Linux program
  ProgramOptions program;  // Linux programs only
};

class Pool {
 public:
  // A pool restoring from `snapshot`. InvalidArgument for a policy that
  // cannot work (naming the field); the provisioned Vms are restored
  // before it returns, and their first failure is returned.
  static absl::StatusOr<std::unique_ptr<Pool>> Create(Snapshot snapshot,
                                                      PoolPolicy policy);
  // Boots `recipe` once (its init runs), snapshots it to `snapshot_path`
  // and makes a pool from that snapshot. A failed boot returns its error
  // with the guest's console appended.
  static absl::StatusOr<std::unique_ptr<Pool>> Boot(
      GuestRecipe recipe, const std::string& snapshot_path, PoolPolicy policy);

  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // A Vm for one request, waiting for one until `deadline` when
  // max_concurrency are out: ResourceExhausted ("throttled") then. A failed
  // restore is returned as it is. absl::Now() as the deadline never waits.
  absl::StatusOr<Lease> Acquire(absl::Time deadline);

  PoolStats stats() const;
  const PoolPolicy& policy() const;
  const Snapshot& snapshot() const;

 private:
  explicit Pool(std::shared_ptr<internal::PoolCore> core);
  // Restores the provisioned Vms and starts the maintainer.
  static absl::StatusOr<std::unique_ptr<Pool>> Start(
      std::shared_ptr<internal::PoolCore> core);
  std::shared_ptr<internal::PoolCore> core_;
};

}  // namespace thaw

#endif  // THAW_POOL_H_
