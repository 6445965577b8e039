// Stress: 1000 restores per engine from 8 threads at once, each restored Vm
// called (and, on the shared base, reset and called again), with the
// process's descriptors and resident memory checked before and after; and a
// loop that snapshots, restores and deletes files, which must leave no
// temporary file behind.
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "thaw/snapshot.h"
#include "thaw/vm.h"

namespace thaw {
namespace {

constexpr int kThreads = 8;
constexpr int kRestores = 1000;

int OpenDescriptors() {
  int n = 0;
  for (auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)entry;
    ++n;
  }
  return n;
}

uint64_t ResidentMiB() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE) >> 20;
}

class StressTest : public ::testing::TestWithParam<RestoreEngine> {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::filesystem::path(std::filesystem::temp_directory_path() /
                                     absl::StrCat("thaw-stress-", getpid()));
    std::filesystem::create_directories(*dir_);
    VmConfig config;
    config.backend = BackendKind::kEmulated;
    config.memory_size = 32ull << 20;
    auto vm = Vm::Create(config);
    ASSERT_TRUE(vm.ok()) << vm.status();
    ASSERT_TRUE((*vm)->LoadGuest(THAW_SNAPSHOT_GUEST).ok());
    ASSERT_TRUE((*vm)->Boot().ok());
    ASSERT_TRUE((*vm)->Snapshot((*dir_ / "base.thaw").string()).ok());
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  static std::filesystem::path* dir_;
};
std::filesystem::path* StressTest::dir_ = nullptr;

TEST_P(StressTest, ThousandRestoresFromEightThreadsLeaveNothingBehind) {
  auto snapshot = Snapshot::Open((*dir_ / "base.thaw").string());
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  RestoreOptions options;
  options.backend = BackendKind::kEmulated;
  options.engine = GetParam();
  // Warm-up: the shared base, allocator arenas, thread stacks.
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(snapshot->Restore(options).ok());
  const int fds = OpenDescriptors();
  const uint64_t rss = ResidentMiB();
  const absl::Time start = absl::Now();
  std::atomic<int> next{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      while (next.fetch_add(1) < kRestores) {
        auto vm = snapshot->Restore(options);
        if (!vm.ok()) {
          ++failures;
          continue;
        }
        auto reply = (*vm)->Call("counter", "");
        if (!reply.ok()) ++failures;
        if (GetParam() == RestoreEngine::kSharedBase) {
          if (!(*vm)->Reset().ok()) ++failures;
          reply = (*vm)->Call("counter", "");
          if (!reply.ok()) ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const int fds_after = OpenDescriptors();
  const uint64_t rss_after = ResidentMiB();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(fds_after, fds);
  // Freed Vms give their memory back; allocator caches may keep a little.
  EXPECT_LT(rss_after, rss + 64) << "from " << rss << " MiB";
  // For the benchmark report (scripts/bench.sh): one JSON line per engine.
  if (const char* out = std::getenv("THAW_STRESS_OUT")) {
    std::ofstream(out, std::ios::app) << absl::StrFormat(
        "{\"engine\": \"%s\", \"restores\": %d, \"threads\": %d, "
        "\"seconds\": %.3f, \"failures\": %d, \"fds_before\": %d, "
        "\"fds_after\": %d, \"rss_before_mib\": %d, \"rss_after_mib\": "
        "%d}\n",
        RestoreEngineName(GetParam()), kRestores, kThreads, seconds,
        failures.load(), fds, fds_after, rss, rss_after);
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, StressTest,
                         ::testing::ValuesIn(kRestoreEngines),
                         [](const auto& info) {
                           return std::string(RestoreEngineName(info.param));
                         });

TEST_F(StressTest, SnapshotRestoreDeleteLoopLeavesNoTemporaryFiles) {
  const std::filesystem::path loop = *dir_ / "loop";
  std::filesystem::create_directories(loop);
  RestoreOptions options;
  options.backend = BackendKind::kEmulated;
  options.engine = RestoreEngine::kLazy;
  auto vm = Vm::Restore((*dir_ / "base.thaw").string(), options);
  ASSERT_TRUE(vm.ok()) << vm.status();
  const int fds = OpenDescriptors();
  for (int i = 0; i < 100; ++i) {
    const std::string path = (loop / absl::StrCat("s", i, ".thaw")).string();
    ASSERT_TRUE((*vm)->Call("counter", "").ok());
    ASSERT_TRUE((*vm)->Snapshot(path).ok());
    auto copy = Vm::Restore(path, options);
    ASSERT_TRUE(copy.ok()) << copy.status();
    ASSERT_TRUE((*copy)->Call("counter", "").ok());
    copy->reset();
    std::filesystem::remove(path);
  }
  EXPECT_TRUE(std::filesystem::is_empty(loop));
  EXPECT_EQ(OpenDescriptors(), fds);
}

}  // namespace
}  // namespace thaw
