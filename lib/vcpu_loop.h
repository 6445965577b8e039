// VcpuLoop: runs a Vm's vCPU for one request — until the guest runtime's
// handler stops it, the guest fails, its memory source reports damage, or
// the call timeout passes — and pauses it on request from other threads.
// The loop only dispatches: exits become statuses here, hypercalls are the
// guest runtime's (lib/guest_runtime.h).
//
// Thread safety: Run() on the thread that owns the Vm; Pause, Resume and
// paused from any thread.
#ifndef THAW_LIB_VCPU_LOOP_H_
#define THAW_LIB_VCPU_LOOP_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/backend/backend.h"

namespace thaw {

class VcpuLoop {
 public:
  // `backend` outlives the loop; `memory_size` is for error messages.
  VcpuLoop(backend::Backend& backend, absl::Duration timeout,
           uint64_t memory_size)
      : backend_(backend), timeout_(timeout), memory_size_(memory_size) {}

  // Runs the vCPU; OK when `handler` stopped it. `memory_error` is asked
  // before the run and after every exit (a damaged chunk stops the guest).
  // `what` ("call \"f\"") prefixes every error.
  absl::Status Run(backend::HypercallHandler& handler, absl::string_view what,
                   const std::function<absl::Status()>& memory_error);

  // Stops the guest at its next instruction boundary until Resume(); paused
  // time does not count against the timeout. Idempotent.
  void Pause();
  void Resume();
  bool paused() const;

 private:
  absl::Status ExitToStatus(const backend::Exit& exit, absl::string_view what);
  // Blocks while paused; returns how long it waited.
  absl::Duration WaitWhilePaused();

  backend::Backend& backend_;
  const absl::Duration timeout_;
  const uint64_t memory_size_;
  std::atomic<bool> timed_out_{false};
  mutable std::mutex pause_mutex_;
  std::condition_variable resumed_;
  bool paused_ = false;
};

}  // namespace thaw

#endif  // THAW_LIB_VCPU_LOOP_H_
