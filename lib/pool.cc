// thaw::Pool: a set of Vms of one snapshot, their leases, and a maintainer
// thread that keeps `provisioned` of them ready and drops idle ones.
//
// One mutex guards the sets and the counters; restores, boots, resets and
// the dropping of a Vm (an munmap of its memory) run outside it, so a slow
// restore never holds up a lease being returned or handed out.
#include "thaw/pool.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace thaw {

absl::string_view IsolationName(Isolation isolation) {
  switch (isolation) {
    case Isolation::kResetPerRequest:
      return "reset";
    case Isolation::kReuseWarm:
      return "reuse";
    case Isolation::kRestorePerRequest:
      return "restore";
    case Isolation::kBootPerRequest:
      return "boot";
  }
  return "unknown";
}

absl::StatusOr<Isolation> ParseIsolation(absl::string_view name) {
  for (Isolation i :
       {Isolation::kResetPerRequest, Isolation::kReuseWarm,
        Isolation::kRestorePerRequest, Isolation::kBootPerRequest}) {
    if (name == IsolationName(i)) return i;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "isolation \"", name, "\": expected reset, reuse, restore or boot"));
}

absl::string_view StartKindName(StartKind kind) {
  switch (kind) {
    case StartKind::kWarm:
      return "warm";
    case StartKind::kRestored:
      return "restored";
    case StartKind::kBooted:
      return "cold";
  }
  return "unknown";
}

namespace internal {

// Boots a Vm from `recipe` through its init; the console is appended to a
// failure.
absl::StatusOr<std::unique_ptr<Vm>> BootGuest(const GuestRecipe& recipe) {
  auto vm = Vm::Create(recipe.config);
  if (!vm.ok()) return vm.status();
  absl::Status status = recipe.config.guest_kind == GuestKind::kFunction
                            ? (*vm)->LoadGuest(recipe.path)
                            : (*vm)->LoadProgram(recipe.path, recipe.program);
  if (status.ok()) status = (*vm)->Boot();
  if (!status.ok()) {
    const std::string console = (*vm)->console();
    return absl::Status(
        status.code(),
        absl::StrCat(status.message(),
                     console.empty() ? "" : "; the guest's console:\n",
                     console));
  }
  return vm;
}

class PoolCore : public std::enable_shared_from_this<PoolCore> {
 public:
  PoolCore(Snapshot snapshot, PoolPolicy policy,
           std::optional<GuestRecipe> recipe)
      : snapshot_(std::move(snapshot)),
        policy_(std::move(policy)),
        recipe_(std::move(recipe)) {}

  ~PoolCore() { Close(); }

  // Restores the provisioned Vms, then starts the maintainer.
  absl::Status Start() {
    for (int i = 0; i < policy_.provisioned; ++i) {
      auto vm = MakeVm();
      if (!vm.ok()) return vm.status();
      std::lock_guard<std::mutex> lock(mutex_);
      idle_.push_back({*std::move(vm), absl::Now()});
      ++stats_.background_restores;
    }
    maintainer_ = std::thread([this] { Maintain(); });
    return absl::OkStatus();
  }

  // Stops the maintainer and drops the idle Vms; Vms still leased are
  // dropped when they come back.
  void Close() {
    std::vector<IdleVm> idle;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (closed_) return;
      closed_ = true;
      idle.swap(idle_);
    }
    changed_.notify_all();
    if (maintainer_.joinable()) maintainer_.join();
  }

  absl::StatusOr<Lease> Acquire(absl::Time deadline) {
    const absl::Time begin = absl::Now();
    std::unique_lock<std::mutex> lock(mutex_);
    bool waited = false;
    auto waiting = [&] {
      const absl::Duration wait = absl::Now() - begin;
      if (waited) stats_.queue_wait_time += wait;
      return waited ? wait : absl::ZeroDuration();
    };
    for (;;) {
      if (closed_) {
        return absl::FailedPreconditionError("Acquire: the pool is closed");
      }
      if (!idle_.empty()) {
        std::unique_ptr<Vm> vm = std::move(idle_.back().vm);
        idle_.pop_back();
        ++leased_;
        ++stats_.warm_starts;
        return Lease(shared_from_this(), std::move(vm), StartKind::kWarm,
                     absl::ZeroDuration(), waiting());
      }
      if (Total() < policy_.max_concurrency) {
        ++starting_;
        lock.unlock();
        const absl::Time start = absl::Now();
        absl::StatusOr<std::unique_ptr<Vm>> vm = MakeVm();
        const absl::Duration took = absl::Now() - start;
        lock.lock();
        --starting_;
        if (!vm.ok()) {
          ++stats_.start_failures;
          lock.unlock();
          changed_.notify_all();  // the slot is free again
          return vm.status();
        }
        ++leased_;
        const bool boot = policy_.isolation == Isolation::kBootPerRequest;
        ++(boot ? stats_.cold_starts : stats_.restored_starts);
        return Lease(shared_from_this(), *std::move(vm),
                     boot ? StartKind::kBooted : StartKind::kRestored, took,
                     waiting());
      }
      if (absl::Now() >= deadline) {
        ++stats_.throttles;
        waiting();
        return absl::ResourceExhaustedError(absl::StrFormat(
            "throttled: all %d sandboxes of the pool are in use "
            "(max_concurrency %d, %d leased, %d starting) and none came "
            "back within %s",
            policy_.max_concurrency, policy_.max_concurrency, leased_,
            starting_, absl::FormatDuration(absl::Now() - begin)));
      }
      if (!waited) {
        waited = true;
        ++stats_.queue_waits;
      }
      changed_.wait_until(lock, absl::ToChronoTime(deadline));
    }
  }

  absl::Status Return(std::unique_ptr<Vm> vm, bool discard) {
    const bool failed = !vm->failure().ok();
    bool drop = discard || failed ||
                policy_.isolation == Isolation::kRestorePerRequest ||
                policy_.isolation == Isolation::kBootPerRequest;
    absl::Status status;
    bool reset = false;
    if (!drop && policy_.isolation == Isolation::kResetPerRequest) {
      status = vm->Reset();
      reset = status.ok();
      drop = !reset;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --leased_;
      if (reset) ++stats_.resets;
      if (discard || failed || !status.ok()) ++stats_.discards;
      if (!drop && !closed_) idle_.push_back({std::move(vm), absl::Now()});
    }
    changed_.notify_all();
    vm.reset();  // dropped outside the lock: unmapping takes a while
    return status;
  }

  PoolStats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    PoolStats stats = stats_;
    stats.idle = static_cast<int>(idle_.size());
    stats.leased = leased_;
    stats.starting = starting_;
    return stats;
  }

  const PoolPolicy& policy() const { return policy_; }
  const Snapshot& snapshot() const { return snapshot_; }

 private:
  struct IdleVm {
    std::unique_ptr<Vm> vm;
    absl::Time since;  // returned (or made) at
  };

  int Total() const {
    return static_cast<int>(idle_.size()) + leased_ + starting_;
  }

  // A restored Vm, or a booted one for kBootPerRequest. Without the lock.
  absl::StatusOr<std::unique_ptr<Vm>> MakeVm() {
    if (policy_.isolation != Isolation::kBootPerRequest) {
      return snapshot_.Restore(policy_.restore);
    }
    return BootGuest(*recipe_);
  }

  // The maintainer: drops idle Vms past idle_reclaim beyond `provisioned`
  // and restores Vms while fewer than `provisioned` exist. It wakes when a
  // Vm comes back or is dropped, and at least every `tick`.
  void Maintain() {
    const absl::Duration tick = std::clamp(
        policy_.idle_reclaim / 4, absl::Milliseconds(10), absl::Seconds(1));
    absl::Duration retry_after = absl::ZeroDuration();
    std::unique_lock<std::mutex> lock(mutex_);
    while (!closed_) {
      std::vector<std::unique_ptr<Vm>> drop;
      const absl::Time now = absl::Now();
      for (auto it = idle_.begin();
           it != idle_.end() && Total() > policy_.provisioned;) {
        if (now - it->since >= policy_.idle_reclaim) {
          drop.push_back(std::move(it->vm));
          it = idle_.erase(it);
        } else {
          ++it;
        }
      }
      const bool top_up =
          Total() < policy_.provisioned && retry_after == absl::ZeroDuration();
      if (top_up) ++starting_;
      lock.unlock();
      if (!drop.empty()) {
        const uint64_t dropped = drop.size();
        drop.clear();  // counted once their memory is given back
        lock.lock();
        stats_.reclaimed += dropped;
        lock.unlock();
      }
      if (top_up) {
        auto vm = MakeVm();
        lock.lock();
        --starting_;
        if (vm.ok()) {
          idle_.push_back({*std::move(vm), absl::Now()});
          ++stats_.background_restores;
          lock.unlock();
          changed_.notify_all();
          lock.lock();
        } else {
          // A snapshot that stopped restoring (a deleted file, no
          // memory): try again later, not in a tight loop.
          ++stats_.start_failures;
          retry_after = absl::Seconds(1);
        }
        continue;
      }
      lock.lock();
      if (closed_) break;
      const absl::Duration wait =
          retry_after > absl::ZeroDuration() ? retry_after : tick;
      changed_.wait_for(lock, absl::ToChronoNanoseconds(wait));
      retry_after = absl::ZeroDuration();
    }
  }

  const Snapshot snapshot_;
  const PoolPolicy policy_;
  const std::optional<GuestRecipe> recipe_;

  mutable std::mutex mutex_;
  // Signalled when a Vm comes back, a slot frees, or the pool closes.
  std::condition_variable changed_;
  std::vector<IdleVm> idle_;  // the most recently returned last
  int leased_ = 0;
  int starting_ = 0;
  bool closed_ = false;
  PoolStats stats_;
  std::thread maintainer_;
};

}  // namespace internal

Lease::Lease(std::shared_ptr<internal::PoolCore> core, std::unique_ptr<Vm> vm,
             StartKind start, absl::Duration start_time,
             absl::Duration queue_wait)
    : core_(std::move(core)),
      vm_(std::move(vm)),
      start_(start),
      start_time_(start_time),
      queue_wait_(queue_wait) {}

Lease::Lease(Lease&& other) noexcept = default;

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    (void)Release();
    core_ = std::move(other.core_);
    vm_ = std::move(other.vm_);
    start_ = other.start_;
    start_time_ = other.start_time_;
    queue_wait_ = other.queue_wait_;
    discard_ = other.discard_;
  }
  return *this;
}

Lease::~Lease() { (void)Release(); }

absl::Status Lease::Release() {
  if (!vm_) return absl::OkStatus();
  std::shared_ptr<internal::PoolCore> core = std::move(core_);
  return core->Return(std::move(vm_), discard_);
}

namespace {

absl::Status CheckPolicy(const PoolPolicy& policy, bool has_recipe) {
  if (policy.max_concurrency < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("PoolPolicy.max_concurrency must be at least 1, not ",
                     policy.max_concurrency));
  }
  if (policy.provisioned < 0 || policy.provisioned > policy.max_concurrency) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PoolPolicy.provisioned must be from 0 to max_concurrency (",
        policy.max_concurrency, "), not ", policy.provisioned));
  }
  if (policy.idle_reclaim <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "PoolPolicy.idle_reclaim must be positive");
  }
  if (policy.isolation == Isolation::kResetPerRequest &&
      policy.restore.engine != RestoreEngine::kSharedBase) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PoolPolicy: isolation \"reset\" needs restore.engine \"shared\" "
        "(only shared-base clones can be reset), not \"",
        RestoreEngineName(policy.restore.engine), "\""));
  }
  if (policy.isolation == Isolation::kBootPerRequest && !has_recipe) {
    return absl::InvalidArgumentError(
        "PoolPolicy: isolation \"boot\" needs a guest to boot (Pool::Boot)");
  }
  return absl::OkStatus();
}

}  // namespace

Pool::Pool(std::shared_ptr<internal::PoolCore> core) : core_(std::move(core)) {}

Pool::~Pool() { core_->Close(); }

absl::StatusOr<std::unique_ptr<Pool>> Pool::Start(
    std::shared_ptr<internal::PoolCore> core) {
  if (absl::Status s = core->Start(); !s.ok()) return s;
  return std::unique_ptr<Pool>(new Pool(std::move(core)));
}

absl::StatusOr<std::unique_ptr<Pool>> Pool::Create(Snapshot snapshot,
                                                   PoolPolicy policy) {
  if (absl::Status s = CheckPolicy(policy, false); !s.ok()) return s;
  return Start(std::make_shared<internal::PoolCore>(
      std::move(snapshot), std::move(policy), std::nullopt));
}

absl::StatusOr<std::unique_ptr<Pool>> Pool::Boot(
    GuestRecipe recipe, const std::string& snapshot_path, PoolPolicy policy) {
  if (absl::Status s = CheckPolicy(policy, true); !s.ok()) return s;
  {
    auto vm = internal::BootGuest(recipe);
    if (!vm.ok()) return vm.status();
    if (absl::Status s = (*vm)->Snapshot(snapshot_path); !s.ok()) return s;
  }
  auto snapshot = Snapshot::Open(snapshot_path);
  if (!snapshot.ok()) return snapshot.status();
  return Start(std::make_shared<internal::PoolCore>(
      *std::move(snapshot), std::move(policy), std::move(recipe)));
}

absl::StatusOr<Lease> Pool::Acquire(absl::Time deadline) {
  return core_->Acquire(deadline);
}

PoolStats Pool::stats() const { return core_->stats(); }
const PoolPolicy& Pool::policy() const { return core_->policy(); }
const Snapshot& Pool::snapshot() const { return core_->snapshot(); }

}  // namespace thaw
