// Watchdog: one process-wide thread that enforces call deadlines.
//
// A running vCPU cannot notice a deadline by itself, so a deadline is stopped
// from outside: at the deadline the watchdog calls the armed callback (which
// interrupts the vCPU), and calls it again every kRefireInterval until the
// deadline is disarmed, so an interrupt that lands just between two runs of
// the vCPU is never lost. One shared thread instead of a thread per call:
// arming costs a mutex and a map insert, and it wakes the thread only when
// the new deadline is the earliest one.
//
// fork(): a child process gets this object as the forking thread saw it but
// no watchdog thread, so the fork is fenced (pthread_atfork): the mutex is
// taken across it, and in the child it is let go, the parent's deadlines
// (of calls on threads the child does not have) are dropped, and a thread
// is started again by the child's first Arm. Without that, a child forked
// while the thread held the mutex waited for it for ever.
#ifndef THAW_LIB_WATCHDOG_H_
#define THAW_LIB_WATCHDOG_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>

#include "absl/time/time.h"

namespace thaw {

class Watchdog {
 public:
  static constexpr absl::Duration kRefireInterval = absl::Milliseconds(10);

  static Watchdog& Global();

  // Calls `fire` on the watchdog thread at `deadline` (and periodically
  // after). Returns an id for Disarm.
  uint64_t Arm(absl::Time deadline, std::function<void()> fire);
  // After Disarm returns, the callback is not running and never runs again.
  void Disarm(uint64_t id);

 private:
  Watchdog();
  void StartThread();  // with mutex_ held
  void Loop();
  static void BeforeFork();
  static void AfterForkInParent();
  static void AfterForkInChild();

  struct Entry {
    absl::Time deadline;
    std::function<void()> fire;
  };
  std::mutex mutex_;
  std::condition_variable wake_;
  std::map<uint64_t, Entry> entries_;
  uint64_t next_id_ = 1;
  absl::Time sleeping_until_ = absl::InfinitePast();
  bool thread_running_ = false;  // guarded by mutex_
};

}  // namespace thaw

#endif  // THAW_LIB_WATCHDOG_H_
