#include "lib/watchdog.h"

#include <pthread.h>

#include <thread>

#include "absl/time/clock.h"
#include "base/thread_confinement.h"

namespace thaw {
namespace {
// How long the idle thread sleeps before looking again. Long enough to cost
// nothing, short enough that a typical new deadline (seconds away) never
// needs to wake it.
constexpr absl::Duration kIdleSleep = absl::Milliseconds(100);
}  // namespace

Watchdog& Watchdog::Global() {
  // Never destroyed: the thread may outlive static destructors.
  static Watchdog* const watchdog = [] {
    auto* w = new Watchdog();
    pthread_atfork(&BeforeFork, &AfterForkInParent, &AfterForkInChild);
    return w;
  }();
  return *watchdog;
}

Watchdog::Watchdog() {
  std::lock_guard<std::mutex> lock(mutex_);
  StartThread();
}

void Watchdog::StartThread() {
  thread_running_ = true;
  std::thread([this] {
    EnterThawThread("thaw-watchdog");
    Loop();
  }).detach();
}

void Watchdog::BeforeFork() { Global().mutex_.lock(); }

void Watchdog::AfterForkInParent() { Global().mutex_.unlock(); }

void Watchdog::AfterForkInChild() {
  Watchdog& w = Global();
  w.entries_.clear();
  w.thread_running_ = false;
  w.sleeping_until_ = absl::InfinitePast();
  w.mutex_.unlock();
}

uint64_t Watchdog::Arm(absl::Time deadline, std::function<void()> fire) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!thread_running_) StartThread();  // a child process's first deadline
  uint64_t id = next_id_++;
  entries_.emplace(id, Entry{deadline, std::move(fire)});
  if (deadline < sleeping_until_) wake_.notify_one();
  return id;
}

void Watchdog::Disarm(uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  entries_.erase(id);
}

void Watchdog::Loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    absl::Time now = absl::Now();
    absl::Time next = now + kIdleSleep;
    for (auto& [id, entry] : entries_) {
      if (entry.deadline <= now) {
        // Fired with the lock held so Disarm() can promise it is not running.
        entry.fire();
        entry.deadline = now + kRefireInterval;
      }
      next = std::min(next, entry.deadline);
    }
    sleeping_until_ = next;
    wake_.wait_for(lock, absl::ToChronoNanoseconds(next - now));
  }
}

}  // namespace thaw
