// Differential test: the same randomized call sequences on KVM and on the
// emulator give the same replies, the same console output, the same memory
// (entropy aside) and snapshots with the same chunks, and a snapshot taken
// on either backend continues identically on both. It needs both backends,
// so it runs where KVM runs guests: in CI inside QEMU
// (differential_kvm_in_qemu, THAW_REQUIRE_KVM=1); elsewhere it skips.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "snapshot/snapshot_file.h"
#include "tests/backend_param.h"
#include "thaw/abi.h"
#include "thaw/snapshot.h"
#include "thaw/vm.h"

namespace thaw {
namespace {

struct Step {
  std::string function;
  std::string input;
};

// A call sequence for the snapshot guest: every function whose result does
// not depend on entropy, with random inputs in ranges that stay fast when
// KVM itself runs under QEMU's emulation.
std::vector<Step> SnapshotGuestSteps(uint32_t seed, int count) {
  std::mt19937_64 rng(seed);
  auto below = [&](uint64_t n) { return std::to_string(rng() % n); };
  std::vector<Step> steps;
  for (int i = 0; i < count; ++i) {
    switch (rng() % 9) {
      case 0:
        steps.push_back({"counter", ""});
        break;
      case 1:
        steps.push_back({"touch", below(4u << 20)});
        break;
      case 2:
        steps.push_back({"dirty", below(300)});
        break;
      case 3:
        steps.push_back({"fpu", below(1ull << 40)});
        break;
      case 4:
        steps.push_back({"set_lstar", below(1ull << 47)});
        break;
      case 5:
        steps.push_back({"get_lstar", ""});
        break;
      case 6:
        steps.push_back({"host_fill", below(8193)});
        break;
      case 7:
        steps.push_back({"generation", ""});
        break;
      default:
        steps.push_back({i % 4 == 0 ? "table_sum" : "counter", ""});
    }
  }
  return steps;
}

// A call sequence for the test guest: payloads, replies from the heap,
// console output, host calls and function errors.
std::vector<Step> TestGuestSteps(uint32_t seed, int count) {
  std::mt19937_64 rng(seed);
  auto bytes = [&](size_t n) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    return s;
  };
  std::vector<Step> steps;
  for (int i = 0; i < count; ++i) {
    switch (rng() % 6) {
      case 0:
        steps.push_back({"echo", bytes(rng() % 4096)});
        break;
      case 1:
        steps.push_back({"reply_bytes", std::to_string(rng() % 65536)});
        break;
      case 2:
        steps.push_back({"count", ""});
        break;
      case 3:
        steps.push_back({"print", absl::StrCat("line ", rng() % 1000, "\n")});
        break;
      case 4:
        steps.push_back({"call_host", "lookup"});
        break;
      default:
        steps.push_back({"fail", ""});
    }
  }
  return steps;
}

struct Guest {
  const char* path;
  std::vector<Step> (*steps)(uint32_t seed, int count);
};

class DifferentialTest : public ::testing::TestWithParam<Guest> {
 protected:
  void SetUp() override {
    testing::RequireBackend(BackendKind::kKvm);
    if (IsSkipped() || HasFatalFailure()) return;
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("thaw_differential_", getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::string Path(const std::string& name) { return (dir_ / name).string(); }

  // Host functions both guests call, the same on both backends.
  static void RegisterHostFunctions(Vm& vm) {
    ASSERT_TRUE(
        vm.RegisterHostFunction(
              "fill",
              [](absl::string_view input) -> absl::StatusOr<std::string> {
                uint64_t n = 0;
                for (char c : input) {
                  if (c < '0' || c > '9') break;
                  n = n * 10 + (c - '0');
                }
                std::string out(std::min<uint64_t>(n, 8192), '\0');
                for (size_t i = 0; i < out.size(); ++i) {
                  out[i] = static_cast<char>(i * 7 + n);
                }
                return out;
              })
            .ok());
    ASSERT_TRUE(
        vm.RegisterHostFunction(
              "lookup",
              [](absl::string_view input) -> absl::StatusOr<std::string> {
                return absl::StrCat("looked up ", input);
              })
            .ok());
  }

  std::unique_ptr<Vm> Restore(const std::string& path, BackendKind backend) {
    RestoreOptions options;
    options.backend = backend;
    options.engine = RestoreEngine::kLazy;
    options.call_timeout = absl::Seconds(120);
    auto vm = Vm::Restore(path, options);
    EXPECT_TRUE(vm.ok()) << BackendName(backend) << ": " << vm.status();
    if (!vm.ok()) return nullptr;
    RegisterHostFunctions(**vm);
    return *std::move(vm);
  }

  // Runs `steps` on both and expects the same outcome of every call.
  void RunOnBoth(Vm& kvm, Vm& emulated, const std::vector<Step>& steps) {
    for (size_t i = 0; i < steps.size(); ++i) {
      const Step& step = steps[i];
      SCOPED_TRACE(absl::StrCat("step ", i, ": ", step.function, "(",
                                step.input.size(), " bytes)"));
      auto a = kvm.Call(step.function, step.input);
      auto b = emulated.Call(step.function, step.input);
      ASSERT_EQ(a.status(), b.status());
      if (a.ok()) {
        ASSERT_EQ(*a, *b);
      }
    }
    EXPECT_EQ(kvm.console(), emulated.console());
  }

  // Guest memory with what entropy decides cleared: the boot-info page
  // (fresh entropy at every restore) and, in the snapshot guest, the RNG
  // it seeds from it.
  static std::string Memory(Vm& vm) {
    auto bytes = vm.ReadGuestMemory(0, vm.config().memory_size);
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    if (!bytes.ok()) return "";
    std::memset(bytes->data() + THAW_BOOT_INFO_ADDR, 0, 4096);
    if (auto rng = vm.FindGuestSymbol("g_rng"); rng.ok()) {
      std::memset(bytes->data() + *rng, 0, 8);
    }
    return *bytes;
  }

  static void ExpectSameMemory(Vm& kvm, Vm& emulated) {
    const std::string a = Memory(kvm), b = Memory(emulated);
    ASSERT_EQ(a.size(), b.size());
    uint64_t differing = 0, first = a.size();
    for (uint64_t page = 0; page < a.size(); page += 4096) {
      if (std::memcmp(a.data() + page, b.data() + page, 4096) != 0) {
        if (differing++ == 0) first = page;
      }
    }
    EXPECT_EQ(differing, 0u)
        << "pages differ, the first at 0x" << std::hex << first;
  }

  // Snapshots of both after a sequence hold the same chunks, except those
  // holding what entropy decides.
  void ExpectSameSnapshots(Vm& kvm, Vm& emulated, const std::string& name) {
    const std::string a = Path(name + "-kvm.thaw");
    const std::string b = Path(name + "-emulated.thaw");
    ASSERT_TRUE(kvm.Snapshot(a).ok());
    ASSERT_TRUE(emulated.Snapshot(b).ok());
    auto image_a = snapshot::SnapshotImage::Open(a);
    auto image_b = snapshot::SnapshotImage::Open(b);
    ASSERT_TRUE(image_a.ok() && image_b.ok());
    const uint32_t chunk = (*image_a)->chunk_size();
    std::vector<uint64_t> entropy = {THAW_BOOT_INFO_ADDR};
    if (auto rng = kvm.FindGuestSymbol("g_rng"); rng.ok()) {
      entropy.push_back(*rng);
    }
    uint64_t compared = 0;
    for (uint64_t c = 0; c < (*image_a)->chunk_count(); ++c) {
      bool skip = false;
      for (uint64_t address : entropy) skip |= address / chunk == c;
      if (skip) continue;
      ++compared;
      EXPECT_TRUE((*image_a)->ChunkContentHash(c) ==
                  (*image_b)->ChunkContentHash(c))
          << "chunk " << c;
    }
    EXPECT_GT(compared, 0u);
  }

  std::filesystem::path dir_;
};

TEST_P(DifferentialTest, BothBackendsAnswerAndWriteMemoryTheSame) {
  const Guest guest = GetParam();
  // Booted on the emulator: its init's memory is where both start.
  VmConfig config;
  config.backend = BackendKind::kEmulated;
  config.memory_size = 32ull << 20;
  config.call_timeout = absl::Seconds(120);
  auto booted = Vm::Create(config);
  ASSERT_TRUE(booted.ok()) << booted.status();
  ASSERT_TRUE((*booted)->LoadGuest(guest.path).ok());
  ASSERT_TRUE((*booted)->Boot().ok());
  const std::string start = Path("start.thaw");
  ASSERT_TRUE((*booted)->Snapshot(start).ok());

  auto kvm = Restore(start, BackendKind::kKvm);
  auto emulated = Restore(start, BackendKind::kEmulated);
  ASSERT_TRUE(kvm != nullptr && emulated != nullptr);
  for (uint32_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    RunOnBoth(*kvm, *emulated, guest.steps(seed, 40));
    if (HasFatalFailure()) return;
    ExpectSameMemory(*kvm, *emulated);
  }
  ExpectSameSnapshots(*kvm, *emulated, "after");
  if (HasFatalFailure()) return;

  // A snapshot taken on each backend continues the same on both.
  for (const char* taken_on : {"after-kvm.thaw", "after-emulated.thaw"}) {
    SCOPED_TRACE(taken_on);
    auto on_kvm = Restore(Path(taken_on), BackendKind::kKvm);
    auto on_emulated = Restore(Path(taken_on), BackendKind::kEmulated);
    ASSERT_TRUE(on_kvm != nullptr && on_emulated != nullptr);
    RunOnBoth(*on_kvm, *on_emulated, guest.steps(7, 40));
    if (HasFatalFailure()) return;
    ExpectSameMemory(*on_kvm, *on_emulated);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Guests, DifferentialTest,
    ::testing::Values(Guest{THAW_SNAPSHOT_GUEST, &SnapshotGuestSteps},
                      Guest{THAW_TEST_GUEST, &TestGuestSteps}),
    [](const ::testing::TestParamInfo<Guest>& info) {
      return std::string(info.param.steps == &SnapshotGuestSteps
                             ? "SnapshotGuest"
                             : "TestGuest");
    });

}  // namespace
}  // namespace thaw
