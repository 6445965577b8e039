// The process-wide watchdog across fork(): a host that forks (Python's
// multiprocessing, a pre-fork server, the remote-store tests) must get a
// child whose call deadlines still fire, whatever the watchdog thread was
// doing at the fork.
#include "lib/watchdog.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace thaw {
namespace {

TEST(WatchdogTest, AChildForkedWhileTheThreadHeldItsLockStillFiresDeadlines) {
  Watchdog& watchdog = Watchdog::Global();
  // A deadline whose callback keeps the watchdog busy (the thread calls it
  // with its lock held), and the fork lands while it runs.
  std::atomic<bool> firing{false};
  const uint64_t busy = watchdog.Arm(absl::Now(), [&] {
    firing = true;
    absl::SleepFor(absl::Milliseconds(200));
  });
  while (!firing) absl::SleepFor(absl::Milliseconds(1));
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(10);  // a child that hangs is killed, and the test fails
    std::atomic<bool> fired{false};
    const uint64_t id = Watchdog::Global().Arm(
        absl::Now() + absl::Milliseconds(20), [&] { fired = true; });
    for (int i = 0; i < 500 && !fired; ++i) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    Watchdog::Global().Disarm(id);
    _exit(fired ? 0 : 1);
  }
  watchdog.Disarm(busy);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << (WIFSIGNALED(status) ? "child killed by signal " : "child exit ")
      << (WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

}  // namespace
}  // namespace thaw
