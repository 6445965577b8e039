// Snapshot and restore as a user sees them, on every backend: the restored
// Vm behaves as the original would, each engine reads what it should (and
// only that, counted), clones are unique, resets and diffs restore exactly
// the right bytes.
#include "thaw/snapshot.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "snapshot/snapshot_file.h"
#include "tests/backend_param.h"
#include "thaw/abi.h"
#include "thaw/signing.h"
#include "thaw/vm.h"

namespace thaw {
namespace {

using ::testing::HasSubstr;

// Compares two memory images without printing megabytes: the first
// differing offset and the number of differing pages.
::testing::AssertionResult SameMemory(const std::string& actual,
                                      const std::string& expected) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure()
           << "sizes differ: " << actual.size() << " vs " << expected.size();
  }
  uint64_t first = actual.size(), pages = 0;
  for (uint64_t page = 0; page < actual.size(); page += 4096) {
    if (std::memcmp(actual.data() + page, expected.data() + page, 4096) != 0) {
      ++pages;
      if (first == actual.size()) {
        first = page;
        while (actual[first] == expected[first]) ++first;
      }
    }
  }
  if (pages == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << pages << " pages differ, the first at byte 0x" << std::hex << first;
}

uint64_t AsU64(const std::string& reply, size_t index = 0) {
  uint64_t value = 0;
  if (reply.size() >= (index + 1) * 8) {
    std::memcpy(&value, reply.data() + index * 8, 8);
  }
  return value;
}

// A fresh directory per test, removed afterwards.
std::string TestDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = absl::StrCat(info->test_suite_name(), "_", info->name());
  for (char& c : name) {
    if (c == '/') c = '_';
  }
  std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) /
                              absl::StrCat("thaw_", getpid(), "_", name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

// What every snapshot test needs, for one backend: a scratch directory,
// configs and options on that backend, boot, restore and call helpers.
class SnapshotHelpers {
 protected:
  // Sets the backend and the scratch directory; false if the test skips.
  bool Prepare(BackendKind backend) {
    backend_ = backend;
    testing::RequireBackend(backend);
    if (::testing::Test::IsSkipped() || ::testing::Test::HasFatalFailure()) {
      return false;
    }
    dir_ = TestDir();
    return true;
  }
  void CleanUp() {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::string Path(const std::string& name) { return dir_ + "/" + name; }

  VmConfig Config(uint64_t memory = 64ull << 20) {
    VmConfig config;
    config.backend = backend_;
    config.memory_size = memory;
    config.call_timeout = absl::Seconds(60);  // sanitizer builds are slow
    return config;
  }

  std::unique_ptr<Vm> Boot(const VmConfig& config) {
    auto vm = Vm::Create(config);
    EXPECT_TRUE(vm.ok()) << vm.status();
    if (!vm.ok()) return nullptr;
    absl::Status s = (*vm)->LoadGuest(THAW_SNAPSHOT_GUEST);
    EXPECT_TRUE(s.ok()) << s;
    s = (*vm)->Boot();
    EXPECT_TRUE(s.ok()) << s;
    return *std::move(vm);
  }

  // Boots a 32 MiB snapshot guest and snapshots it to "fn.thaw"; returns
  // the path, or "" after reporting why not.
  std::string BootAndSnapshot() {
    auto vm = Boot(Config(32ull << 20));
    if (vm == nullptr) return "";
    const std::string path = Path("fn.thaw");
    absl::Status s = vm->Snapshot(path);
    EXPECT_TRUE(s.ok()) << s;
    return s.ok() ? path : "";
  }

  // Boots, snapshots to `path`, and records into it the working set of
  // `function(input)` on a lazy restore; returns the booted Vm's reply to
  // that call, or "" after reporting what failed.
  std::string SnapshotWithWorkingSet(const std::string& path,
                                     const std::string& function,
                                     const std::string& input) {
    auto vm = Boot(Config());
    if (vm == nullptr) return "";
    if (absl::Status s = vm->Snapshot(path); !s.ok()) {
      ADD_FAILURE() << s;
      return "";
    }
    const std::string expected = Call(*vm, function, input);
    auto recorder = Restore(path, RestoreEngine::kLazy, /*record=*/true);
    if (recorder == nullptr) return "";
    EXPECT_EQ(Call(*recorder, function, input), expected);
    if (absl::Status s = recorder->WriteWorkingSet(); !s.ok()) {
      ADD_FAILURE() << s;
      return "";
    }
    return expected;
  }

  RestoreOptions Options(RestoreEngine engine) {
    RestoreOptions options;
    options.engine = engine;
    options.backend = backend_;
    options.call_timeout = absl::Seconds(60);
    return options;
  }

  std::unique_ptr<Vm> Restore(const std::string& path, RestoreEngine engine,
                              bool record = false) {
    RestoreOptions options = Options(engine);
    options.record_working_set = record;
    auto vm = Vm::Restore(path, options);
    EXPECT_TRUE(vm.ok()) << RestoreEngineName(engine) << ": " << vm.status();
    return vm.ok() ? *std::move(vm) : nullptr;
  }

  std::string Call(Vm& vm, const std::string& function,
                   const std::string& input = "") {
    auto reply = vm.Call(function, input);
    EXPECT_TRUE(reply.ok()) << function << ": " << reply.status();
    return reply.ok() ? *reply : "";
  }

  // All guest memory but the boot-info page, which every restore rewrites.
  std::string MemoryWithoutBootInfo(Vm& vm) {
    auto bytes = vm.ReadGuestMemory(0, vm.config().memory_size);
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    if (!bytes.ok()) return "";
    std::memset(bytes->data() + THAW_BOOT_INFO_ADDR, 0, 4096);
    return *bytes;
  }

  BackendKind backend_ = BackendKind::kEmulated;
  std::string dir_;
};

class SnapshotTest : public testing::BackendTest, public SnapshotHelpers {
 protected:
  void SetUp() override { Prepare(GetParam()); }
  void TearDown() override { CleanUp(); }
};

// The tests whose behaviour every engine must show, one instance per
// (backend, engine): one engine's failure hides no other.
class SnapshotEngineTest
    : public ::testing::TestWithParam<std::tuple<BackendKind, RestoreEngine>>,
      public SnapshotHelpers {
 protected:
  void SetUp() override { Prepare(std::get<0>(GetParam())); }
  void TearDown() override { CleanUp(); }
  RestoreEngine engine() const { return std::get<1>(GetParam()); }
};

std::string EngineTestName(
    const ::testing::TestParamInfo<std::tuple<BackendKind, RestoreEngine>>&
        info) {
  return absl::StrCat(RestoreEngineName(std::get<1>(info.param)), "_",
                      testing::BackendSuffix(std::get<0>(info.param)));
}

TEST_P(SnapshotEngineTest, RestoresAVmThatAnswersAsTheOriginalWould) {
  auto vm = Boot(Config());
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(AsU64(Call(*vm, "counter")), 1u);
  const std::string sum = Call(*vm, "table_sum");
  Call(*vm, "set_lstar", "140733498807928");  // 0x7FFF12345678 (canonical)
  const std::string path = Path("fn.thaw");
  ASSERT_TRUE(vm->Snapshot(path).ok());
  // The original goes on from where the snapshot was taken...
  EXPECT_EQ(AsU64(Call(*vm, "counter")), 2u);
  // ...and so does a restore of it, on this engine.
  auto restored = Restore(path, engine());
  ASSERT_NE(restored, nullptr);
  EXPECT_EQ(restored->backend(), backend_);
  EXPECT_EQ(restored->restore_stats().engine, engine());
  EXPECT_EQ(AsU64(Call(*restored, "counter")), 2u);
  EXPECT_EQ(Call(*restored, "table_sum"), sum);
  EXPECT_EQ(AsU64(Call(*restored, "fpu", "7")), 10u);
  EXPECT_EQ(AsU64(Call(*restored, "get_lstar")), 0x7FFF12345678u);
  EXPECT_GT(restored->report().restore, absl::ZeroDuration());
  // Reads that could not use io_uring are counted, never more than were
  // read (which engine reads what is the memory-source tests' business).
  const RestoreStats stats = restored->restore_stats();
  EXPECT_LE(stats.reads_without_io_uring, stats.chunks_read + stats.prefetched);
  // The guest's symbols travel with the snapshot.
  EXPECT_TRUE(restored->FindGuestSymbol("thaw_main").ok());
}

TEST_P(SnapshotTest, ClonesOfOneSnapshotGetFreshEntropyAndANewGeneration) {
  auto vm = Boot(Config());
  ASSERT_NE(vm, nullptr);
  const std::string path = Path("fn.thaw");
  ASSERT_TRUE(vm->Snapshot(path).ok());
  const std::string original = Call(*vm, "random");
  auto a = Restore(path, RestoreEngine::kSharedBase);
  auto b = Restore(path, RestoreEngine::kSharedBase);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const std::string from_a = Call(*a, "random");
  const std::string from_b = Call(*b, "random");
  EXPECT_EQ(from_a.size(), 16u);
  EXPECT_NE(from_a, from_b);
  EXPECT_NE(from_a, original);
  // Generation 1, and the after-restore hook ran once, before the call.
  const std::string generation = Call(*a, "generation");
  EXPECT_EQ(AsU64(generation, 0), 1u);
  EXPECT_EQ(AsU64(generation, 1), 1u);
  const std::string booted = Call(*vm, "generation");
  EXPECT_EQ(AsU64(booted, 0), 0u);
  EXPECT_EQ(AsU64(booted, 1), 0u);
}

TEST_P(SnapshotTest, ASecretTheBeforeSnapshotHookZeroesIsNotInTheFile) {
  auto vm = Boot(Config());
  ASSERT_NE(vm, nullptr);
  const std::string where = Call(*vm, "secrets");
  auto secret = vm->ReadGuestMemory(AsU64(where, 0), 17);
  ASSERT_TRUE(secret.ok());
  ASSERT_EQ(*secret, "THAW-SECRET-TOKEN");  // in memory before the snapshot
  const std::string path = Path("fn.thaw");
  ASSERT_TRUE(vm->Snapshot(path).ok());

  auto image = snapshot::SnapshotImage::Open(path);
  ASSERT_TRUE(image.ok()) << image.status();
  std::string memory((*image)->memory_size(), '\0');
  const uint32_t chunk = (*image)->chunk_size();
  for (uint64_t c = 0; c < (*image)->chunk_count(); ++c) {
    ASSERT_TRUE((*image)
                    ->ReadChunk(c, absl::MakeSpan(reinterpret_cast<uint8_t*>(
                                                      memory.data()) +
                                                      c * chunk,
                                                  chunk))
                    .ok());
  }
  EXPECT_FALSE(absl::StrContains(memory, "THAW-SECRET-TOKEN"));
  // The search does find what the hook left alone.
  EXPECT_TRUE(absl::StrContains(memory, "THAW-KEEP-ME"));
}

TEST_P(SnapshotTest, LazyRestoreOfA1GiBGuestReadsOnlyTheChunksItsCallTouches) {
  auto vm = Boot(Config(1ull << 30));
  ASSERT_NE(vm, nullptr);
  const std::string path = Path("big.thaw");
  ASSERT_TRUE(vm->Snapshot(path).ok());
  auto info = InspectSnapshot(path);
  ASSERT_TRUE(info.ok());
  const uint64_t stored_chunks =
      info->chunks - info->zero_chunks - info->parent_chunks;
  EXPECT_GE(stored_chunks, (64u << 20) / info->chunk_size);  // the table

  auto restored = Restore(path, RestoreEngine::kLazy);
  ASSERT_NE(restored, nullptr);
  const uint64_t touched = 10u << 20;
  EXPECT_EQ(Call(*restored, "touch", std::to_string(touched)),
            Call(*vm, "touch", std::to_string(touched)));
  RestoreStats stats = restored->restore_stats();
  const uint64_t table_chunks = touched / info->chunk_size;  // 160
  // The table's chunks, plus the few holding code, stack, globals, the
  // boot-info page and the call buffers.
  EXPECT_GE(stats.chunks_read, table_chunks);
  EXPECT_LE(stats.chunks_read, table_chunks + 24);
  EXPECT_LT(stats.chunks_read, stored_chunks / 4);
  EXPECT_GE(stats.faults, stats.chunks_read);
  EXPECT_EQ(stats.prefetched, 0u);
}

TEST_P(SnapshotTest, PrefetchOfARecordedWorkingSetTakesFewerFaults) {
  const std::string path = Path("fn.thaw");
  const std::string input = std::to_string(8u << 20);
  const std::string expected = SnapshotWithWorkingSet(path, "touch", input);
  ASSERT_FALSE(expected.empty());
  auto info = InspectSnapshot(path);
  ASSERT_TRUE(info.ok());
  EXPECT_GE(info->working_set_chunks, (8u << 20) / info->chunk_size);
  ASSERT_TRUE(VerifySnapshot(path).ok());

  auto lazy = Restore(path, RestoreEngine::kLazy);
  ASSERT_NE(lazy, nullptr);
  EXPECT_EQ(Call(*lazy, "touch", input), expected);
  auto prefetch = Restore(path, RestoreEngine::kLazyPrefetch);
  ASSERT_NE(prefetch, nullptr);
  EXPECT_EQ(Call(*prefetch, "touch", input), expected);
  const RestoreStats lazy_stats = lazy->restore_stats();
  const RestoreStats prefetch_stats = prefetch->restore_stats();
  // The recorded working set was stored raw: it is mapped from the file,
  // not read and decompressed, and takes no faults.
  EXPECT_GE(prefetch_stats.mapped, (8u << 20) / info->chunk_size);
  EXPECT_LT(prefetch_stats.faults, lazy_stats.faults);
  EXPECT_LT(prefetch_stats.chunks_read, lazy_stats.chunks_read);
}

TEST_P(SnapshotTest, PrefetchMakesThePagesTheRecordedCallWrotePrivateUpFront) {
  auto vm = Boot(Config());
  ASSERT_NE(vm, nullptr);
  const std::string path = Path("fn.thaw");
  ASSERT_TRUE(vm->Snapshot(path).ok());
  auto recorder = Restore(path, RestoreEngine::kLazy, /*record=*/true);
  ASSERT_NE(recorder, nullptr);
  EXPECT_EQ(AsU64(Call(*recorder, "dirty", "16")), 16u);
  ASSERT_TRUE(recorder->WriteWorkingSet().ok());
  ASSERT_TRUE(VerifySnapshot(path).ok());

  auto lazy = Restore(path, RestoreEngine::kLazy);
  auto prefetch = Restore(path, RestoreEngine::kLazyPrefetch);
  ASSERT_NE(lazy, nullptr);
  ASSERT_NE(prefetch, nullptr);
  // Filled in before the guest ran: the written pages made private, the
  // rest of the mapped working set's entries present...
  const RestoreStats stats = prefetch->restore_stats();
  EXPECT_GE(stats.pages_made_private, 16u);
  EXPECT_GE(stats.populated_pages, stats.pages_made_private);
  EXPECT_EQ(stats.faults, 0u);
  // ... and still the snapshot's bytes, as a lazy restore serves them.
  EXPECT_TRUE(SameMemory(MemoryWithoutBootInfo(*prefetch),
                         MemoryWithoutBootInfo(*lazy)));
  EXPECT_EQ(AsU64(Call(*prefetch, "dirty", "16")), 16u);
  EXPECT_EQ(AsU64(Call(*prefetch, "counter")), 1u);
  // The file was never written through the private pages.
  auto again = Restore(path, RestoreEngine::kLazyPrefetch);
  ASSERT_NE(again, nullptr);
  EXPECT_TRUE(
      SameMemory(MemoryWithoutBootInfo(*again), MemoryWithoutBootInfo(*lazy)));
}

// Drops `path` from the page cache (as on a host that never read it) and
// returns the fraction of its pages still cached afterwards.
double EvictFromPageCache(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 1.0;
  fdatasync(fd);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  struct stat st {};
  fstat(fd, &st);
  const size_t pages = (st.st_size + 4095) / 4096;
  void* view = mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (view == MAP_FAILED) return 1.0;
  std::vector<unsigned char> resident(pages);
  mincore(view, st.st_size, resident.data());
  munmap(view, st.st_size);
  size_t cached = 0;
  for (unsigned char r : resident) cached += r & 1;
  return static_cast<double>(cached) / pages;
}

TEST_P(SnapshotTest, RestoresFromAColdPageCacheReadTheFileAndAnswerTheSame) {
  const std::string path = Path("fn.thaw");
  const std::string input = std::to_string(8u << 20);
  const std::string expected = SnapshotWithWorkingSet(path, "touch", input);
  ASSERT_FALSE(expected.empty());
  struct statfs fs {};
  ASSERT_EQ(statfs(path.c_str(), &fs), 0);
  if (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC) {
    // The QEMU harness's root file system lives in memory: nothing there
    // can be evicted. The emulated run covers the page cache, which the
    // backend does not change.
    GTEST_SKIP() << path << " is on a file system held in memory";
  }

  for (RestoreEngine engine :
       {RestoreEngine::kLazyPrefetch, RestoreEngine::kLazy,
        RestoreEngine::kEager, RestoreEngine::kSharedBase}) {
    // The premise: the file really is out of the page cache.
    ASSERT_LT(EvictFromPageCache(path), 0.5) << RestoreEngineName(engine);
    auto restored = Restore(path, engine);
    ASSERT_NE(restored, nullptr);
    EXPECT_EQ(Call(*restored, "touch", input), expected)
        << RestoreEngineName(engine);
    if (engine == RestoreEngine::kLazyPrefetch) {
      // Mapped from the file, read ahead and filled before the guest ran.
      const RestoreStats stats = restored->restore_stats();
      EXPECT_GE(stats.mapped, (8u << 20) / (64u << 10));
      EXPECT_GE(stats.populated_pages, (8u << 20) / 4096);
      EXPECT_EQ(stats.faults, 0u);
    }
  }
}

TEST_P(SnapshotTest, HundredSharedBaseClonesEachKeepTheirOwnWrites) {
  const std::string path = BootAndSnapshot();
  ASSERT_FALSE(path.empty());
  auto snapshot = Snapshot::Open(path);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  std::vector<std::unique_ptr<Vm>> clones;
  for (int i = 0; i < 100; ++i) {
    auto clone = snapshot->Restore(Options(RestoreEngine::kSharedBase));
    ASSERT_TRUE(clone.ok()) << clone.status();
    // The handle decompresses once; every later clone maps its image.
    EXPECT_EQ((*clone)->restore_stats().shared_base_built, i == 0);
    clones.push_back(*std::move(clone));
  }
  for (int i = 0; i < 100; ++i) {
    for (int k = 0; k < i % 4; ++k) Call(*clones[i], "counter");
    Call(*clones[i], "dirty", std::to_string(i % 7 + 1));
  }
  for (int i = 0; i < 100; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(AsU64(Call(*clones[i], "counter")), uint64_t(i % 4 + 1));
  }
}

// The handle owns the shared base: no process-wide cache keeps an image
// alive behind the user's back, and no clone loses its memory early.
TEST_P(SnapshotTest, TheSnapshotHandleDecidesHowLongASharedBaseLives) {
  const std::string path = BootAndSnapshot();
  ASSERT_FALSE(path.empty());
  const RestoreOptions shared = Options(RestoreEngine::kSharedBase);
  // Vm::Restore keeps no handle: each one builds its own base.
  for (int i = 0; i < 2; ++i) {
    auto one = Vm::Restore(path, shared);
    ASSERT_TRUE(one.ok()) << one.status();
    EXPECT_TRUE((*one)->restore_stats().shared_base_built);
  }
  std::unique_ptr<Vm> survivor;
  {
    auto snapshot = Snapshot::Open(path);
    ASSERT_TRUE(snapshot.ok());
    Snapshot copy = *snapshot;  // copies share one state
    auto first = snapshot->Restore(shared);
    ASSERT_TRUE(first.ok());
    EXPECT_TRUE((*first)->restore_stats().shared_base_built);
    auto second = copy.Restore(shared);
    ASSERT_TRUE(second.ok());
    EXPECT_FALSE((*second)->restore_stats().shared_base_built);
    survivor = *std::move(second);
  }
  // The handle is gone; the clone still runs on the image it mapped.
  EXPECT_EQ(AsU64(Call(*survivor, "counter")), 1u);
  ASSERT_TRUE(survivor->Reset().ok());
  EXPECT_EQ(AsU64(Call(*survivor, "counter")), 1u);
  // A new handle builds again.
  auto reopened = Snapshot::Open(path);
  ASSERT_TRUE(reopened.ok());
  auto third = reopened->Restore(shared);
  ASSERT_TRUE(third.ok());
  EXPECT_TRUE((*third)->restore_stats().shared_base_built);
}

TEST_P(SnapshotTest, ASnapshotHandleIsOpenedOnceAndUsedFromManyThreads) {
  const std::string path = BootAndSnapshot();
  ASSERT_FALSE(path.empty());
  auto snapshot = Snapshot::Open(path);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ(snapshot->path(), path);
  auto inspected = InspectSnapshot(path);
  ASSERT_TRUE(inspected.ok());
  EXPECT_EQ(snapshot->Info().snapshot_id, inspected->snapshot_id);
  EXPECT_EQ(snapshot->Info().memory_size, 32ull << 20);
  EXPECT_EQ(snapshot->Info().guest_name, inspected->guest_name);
  uint64_t progress_calls = 0;
  EXPECT_TRUE(
      snapshot->Verify([&](uint64_t, uint64_t) { ++progress_calls; }).ok());
  EXPECT_GT(progress_calls, 0u);
  // Four threads restore through one handle at once, each engine; the
  // shared base is built exactly once.
  std::atomic<int> built{0}, answered{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (RestoreEngine engine :
           {RestoreEngine::kSharedBase, kRestoreEngines[t]}) {
        auto clone = snapshot->Restore(Options(engine));
        if (!clone.ok()) continue;
        built += (*clone)->restore_stats().shared_base_built ? 1 : 0;
        auto reply = (*clone)->Call("counter", "");
        if (reply.ok() && AsU64(*reply) == 1) ++answered;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(built.load(), 1);
  EXPECT_EQ(answered.load(), 8);
  // A damaged file is refused at Open, naming it.
  const std::string bad = Path("bad.thaw");
  std::filesystem::copy_file(path, bad);
  std::filesystem::resize_file(bad, std::filesystem::file_size(bad) - 1);
  auto refused = Snapshot::Open(bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(refused.status().message(), HasSubstr("bad.thaw"));
}

// A working set recorded by a restored Vm travels into the snapshots it
// takes: stored first, and recorded in the manifest.
TEST_P(SnapshotTest, ASnapshotOfARecordingVmKeepsItsWorkingSet) {
  const std::string path = BootAndSnapshot();
  ASSERT_FALSE(path.empty());
  auto recorder = Restore(path, RestoreEngine::kLazy, /*record=*/true);
  ASSERT_NE(recorder, nullptr);
  const std::string sum = Call(*recorder, "table_sum");
  const std::string next = Path("next.thaw");
  ASSERT_TRUE(recorder->Snapshot(next).ok());
  auto info = InspectSnapshot(next);
  ASSERT_TRUE(info.ok());
  EXPECT_GT(info->working_set_chunks, 0u);
  auto original = InspectSnapshot(path);
  ASSERT_TRUE(original.ok());
  EXPECT_EQ(original->working_set_chunks, 0u);
  auto prefetched = Restore(next, RestoreEngine::kLazyPrefetch);
  ASSERT_NE(prefetched, nullptr);
  EXPECT_EQ(Call(*prefetched, "table_sum"), sum);
  EXPECT_GT(prefetched->restore_stats().prefetched, 0u);
}

TEST_P(SnapshotTest, ResetAfterACallRestoresExactlyTheSnapshotsBytes) {
  auto vm = Boot(Config(32ull << 20));
  ASSERT_NE(vm, nullptr);
  const std::string path = Path("fn.thaw");
  ASSERT_TRUE(vm->Snapshot(path).ok());
  auto clone = Restore(path, RestoreEngine::kSharedBase);
  ASSERT_NE(clone, nullptr);
  const std::string before = MemoryWithoutBootInfo(*clone);
  EXPECT_EQ(AsU64(Call(*clone, "dirty", "16")), 16u);
  EXPECT_EQ(AsU64(Call(*clone, "counter")), 1u);
  EXPECT_FALSE(SameMemory(MemoryWithoutBootInfo(*clone), before));

  ASSERT_TRUE(clone->Reset().ok());
  EXPECT_TRUE(SameMemory(MemoryWithoutBootInfo(*clone), before));
  EXPECT_GE(clone->restore_stats().pages_reset, 16u);
  EXPECT_EQ(clone->restore_stats().resets, 1u);
  // The guest is back at its snapshot: same counter, a new generation.
  EXPECT_EQ(AsU64(Call(*clone, "counter")), 1u);
  EXPECT_EQ(AsU64(Call(*clone, "generation"), 1), 1u);

  // Again, with memory the host wrote: a host function's output in a guest
  // buffer (on KVM the dirty log does not see host writes) and a large
  // call input.
  ASSERT_TRUE(clone
                  ->RegisterHostFunction(
                      "fill",
                      [](absl::string_view) -> absl::StatusOr<std::string> {
                        return std::string(8000, 'h');
                      })
                  .ok());
  EXPECT_EQ(AsU64(Call(*clone, "host_fill", std::string(100000, 'i'))), 8000u);
  EXPECT_EQ(AsU64(Call(*clone, "dirty", "7")), 7u);
  ASSERT_TRUE(clone->Reset().ok());
  EXPECT_TRUE(SameMemory(MemoryWithoutBootInfo(*clone), before));
  EXPECT_EQ(clone->restore_stats().resets, 2u);
  // Both backends reset from a dirty log (KVM's; the emulator's write
  // hook), not from a walk over guest memory.
  EXPECT_TRUE(clone->restore_stats().reset_uses_dirty_log);
  EXPECT_EQ(AsU64(Call(*clone, "counter")), 1u);
  // Pages written in resets in a row (on KVM they then stay writable and
  // logged) come back whether or not the next request writes them again.
  ASSERT_TRUE(clone->Reset().ok());
  for (const char* pages : {"7", "16", "0", "3"}) {
    EXPECT_EQ(AsU64(Call(*clone, "dirty", pages)), std::stoull(pages));
    EXPECT_EQ(AsU64(Call(*clone, "counter")), 1u);
    ASSERT_TRUE(clone->Reset().ok());
    EXPECT_TRUE(SameMemory(MemoryWithoutBootInfo(*clone), before)) << pages;
  }

  auto lazy = Restore(path, RestoreEngine::kLazy);
  ASSERT_NE(lazy, nullptr);
  EXPECT_EQ(lazy->Reset().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(SnapshotEngineTest, DiffSnapshotChainsRestoreTheRightBytes) {
  auto vm = Boot(Config(32ull << 20));
  ASSERT_NE(vm, nullptr);
  const std::string a = Path("a.thaw"), b = Path("b.thaw"), c = Path("c.thaw");
  ASSERT_TRUE(vm->Snapshot(a).ok());

  auto from_a = Restore(a, RestoreEngine::kLazy);
  ASSERT_NE(from_a, nullptr);
  Call(*from_a, "dirty", "5");
  Call(*from_a, "counter");
  SnapshotOptions diff;
  diff.parent = a;
  ASSERT_TRUE(from_a->Snapshot(b, diff).ok());
  auto info_a = InspectSnapshot(a);
  auto info_b = InspectSnapshot(b);
  ASSERT_TRUE(info_a.ok() && info_b.ok());
  EXPECT_EQ(info_b->parent_path, "a.thaw");
  EXPECT_GT(info_b->parent_chunks, 0u);
  EXPECT_LT(info_b->frames, info_a->frames / 4);

  auto from_b = Restore(b, RestoreEngine::kSharedBase);
  ASSERT_NE(from_b, nullptr);
  Call(*from_b, "dirty", "3");
  Call(*from_b, "counter");
  diff.parent = b;
  // A diff may not overwrite its own parent.
  EXPECT_EQ(from_b->Snapshot(b, diff).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(from_b->Snapshot(c, diff).ok());
  const std::string expected = MemoryWithoutBootInfo(*from_b);

  auto from_c = Restore(c, engine());
  ASSERT_NE(from_c, nullptr);
  EXPECT_TRUE(SameMemory(MemoryWithoutBootInfo(*from_c), expected));
  EXPECT_EQ(AsU64(Call(*from_c, "counter")), 3u);
  EXPECT_TRUE(VerifySnapshot(c).ok());

  // A diff names its parent; a different file in its place is refused.
  auto other = Boot(Config(32ull << 20));
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(other->Snapshot(b).ok());
  auto refused = Vm::Restore(c, Options(RestoreEngine::kEager));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition)
      << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("b.thaw"));
  // And a diff against a snapshot the Vm did not come from is refused.
  SnapshotOptions wrong_parent;
  wrong_parent.parent = a;
  EXPECT_EQ(from_b->Snapshot(Path("d.thaw"), wrong_parent).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_P(SnapshotEngineTest, ASignedSnapshotRestoresOnlyUnderItsKey) {
  auto key = SigningKey::Generate();
  auto other_key = SigningKey::Generate();
  ASSERT_TRUE(key.ok() && other_key.ok());
  auto vm = Boot(Config(32ull << 20));
  ASSERT_NE(vm, nullptr);
  Call(*vm, "counter");
  SnapshotOptions signing;
  signing.signing_key = *key;
  const std::string path = Path("signed.thaw");
  ASSERT_TRUE(vm->Snapshot(path, signing).ok());
  const std::string unsigned_path = Path("unsigned.thaw");
  ASSERT_TRUE(vm->Snapshot(unsigned_path).ok());

  // Its own key: restored by every engine, and it answers as the original.
  RestoreOptions options = Options(engine());
  options.verify_key = key->verify_key();
  auto restored = Vm::Restore(path, options);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(AsU64(Call(**restored, "counter")), 2u);
  auto handle = Snapshot::Open(path, key->verify_key());
  ASSERT_TRUE(handle.ok()) << handle.status();
  EXPECT_EQ(handle->Info().signer, key->verify_key().Name());
  EXPECT_TRUE(handle->Info().signature_verified);
  EXPECT_TRUE(handle->Verify().ok());

  // Another key, or no signature: refused before any guest byte is used.
  options.verify_key = other_key->verify_key();
  auto wrong = Vm::Restore(path, options);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kPermissionDenied)
      << wrong.status();
  EXPECT_THAT(wrong.status().message(), HasSubstr(key->verify_key().Name()));
  EXPECT_THAT(wrong.status().message(), HasSubstr("signed.thaw"));
  options.verify_key = key->verify_key();
  auto unsigned_restore = Vm::Restore(unsigned_path, options);
  EXPECT_EQ(unsigned_restore.status().code(),
            absl::StatusCode::kPermissionDenied)
      << unsigned_restore.status();
  EXPECT_THAT(unsigned_restore.status().message(), HasSubstr("not signed"));
  // A handle opened without the key cannot stand in for one opened with it.
  auto unchecked = Snapshot::Open(path);
  ASSERT_TRUE(unchecked.ok());
  EXPECT_FALSE(unchecked->Info().signature_verified);
  EXPECT_EQ(unchecked->Restore(options).status().code(),
            absl::StatusCode::kFailedPrecondition);

  // Diff chains are checked link by link: a diff signed with the key over
  // an unsigned parent is refused, naming the parent.
  auto from_unsigned = Restore(unsigned_path, RestoreEngine::kLazy);
  ASSERT_NE(from_unsigned, nullptr);
  Call(*from_unsigned, "dirty", "2");
  SnapshotOptions diff = signing;
  diff.parent = unsigned_path;
  ASSERT_TRUE(from_unsigned->Snapshot(Path("diff.thaw"), diff).ok());
  auto chain = Vm::Restore(Path("diff.thaw"), options);
  EXPECT_EQ(chain.status().code(), absl::StatusCode::kPermissionDenied)
      << chain.status();
  EXPECT_THAT(chain.status().message(), HasSubstr("unsigned.thaw"));
  // Signed all the way: accepted.
  auto from_signed = Restore(path, RestoreEngine::kLazy);
  ASSERT_NE(from_signed, nullptr);
  Call(*from_signed, "dirty", "2");
  diff.parent = path;
  ASSERT_TRUE(from_signed->Snapshot(Path("signed-diff.thaw"), diff).ok());
  auto signed_chain = Vm::Restore(Path("signed-diff.thaw"), options);
  ASSERT_TRUE(signed_chain.ok()) << signed_chain.status();
  EXPECT_EQ(AsU64(Call(**signed_chain, "counter")), 2u);
}

TEST_P(SnapshotTest, RecordingTheWorkingSetOfASignedSnapshotNeedsItsKey) {
  auto key = SigningKey::Generate();
  ASSERT_TRUE(key.ok());
  auto vm = Boot(Config());
  ASSERT_NE(vm, nullptr);
  SnapshotOptions signing;
  signing.signing_key = *key;
  const std::string path = Path("signed.thaw");
  ASSERT_TRUE(vm->Snapshot(path, signing).ok());
  const std::string input = std::to_string(4u << 20);
  const std::string expected = Call(*vm, "touch", input);
  auto recorder = Restore(path, RestoreEngine::kLazy, /*record=*/true);
  ASSERT_NE(recorder, nullptr);
  EXPECT_EQ(Call(*recorder, "touch", input), expected);
  // Without the key the rewrite would drop the signature: refused, and the
  // file is left as it was.
  absl::Status without = recorder->WriteWorkingSet();
  EXPECT_EQ(without.code(), absl::StatusCode::kFailedPrecondition) << without;
  ASSERT_TRUE(recorder->WriteWorkingSet(*key).ok());
  RestoreOptions options = Options(RestoreEngine::kLazyPrefetch);
  options.verify_key = key->verify_key();
  auto handle = Snapshot::Open(path, key->verify_key());
  ASSERT_TRUE(handle.ok()) << handle.status();
  EXPECT_GT(handle->Info().working_set_chunks, 0u);
  auto prefetched = handle->Restore(options);
  ASSERT_TRUE(prefetched.ok()) << prefetched.status();
  EXPECT_EQ(Call(**prefetched, "touch", input), expected);
  EXPECT_GE((*prefetched)->restore_stats().mapped,
            (4u << 20) / handle->Info().chunk_size);
}

TEST_P(SnapshotEngineTest, ASnapshotRestoresOnTheOtherBackend) {
  const BackendKind other = backend_ == BackendKind::kKvm
                                ? BackendKind::kEmulated
                                : BackendKind::kKvm;
  if (!CheckKvm().ok()) {
    // The KVM instance of this test (run inside QEMU in CI) covers both
    // directions; here only the emulated backend exists.
    GTEST_SKIP() << "needs both backends; runs in the KVM suite";
  }
  auto vm = Boot(Config());
  ASSERT_NE(vm, nullptr);
  Call(*vm, "counter");
  Call(*vm, "set_lstar", "140733498807928");
  const std::string sum = Call(*vm, "table_sum");
  const std::string path = Path("fn.thaw");
  ASSERT_TRUE(vm->Snapshot(path).ok());
  RestoreOptions options = Options(engine());
  options.backend = other;
  auto restored = Vm::Restore(path, options);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ((*restored)->backend(), other);
  EXPECT_EQ(AsU64(Call(**restored, "counter")), 2u);
  EXPECT_EQ(Call(**restored, "table_sum"), sum);
  EXPECT_EQ(AsU64(Call(**restored, "get_lstar")), 0x7FFF12345678u);
  // And back again.
  const std::string back = Path("back.thaw");
  ASSERT_TRUE((*restored)->Snapshot(back).ok());
  auto again = Restore(back, engine());
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(AsU64(Call(*again, "counter")), 3u);
}

TEST_P(SnapshotTest, SnapshotNeedsABootedHealthyVm) {
  auto vm = Vm::Create(Config());
  ASSERT_TRUE(vm.ok());
  EXPECT_EQ((*vm)->Snapshot(Path("x.thaw")).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(std::filesystem::exists(Path("x.thaw")));
  auto booted = Boot(Config());
  ASSERT_NE(booted, nullptr);
  SnapshotOptions bad;
  bad.chunk_size = 3000;
  EXPECT_EQ(booted->Snapshot(Path("x.thaw"), bad).code(),
            absl::StatusCode::kInvalidArgument);
  bad = SnapshotOptions{};
  bad.compression_level = 99;
  EXPECT_EQ(booted->Snapshot(Path("x.thaw"), bad).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(booted->Snapshot(Path("no/such/dir/x.thaw")).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(booted->WriteWorkingSet().code(),
            absl::StatusCode::kFailedPrecondition);
  // Nothing half-written is left behind.
  EXPECT_TRUE(std::filesystem::is_empty(dir_));
  auto missing =
      Vm::Restore(Path("missing.thaw"), Options(RestoreEngine::kLazy));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST_P(SnapshotEngineTest, OtherChunkSizesAndLevelsRoundTrip) {
  auto vm = Boot(Config(32ull << 20));
  ASSERT_NE(vm, nullptr);
  const std::string sum = Call(*vm, "table_sum");
  for (uint32_t chunk : {4096u, 1u << 20}) {
    SnapshotOptions options;
    options.chunk_size = chunk;
    options.compression_level = chunk == 4096 ? 1 : 19;
    const std::string path = Path(absl::StrCat("c", chunk, ".thaw"));
    ASSERT_TRUE(vm->Snapshot(path, options).ok());
    auto info = InspectSnapshot(path);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->chunk_size, chunk);
    EXPECT_GT(info->compression_ratio(), 4.0);
    auto restored = Restore(path, engine());
    ASSERT_NE(restored, nullptr);
    EXPECT_EQ(Call(*restored, "table_sum"), sum);
  }
}

TEST_P(SnapshotTest, TheNumberOfWriterThreadsDoesNotChangeTheFile) {
  auto vm = Boot(Config(32ull << 20));
  ASSERT_NE(vm, nullptr);
  const std::string sum = Call(*vm, "table_sum");
  std::vector<SnapshotInfo> infos;
  for (unsigned threads : {1u, 3u, 0u}) {
    SnapshotOptions options;
    options.threads = threads;
    const std::string path = Path(absl::StrCat("t", threads, ".thaw"));
    ASSERT_TRUE(vm->Snapshot(path, options).ok());
    auto info = InspectSnapshot(path);
    ASSERT_TRUE(info.ok());
    infos.push_back(*info);
    ASSERT_TRUE(VerifySnapshot(path).ok());
    auto restored = Restore(path, RestoreEngine::kEager);
    ASSERT_NE(restored, nullptr);
    EXPECT_EQ(Call(*restored, "table_sum"), sum);
  }
  // Same frames in the same order: same sizes (the id and time differ).
  for (const SnapshotInfo& info : infos) {
    EXPECT_EQ(info.frames, infos[0].frames);
    EXPECT_EQ(info.stored_bytes, infos[0].stored_bytes);
    EXPECT_EQ(info.file_size, infos[0].file_size);
  }
}

// Held by every test that changes kernel settings, across processes (an
// flock), so that two test runs on one host never change them at once.
class KernelSettingsLock {
 public:
  KernelSettingsLock()
      : fd_(open("/tmp/thaw-test-kernel-settings.lock",
                 O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    if (fd_ >= 0) flock(fd_, LOCK_EX);
  }
  ~KernelSettingsLock() {
    if (fd_ >= 0) close(fd_);  // releases the lock
  }

 private:
  int fd_;
};

// A kernel setting (a /proc/sys or /sys file) changed for one test and put
// back afterwards. Files that list choices ("always [madvise] never") are
// put back to the bracketed one.
class KernelSetting {
 public:
  explicit KernelSetting(std::string path) : path_(std::move(path)) {
    std::ifstream in(path_);
    std::getline(in, old_);
    const size_t open = old_.find('['), close = old_.find(']');
    if (open != std::string::npos && close > open) {
      old_ = old_.substr(open + 1, close - open - 1);
    }
  }
  ~KernelSetting() {
    if (!old_.empty()) Write(old_);
  }
  bool Write(const std::string& value) {
    std::ofstream out(path_);
    out << value << "\n";
    out.close();
    return out.good();
  }
  const std::string& old() const { return old_; }

 private:
  std::string path_;
  std::string old_;
};

// Reserved huge pages no mapping holds or was promised.
uint64_t FreeHugePages() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t value = 0, free = 0, promised = 0;
  while (meminfo >> key >> value) {
    if (key == "HugePages_Free:") free = value;
    if (key == "HugePages_Rsvd:") promised = value;
    meminfo.ignore(256, '\n');
  }
  return free - promised;
}

TEST_P(SnapshotTest, ReservedHugePagesBackBootAndTheEnginesThatTakeThem) {
  if (geteuid() != 0) GTEST_SKIP() << "reserving huge pages needs root";
  KernelSettingsLock lock;
  KernelSetting reserved("/proc/sys/vm/nr_hugepages");
  const uint64_t before = FreeHugePages();
  // A host whose memory is fragmented (a page cache full of build output)
  // finds few free 2 MiB runs (a fresh-clone test run once got 4 of 64);
  // compacting first makes the reservation as likely as the memory allows.
  std::ofstream("/proc/sys/vm/compact_memory") << "1";
  ASSERT_TRUE(reserved.Write(std::to_string(std::stoull(reserved.old()) + 64)));
  const uint64_t free = FreeHugePages();
  ASSERT_GE(free, before + 48) << "the kernel reserved too few huge pages";

  VmConfig config = Config(32ull << 20);
  config.huge_pages = true;
  auto vm = Boot(config);
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(vm->restore_stats().memory_pages, "2 MiB reserved (hugetlbfs)");
  EXPECT_EQ(FreeHugePages(), free - 16);  // all 32 MiB, reserved up front
  const std::string sum = Call(*vm, "table_sum");
  const std::string path = Path("fn.thaw");
  ASSERT_TRUE(vm->Snapshot(path).ok());

  for (RestoreEngine engine : {RestoreEngine::kEager, RestoreEngine::kLazy}) {
    RestoreOptions options = Options(engine);
    options.huge_pages = true;
    options.record_working_set = engine == RestoreEngine::kLazy;
    auto restored = Vm::Restore(path, options);
    ASSERT_TRUE(restored.ok()) << restored.status();
    EXPECT_EQ((*restored)->restore_stats().memory_pages,
              "2 MiB reserved (hugetlbfs)");
    EXPECT_EQ(Call(**restored, "table_sum"), sum);
    if (engine == RestoreEngine::kLazy) {
      // One fault fills a whole 2 MiB page: at most 16 for 32 MiB.
      const RestoreStats stats = (*restored)->restore_stats();
      EXPECT_GT(stats.faults, 0u);
      EXPECT_LE(stats.faults, 16u);
      ASSERT_TRUE((*restored)->WriteWorkingSet().ok());
    }
  }
  // Prefetch streams the recorded huge pages in (nothing is mapped from
  // the file, which would split them).
  RestoreOptions prefetch = Options(RestoreEngine::kLazyPrefetch);
  prefetch.huge_pages = true;
  auto prefetched = Vm::Restore(path, prefetch);
  ASSERT_TRUE(prefetched.ok()) << prefetched.status();
  EXPECT_EQ(Call(**prefetched, "table_sum"), sum);
  EXPECT_GT((*prefetched)->restore_stats().prefetched, 0u);
  EXPECT_EQ((*prefetched)->restore_stats().mapped, 0u);
  prefetched->reset();

  RestoreOptions shared = Options(RestoreEngine::kSharedBase);
  shared.huge_pages = true;
  EXPECT_EQ(Vm::Restore(path, shared).status().code(),
            absl::StatusCode::kInvalidArgument);
  vm.reset();
  EXPECT_EQ(FreeHugePages(), free);  // every huge page given back
}

TEST_P(SnapshotTest, HugePagesFallBackToTransparentOnesAndFailClearly) {
  if (geteuid() != 0) GTEST_SKIP() << "changing kernel settings needs root";
  KernelSettingsLock lock;
  KernelSetting reserved("/proc/sys/vm/nr_hugepages");
  KernelSetting transparent("/sys/kernel/mm/transparent_hugepage/enabled");
  ASSERT_TRUE(reserved.Write("0"));
  ASSERT_TRUE(transparent.Write("madvise"));
  VmConfig config = Config(32ull << 20);
  config.huge_pages = true;
  auto vm = Boot(config);
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(vm->restore_stats().memory_pages, "2 MiB transparent");
  const std::string sum = Call(*vm, "table_sum");
  const std::string path = Path("fn.thaw");
  ASSERT_TRUE(vm->Snapshot(path).ok());
  RestoreOptions lazy = Options(RestoreEngine::kLazy);
  lazy.huge_pages = true;
  auto restored = Vm::Restore(path, lazy);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(Call(**restored, "table_sum"), sum);
  EXPECT_LE((*restored)->restore_stats().faults, 16u);

  // Neither kind: a clear error naming what to set, and nothing else lost.
  ASSERT_TRUE(transparent.Write("never"));
  auto refused = Vm::Create(config);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("vm.nr_hugepages"));
  EXPECT_EQ(Vm::Restore(path, lazy).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Call(**restored, "table_sum"), sum);
}

// A damaged chunk holding the guest's code. A lazy restore starts (the
// manifest is intact), and the first call, which touches the chunk, fails
// with DataLoss naming the file; the Vm then refuses further calls (on KVM
// the fault comes from inside KVM_RUN). The eager engines find it before
// the guest exists. No engine ever returns a result computed on it.
TEST_P(SnapshotEngineTest, ADamagedChunkNeverYieldsAResult) {
  auto vm = Boot(Config(32ull << 20));
  ASSERT_NE(vm, nullptr);
  const std::string path = Path("fn.thaw");
  ASSERT_TRUE(vm->Snapshot(path).ok());
  {
    auto file = snapshot::SnapshotFile::Open(path);
    ASSERT_TRUE(file.ok());
    const uint32_t frame =
        (*file)->ChunkFrame(THAW_IMAGE_BASE / (*file)->chunk_size());
    ASSERT_LT(frame, (*file)->frame_count());
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg((*file)->FrameOffset(frame) + 5);
    char byte = 0;
    f.read(&byte, 1);
    byte ^= 0x40;
    f.seekp((*file)->FrameOffset(frame) + 5);
    f.write(&byte, 1);
  }
  auto restored = Vm::Restore(path, Options(engine()));
  if (engine() == RestoreEngine::kEager ||
      engine() == RestoreEngine::kSharedBase) {
    EXPECT_EQ(restored.status().code(), absl::StatusCode::kDataLoss)
        << restored.status();
    EXPECT_THAT(restored.status().message(), HasSubstr("fn.thaw"));
    return;
  }
  ASSERT_TRUE(restored.ok()) << restored.status();
  auto reply = (*restored)->Call("counter", "");
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDataLoss)
      << reply.status();
  EXPECT_THAT(reply.status().message(), HasSubstr("fn.thaw"));
  EXPECT_EQ((*restored)->Call("counter", "").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

THAW_INSTANTIATE_BACKEND_TESTS(SnapshotTest);
INSTANTIATE_TEST_SUITE_P(
    Engines, SnapshotEngineTest,
    ::testing::Combine(::testing::Values(BackendKind::kEmulated,
                                         BackendKind::kKvm),
                       ::testing::ValuesIn(kRestoreEngines)),
    EngineTestName);

}  // namespace
}  // namespace thaw
