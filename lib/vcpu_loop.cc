#include "lib/vcpu_loop.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "lib/guest_fault.h"
#include "lib/watchdog.h"

namespace thaw {

void VcpuLoop::Pause() {
  {
    std::lock_guard<std::mutex> lock(pause_mutex_);
    paused_ = true;
  }
  backend_.Interrupt();
}

void VcpuLoop::Resume() {
  std::lock_guard<std::mutex> lock(pause_mutex_);
  paused_ = false;
  resumed_.notify_all();
}

bool VcpuLoop::paused() const {
  std::lock_guard<std::mutex> lock(pause_mutex_);
  return paused_;
}

absl::Duration VcpuLoop::WaitWhilePaused() {
  std::unique_lock<std::mutex> lock(pause_mutex_);
  if (!paused_) return absl::ZeroDuration();
  absl::Time start = absl::Now();
  resumed_.wait(lock, [this] { return !paused_; });
  return absl::Now() - start;
}

absl::Status VcpuLoop::Run(backend::HypercallHandler& handler,
                           absl::string_view what,
                           const std::function<absl::Status()>& memory_error) {
  // A chunk that failed its checksum while the host wrote the call's input
  // (or earlier) means the guest must not run at all.
  if (absl::Status memory = memory_error(); !memory.ok()) {
    return absl::Status(memory.code(),
                        absl::StrCat(what, ": ", memory.message()));
  }
  backend_.ClearInterrupt();
  timed_out_.store(false);
  // A Pause() that came before ClearInterrupt() would be lost; re-raise it.
  if (paused()) backend_.Interrupt();
  absl::Time deadline = absl::Now() + timeout_;
  auto arm = [this](absl::Time when) {
    return Watchdog::Global().Arm(when, [this] {
      timed_out_.store(true);
      backend_.Interrupt();
    });
  };
  uint64_t watch = arm(deadline);
  absl::Status status;
  while (true) {
    absl::StatusOr<backend::Exit> exit = backend_.Run(handler);
    if (!exit.ok()) {
      status = exit.status();
      break;
    }
    if (absl::Status memory = memory_error(); !memory.ok()) {
      status = absl::Status(memory.code(),
                            absl::StrCat(what, ": ", memory.message()));
      break;
    }
    if (exit->reason != backend::Exit::Reason::kInterrupted) {
      status = ExitToStatus(*exit, what);
      break;
    }
    if (paused()) {
      Watchdog::Global().Disarm(watch);
      deadline += WaitWhilePaused();
      timed_out_.store(false);
      backend_.ClearInterrupt();
      watch = arm(deadline);
      continue;
    }
    if (timed_out_.load() && absl::Now() >= deadline) {
      status = absl::DeadlineExceededError(absl::StrFormat(
          "%s: guest ran past the %s timeout (stopped at RIP 0x%x)", what,
          absl::FormatDuration(timeout_), exit->rip));
      break;
    }
    backend_.ClearInterrupt();  // a Pause/Resume that raced; keep running
  }
  Watchdog::Global().Disarm(watch);
  return status;
}

absl::Status VcpuLoop::ExitToStatus(const backend::Exit& exit,
                                    absl::string_view what) {
  using Reason = backend::Exit::Reason;
  switch (exit.reason) {
    case Reason::kStopped:
      return absl::OkStatus();
    case Reason::kException: {
      absl::Status status = absl::AbortedError(absl::StrFormat(
          "%s: guest exception %s (vector %d) at RIP 0x%x, CR2 0x%x%s", what,
          backend::ExceptionName(exit.vector), exit.vector, exit.rip, exit.cr2,
          exit.has_error_code
              ? absl::StrFormat(", error code 0x%x", exit.error_code)
              : ""));
      SetGuestFault(status,
                    {exit.vector, exit.rip, exit.cr2, exit.error_code, false});
      return status;
    }
    case Reason::kShutdown: {
      absl::Status status = absl::AbortedError(
          exit.rip_known
              ? absl::StrFormat("%s: guest triple fault (shutdown) at RIP 0x%x",
                                what, exit.rip)
              : absl::StrFormat(
                    "%s: guest triple fault (shutdown); its RIP is unknown: "
                    "this host's KVM (AMD SVM) resets the vCPU at a shutdown",
                    what));
      SetGuestFault(status, {8, exit.rip_known ? exit.rip : 0, 0, 0, true});
      return status;
    }
    case Reason::kHalt:
      return absl::AbortedError(absl::StrFormat(
          "%s: guest halted the CPU at RIP 0x%x", what, exit.rip));
    case Reason::kUnhandledIo:
      return absl::AbortedError(absl::StrFormat(
          "%s: guest accessed unknown I/O port 0x%x at RIP 0x%x", what,
          exit.address, exit.rip));
    case Reason::kUnmappedMemory:
      return absl::AbortedError(absl::StrFormat(
          "%s: guest accessed guest-physical address 0x%x outside its %d "
          "bytes of memory (RIP 0x%x)",
          what, exit.address, memory_size_, exit.rip));
    case Reason::kInterrupted:
    case Reason::kInternalError:
      break;
  }
  return absl::InternalError(
      absl::StrFormat("%s: %s backend failed at RIP 0x%x: %s", what,
                      BackendName(backend_.kind()), exit.rip, exit.detail));
}

}  // namespace thaw
