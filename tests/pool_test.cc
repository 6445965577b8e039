// thaw::Pool, observed as a FaaS layer would: leases never shared, throttling
// at the limit, failed sandboxes replaced, idle ones reclaimed (memory given
// back), and isolation between requests. The pool sits above Vm and never
// touches a backend, so these run on the emulated backend; Linux programs
// are pooled too.
#include "thaw/pool.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace thaw {
namespace {

using ::testing::HasSubstr;

class PoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat(
               "thaw-pool-test-", getpid(), "-",
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static GuestRecipe TestGuest(uint64_t memory = 32ull << 20) {
    GuestRecipe recipe;
    recipe.config.backend = BackendKind::kEmulated;
    recipe.config.memory_size = memory;
    recipe.config.call_timeout = absl::Seconds(2);
    recipe.path = THAW_TEST_GUEST;
    return recipe;
  }
  static PoolPolicy Policy(Isolation isolation, int max, int provisioned = 0) {
    PoolPolicy policy;
    policy.isolation = isolation;
    policy.max_concurrency = max;
    policy.provisioned = provisioned;
    policy.restore.backend = BackendKind::kEmulated;
    policy.restore.engine = isolation == Isolation::kResetPerRequest
                                ? RestoreEngine::kSharedBase
                                : RestoreEngine::kLazy;
    policy.restore.call_timeout = absl::Milliseconds(500);
    return policy;
  }
  std::unique_ptr<Pool> MakePool(const PoolPolicy& policy,
                                 GuestRecipe recipe = TestGuest()) {
    auto pool = Pool::Boot(recipe, (dir_ / "guest.snap").string(), policy);
    EXPECT_TRUE(pool.ok()) << pool.status();
    return pool.ok() ? *std::move(pool) : nullptr;
  }

  std::filesystem::path dir_;
};

// Resident memory of this process, from /proc/self/statm.
uint64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

absl::Time Soon() { return absl::Now() + absl::Seconds(5); }

TEST_F(PoolTest, LeasesAreNeverSharedBetweenCallers) {
  auto pool = MakePool(Policy(Isolation::kReuseWarm, 3, 1));
  ASSERT_NE(pool, nullptr);
  std::mutex mutex;
  std::set<Vm*> held;
  std::atomic<int> shared{0}, calls{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 15; ++i) {
        auto lease = pool->Acquire(Soon());
        ASSERT_TRUE(lease.ok()) << lease.status();
        Vm* vm = &lease->vm();
        {
          std::lock_guard<std::mutex> lock(mutex);
          if (!held.insert(vm).second) ++shared;
        }
        auto reply = (*lease)->Call("echo", "x");
        EXPECT_TRUE(reply.ok()) << reply.status();
        ++calls;
        std::lock_guard<std::mutex> lock(mutex);
        held.erase(vm);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(shared.load(), 0);
  EXPECT_EQ(calls.load(), 90);
  const PoolStats stats = pool->stats();
  EXPECT_LE(stats.idle + stats.leased + stats.starting, 3);
  EXPECT_EQ(stats.warm_starts + stats.restored_starts, 90u);
  EXPECT_GE(stats.warm_starts, 80u);  // at most 3 Vms were ever restored
}

TEST_F(PoolTest, ThrottlesAtTheConcurrencyLimit) {
  auto pool = MakePool(Policy(Isolation::kReuseWarm, 2));
  ASSERT_NE(pool, nullptr);
  auto first = pool->Acquire(Soon());
  auto second = pool->Acquire(Soon());
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->start(), StartKind::kRestored);
  EXPECT_GT(first->start_time(), absl::ZeroDuration());

  // A third caller with no time to wait is refused at once...
  auto third = pool->Acquire(absl::Now());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("throttled"));
  // ...one with a deadline after the wait ...
  const absl::Time before = absl::Now();
  third = pool->Acquire(absl::Now() + absl::Milliseconds(100));
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_GE(absl::Now() - before, absl::Milliseconds(100));
  // ...and one that waits gets the Vm a caller returns, warm.
  std::thread giver([&] {
    absl::SleepFor(absl::Milliseconds(50));
    ASSERT_TRUE(first->Release().ok());
  });
  third = pool->Acquire(Soon());
  giver.join();
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->start(), StartKind::kWarm);
  EXPECT_GT(third->queue_wait(), absl::ZeroDuration());
  const PoolStats stats = pool->stats();
  EXPECT_EQ(stats.throttles, 2u);
  EXPECT_EQ(stats.queue_waits, 2u);  // the second refusal and the success
  EXPECT_EQ(stats.leased, 2);
}

TEST_F(PoolTest, AFaultedOrTimedOutSandboxIsReplacedNeverReused) {
  auto pool = MakePool(Policy(Isolation::kReuseWarm, 1, 1));
  ASSERT_NE(pool, nullptr);
  Vm* faulted = nullptr;
  {
    auto lease = pool->Acquire(Soon());
    ASSERT_TRUE(lease.ok());
    EXPECT_EQ(lease->start(), StartKind::kWarm);  // provisioned
    faulted = &lease->vm();
    auto reply = (*lease)->Call("null_deref", "");
    EXPECT_EQ(reply.status().code(), absl::StatusCode::kAborted);
  }
  {
    auto lease = pool->Acquire(Soon());
    ASSERT_TRUE(lease.ok());
    EXPECT_NE(&lease->vm(), faulted);
    EXPECT_TRUE((*lease)->failure().ok());
    auto reply = (*lease)->Call("echo", "ok");
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(*reply, "ok");
    reply = (*lease)->Call("spin", "0");  // forever: times out
    EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded);
  }
  auto lease = pool->Acquire(Soon());
  ASSERT_TRUE(lease.ok());
  auto reply = (*lease)->Call("echo", "again");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(pool->stats().discards, 2u);
  // A lease the caller distrusts is dropped as well.
  lease->Discard();
  ASSERT_TRUE(lease->Release().ok());
  EXPECT_EQ(pool->stats().discards, 3u);
}

TEST_F(PoolTest, IdleSandboxesAreReclaimedAndTheirMemoryGivenBack) {
  PoolPolicy policy = Policy(Isolation::kReuseWarm, 4, 1);
  policy.idle_reclaim = absl::Milliseconds(300);
  policy.restore.call_timeout = absl::Minutes(2);  // slow under ASan
  GuestRecipe recipe = TestGuest(64ull << 20);
  recipe.config.output_buffer_size = 16ull << 20;
  auto pool = MakePool(policy, recipe);
  ASSERT_NE(pool, nullptr);
  const uint64_t before = ResidentBytes();
  {
    std::vector<Lease> leases;
    for (int i = 0; i < 4; ++i) {
      auto lease = pool->Acquire(Soon());
      ASSERT_TRUE(lease.ok()) << lease.status();
      // 8 MiB of heap, written: resident until the Vm is dropped.
      auto reply = (*lease)->Call("reply_bytes", "8388608");
      ASSERT_TRUE(reply.ok()) << reply.status();
      leases.push_back(*std::move(lease));
    }
  }
  const uint64_t busy = ResidentBytes();
  EXPECT_EQ(pool->stats().idle, 4);
  EXPECT_GT(busy, before + (28ull << 20));
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (pool->stats().reclaimed < 3 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  const PoolStats stats = pool->stats();
  EXPECT_EQ(stats.idle, 1);  // the provisioned one stays
  EXPECT_EQ(stats.reclaimed, 3u);
  const uint64_t after = ResidentBytes();
  EXPECT_LT(after, busy - (20ull << 20))
      << "before " << before << " busy " << busy << " after " << after;
}

TEST_F(PoolTest, ResetIsolationHidesOneRequestsWritesFromTheNext) {
  auto pool = MakePool(Policy(Isolation::kResetPerRequest, 2, 1));
  ASSERT_NE(pool, nullptr);
  for (int i = 0; i < 5; ++i) {
    auto lease = pool->Acquire(Soon());
    ASSERT_TRUE(lease.ok()) << lease.status();
    auto first = (*lease)->Call("count", "");
    auto second = (*lease)->Call("count", "");
    ASSERT_TRUE(first.ok() && second.ok());
    EXPECT_EQ(*first, "1");  // never a value written by an earlier request
    EXPECT_EQ(*second, "2");
  }
  EXPECT_EQ(pool->stats().resets, 5u);
  EXPECT_EQ(pool->stats().warm_starts, 5u);

  // Reuse keeps the state, as its name says; restore-per-request does not.
  auto reuse = MakePool(Policy(Isolation::kReuseWarm, 1, 1));
  ASSERT_NE(reuse, nullptr);
  std::string last;
  for (int i = 0; i < 3; ++i) {
    auto lease = reuse->Acquire(Soon());
    ASSERT_TRUE(lease.ok());
    last = *(*lease)->Call("count", "");
  }
  EXPECT_EQ(last, "3");
  auto fresh = MakePool(Policy(Isolation::kRestorePerRequest, 1, 1));
  ASSERT_NE(fresh, nullptr);
  for (int i = 0; i < 3; ++i) {
    auto lease = fresh->Acquire(Soon());
    ASSERT_TRUE(lease.ok()) << lease.status();
    EXPECT_EQ(*(*lease)->Call("count", ""), "1");
  }
}

TEST_F(PoolTest, BootPerRequestBootsEachSandbox) {
  auto pool = MakePool(Policy(Isolation::kBootPerRequest, 1));
  ASSERT_NE(pool, nullptr);
  auto lease = pool->Acquire(Soon());
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->start(), StartKind::kBooted);
  EXPECT_EQ(*(*lease)->Call("init_ran", ""), "yes");
  ASSERT_TRUE(lease->Release().ok());
  EXPECT_EQ(pool->stats().cold_starts, 1u);
}

TEST_F(PoolTest, PoolsLinuxPrograms) {
  GuestRecipe recipe;
  recipe.config.backend = BackendKind::kEmulated;
  recipe.config.guest_kind = GuestKind::kLinuxProgram;
  recipe.config.memory_size = 64ull << 20;
  recipe.path = THAW_TEST_PROGRAM;
  auto pool = MakePool(Policy(Isolation::kResetPerRequest, 2, 1), recipe);
  ASSERT_NE(pool, nullptr);
  for (int i = 0; i < 3; ++i) {
    auto lease = pool->Acquire(Soon());
    ASSERT_TRUE(lease.ok()) << lease.status();
    auto reply = (*lease)->Call("echo", "hello");
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(*reply, "hello");
  }
  EXPECT_EQ(pool->stats().resets, 3u);
}

TEST_F(PoolTest, RejectsPoliciesThatCannotWork) {
  auto snapshot_path = (dir_ / "guest.snap").string();
  PoolPolicy bad = Policy(Isolation::kReuseWarm, 0);
  auto pool = Pool::Boot(TestGuest(), snapshot_path, bad);
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(pool.status().message(), HasSubstr("max_concurrency"));
  bad = Policy(Isolation::kReuseWarm, 2, 3);
  EXPECT_THAT(Pool::Boot(TestGuest(), snapshot_path, bad).status().message(),
              HasSubstr("provisioned"));
  bad = Policy(Isolation::kResetPerRequest, 2);
  bad.restore.engine = RestoreEngine::kEager;
  EXPECT_THAT(Pool::Boot(TestGuest(), snapshot_path, bad).status().message(),
              HasSubstr("needs restore.engine \"shared\""));
  // Booting needs a guest; a snapshot alone cannot boot.
  ASSERT_NE(MakePool(Policy(Isolation::kReuseWarm, 1)), nullptr);
  auto snapshot = Snapshot::Open(snapshot_path);
  ASSERT_TRUE(snapshot.ok());
  EXPECT_THAT(Pool::Create(*snapshot, Policy(Isolation::kBootPerRequest, 1))
                  .status()
                  .message(),
              HasSubstr("needs a guest to boot"));
}

TEST_F(PoolTest, AnInitThatFailsIsReportedWithItsConsole) {
  GuestRecipe recipe = TestGuest();
  recipe.path = THAW_BAD_INIT_GUEST;
  auto pool = Pool::Boot(recipe, (dir_ / "guest.snap").string(),
                         Policy(Isolation::kReuseWarm, 1));
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(pool.status().message(), HasSubstr("model file missing"));
  EXPECT_THAT(pool.status().message(), HasSubstr("loading the model..."));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "guest.snap"));
  recipe.path = (dir_ / "missing.elf").string();
  pool = Pool::Boot(recipe, (dir_ / "guest.snap").string(),
                    Policy(Isolation::kReuseWarm, 1));
  EXPECT_THAT(pool.status().message(), HasSubstr("missing.elf"));
}

TEST_F(PoolTest, LeasesMayOutliveThePool) {
  auto pool = MakePool(Policy(Isolation::kResetPerRequest, 2, 1));
  ASSERT_NE(pool, nullptr);
  auto lease = pool->Acquire(Soon());
  ASSERT_TRUE(lease.ok());
  pool.reset();
  auto reply = (*lease)->Call("echo", "still here");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(lease->Release().ok());
}

}  // namespace
}  // namespace thaw
