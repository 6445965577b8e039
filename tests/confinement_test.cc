// Thread confinement as a user observes it: the threads thaw starts for a
// lazy restore and for call timeouts run under the seccomp filter (the
// kernel says so in /proc), the caller's threads do not, a call outside
// the allow-list from such a thread is refused with EPERM while the calls
// those threads need still work, and the switch turns it off.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/thread_confinement.h"
#include "gtest/gtest.h"
#include "thaw/security.h"
#include "thaw/snapshot.h"
#include "thaw/vm.h"

namespace thaw {
namespace {

// The "Seccomp:" mode (0 none, 2 filter) of each thread of this process,
// by thread name.
std::multimap<std::string, int> SeccompModes() {
  std::multimap<std::string, int> modes;
  for (auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    std::ifstream status(task.path() / "status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("Seccomp:", 0) == 0) {
        modes.emplace(name, std::stoi(line.substr(8)));
      }
    }
  }
  return modes;
}

int ThisThreadsMode() {
  std::ifstream status("/proc/thread-self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Seccomp:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

class ConfinementTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // On by default, except in a ThreadSanitizer build
    // (thread_confinement.cc says why): turned on before any thread of
    // thaw's starts.
    SetThreadConfinement(true);
    dir_ =
        new std::filesystem::path(std::filesystem::temp_directory_path() /
                                  absl::StrCat("thaw-confinement-", getpid()));
    std::filesystem::create_directories(*dir_);
    VmConfig config;
    config.backend = BackendKind::kEmulated;
    config.memory_size = 32ull << 20;
    auto vm = Vm::Create(config);
    ASSERT_TRUE(vm.ok()) << vm.status();
    ASSERT_TRUE((*vm)->LoadGuest(THAW_SNAPSHOT_GUEST).ok());
    ASSERT_TRUE((*vm)->Boot().ok());
    ASSERT_TRUE((*vm)->Snapshot(Path()).ok());
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  static std::string Path() { return (*dir_ / "fn.thaw").string(); }

  std::unique_ptr<Vm> RestoreLazily() {
    RestoreOptions options;
    options.backend = BackendKind::kEmulated;
    options.engine = RestoreEngine::kLazy;
    auto vm = Vm::Restore(Path(), options);
    EXPECT_TRUE(vm.ok()) << vm.status();
    return vm.ok() ? *std::move(vm) : nullptr;
  }

  static std::filesystem::path* dir_;
};
std::filesystem::path* ConfinementTest::dir_;

TEST_F(ConfinementTest, ThawsThreadsAreFilteredAndTheCallersAreNot) {
  ASSERT_TRUE(ThreadConfinement());
  ASSERT_TRUE(ThreadConfinementStatus().ok()) << ThreadConfinementStatus();
  auto vm = RestoreLazily();
  ASSERT_NE(vm, nullptr);
  // A call arms the watchdog (its thread starts with the first one).
  auto reply = vm->Call("counter", "");
  ASSERT_TRUE(reply.ok()) << reply.status();
  const auto modes = SeccompModes();
  ASSERT_EQ(modes.count("thaw-faults"), 1u);
  EXPECT_EQ(modes.find("thaw-faults")->second, 2);
  ASSERT_EQ(modes.count("thaw-watchdog"), 1u);
  EXPECT_EQ(modes.find("thaw-watchdog")->second, 2);
  EXPECT_EQ(ThisThreadsMode(), 0) << "the caller's thread must not be filtered";
  // Under the filter the Vm works as before: its faults are served.
  auto again = vm->Call("touch", std::to_string(8u << 20));
  EXPECT_TRUE(again.ok()) << again.status();
  const RestoreStats stats = vm->restore_stats();
  EXPECT_GT(stats.chunks_read, 0u);
  EXPECT_EQ(stats.reads_without_io_uring, 0u) << "io_uring refused?";
}

TEST_F(ConfinementTest, ACallOutsideTheListIsRefusedFromAConfinedThread) {
  int before = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(before, 0);
  int open_errno = 0, socket_errno = 0, mode = -1;
  ssize_t read_bytes = -1;
  bool mapped = false;
  std::thread confined([&] {
    ASSERT_TRUE(ConfineThisThread().ok());
    mode = ThisThreadsMode();  // /proc/thread-self needs open: refused
    errno = 0;
    if (open("/etc/hostname", O_RDONLY | O_CLOEXEC) < 0) open_errno = errno;
    errno = 0;
    if (socket(AF_INET, SOCK_STREAM, 0) < 0) socket_errno = errno;
    // What the confined threads need still works.
    char buffer[64];
    read_bytes = pread(before, buffer, sizeof(buffer), 0);
    void* p = mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mapped = p != MAP_FAILED;
    if (mapped) munmap(p, 1 << 20);
  });
  confined.join();
  EXPECT_EQ(open_errno, EPERM);
  EXPECT_EQ(socket_errno, EPERM);
  EXPECT_EQ(mode, -1);
  EXPECT_GT(read_bytes, 0);
  EXPECT_TRUE(mapped);
  // This thread (the caller's) is untouched.
  int after = open("/etc/hostname", O_RDONLY | O_CLOEXEC);
  EXPECT_GE(after, 0);
  if (after >= 0) close(after);
  close(before);
}

TEST_F(ConfinementTest, TheSwitchTurnsItOffForThreadsStartedAfter) {
  SetThreadConfinement(false);
  auto vm = RestoreLazily();
  SetThreadConfinement(true);
  ASSERT_NE(vm, nullptr);
  const auto modes = SeccompModes();
  ASSERT_EQ(modes.count("thaw-faults"), 1u);
  EXPECT_EQ(modes.find("thaw-faults")->second, 0);
  auto reply = vm->Call("counter", "");
  EXPECT_TRUE(reply.ok()) << reply.status();
}

}  // namespace
}  // namespace thaw
