// Identity, signals (recorded as no-ops: none is ever delivered), limits,
// time, randomness, futexes for one thread, and exit.
#include <asm/prctl.h>
#include <linux/futex.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/utsname.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <thread>

#include "absl/strings/str_format.h"
#include "lib/linux/syscalls.h"

namespace thaw::linux_abi {
namespace {
// What the program sees as its ids.
constexpr int64_t kPid = 1;
constexpr int64_t kUid = 1000;
// Longest nanosleep served in one call: the host thread cannot be
// interrupted while it sleeps, so a call timeout stays within this.
constexpr int64_t kMaxSleepNs = 100'000'000;

template <typename T>
bool Put(absl::StatusOr<absl::Span<uint8_t>> out, const T& value) {
  if (!out.ok()) return false;
  std::memcpy(out->data(), &value, sizeof(T));
  return true;
}
}  // namespace

backend::SyscallResult Syscalls::Exit(const uint64_t* a) {
  exited_ = true;
  exit_status_ = static_cast<int>(a[0] & 0xFF);
  backend::SyscallResult r;
  r.stop = true;
  return r;
}

backend::SyscallResult Syscalls::Kill(const uint64_t* a) {
  // kill(pid, sig) or tgkill(tgid, tid, sig): the only process is the
  // program. No handler ever runs, so a signal other than 0 ends it, the
  // way an unhandled one would (abort() ends here with SIGABRT).
  const int sig = static_cast<int>(current_ == 234 ? a[2] : a[1]);
  if (sig == 0) return Result(0);
  if (sig < 0 || sig > 64) return Result(-EINVAL);
  killed_by_ = sig;
  exited_ = true;
  exit_status_ = 128 + sig;
  backend::SyscallResult r;
  r.stop = true;
  return r;
}

backend::SyscallResult Syscalls::Time(const uint64_t* a) {
  const int64_t now = static_cast<int64_t>(::time(nullptr));
  if (a[0] != 0 && !Put(UserSlice(a[0], 8), now)) return Result(-EFAULT);
  return Result(now);
}

backend::SyscallResult Syscalls::Sysinfo(const uint64_t* a) {
  struct sysinfo_layout {  // struct sysinfo on x86-64
    int64_t uptime;
    uint64_t loads[3];
    uint64_t totalram, freeram, sharedram, bufferram, totalswap, freeswap;
    uint16_t procs, pad;
    uint64_t totalhigh, freehigh;
    uint32_t mem_unit;
    char reserved[4];
  } info{};
  info.uptime = 1;
  info.totalram = memory_.size();
  info.freeram = memory_.size() / 2;
  info.procs = 1;
  info.mem_unit = 1;
  return Result(Put(UserSlice(a[0], sizeof(info)), info) ? 0 : -EFAULT);
}

backend::SyscallResult Syscalls::ArchPrctl(const uint64_t* a) {
  switch (static_cast<int>(a[0])) {
    case ARCH_SET_FS: {
      if (a[1] >= (1ull << 47)) return Result(-EPERM);  // not canonical
      fs_base_ = a[1];
      backend::SyscallResult r;
      r.set_fs_base = true;
      r.fs_base = fs_base_;
      return r;
    }
    case ARCH_GET_FS:
      return Result(Put(UserSlice(a[1], 8), fs_base_) ? 0 : -EFAULT);
    default:
      return Result(-EINVAL);
  }
}

backend::SyscallResult Syscalls::SetTidAddress(const uint64_t*) {
  return Result(kPid);
}

backend::SyscallResult Syscalls::Zero(const uint64_t*) { return Result(0); }

backend::SyscallResult Syscalls::Identity(const uint64_t*) {
  switch (current_) {
    case 39:   // getpid
    case 186:  // gettid
      return Result(kPid);
    case 110:  // getppid
      return Result(0);
    default:  // getuid, getgid, geteuid, getegid
      return Result(kUid);
  }
}

backend::SyscallResult Syscalls::RtSigaction(const uint64_t* a) {
  // Handlers are accepted and never run; the old action reads as default.
  if (a[2] != 0) {
    auto old = UserSlice(a[2], 32);  // struct kernel_sigaction
    if (!old.ok()) return Result(-EFAULT);
    std::memset(old->data(), 0, old->size());
  }
  return Result(0);
}

backend::SyscallResult Syscalls::RtSigprocmask(const uint64_t* a) {
  if (a[2] != 0 && !Put(UserSlice(a[2], 8), uint64_t{0})) {
    return Result(-EFAULT);
  }
  return Result(0);
}

backend::SyscallResult Syscalls::Uname(const uint64_t* a) {
  struct utsname u;
  std::memset(&u, 0, sizeof(u));
  std::strcpy(u.sysname, "Linux");
  std::strcpy(u.nodename, "thaw");
  std::strcpy(u.release, "6.1.0-thaw");
  std::strcpy(u.version, "#1 SMP thaw");
  std::strcpy(u.machine, "x86_64");
  return Result(Put(UserSlice(a[0], sizeof(u)), u) ? 0 : -EFAULT);
}

backend::SyscallResult Syscalls::Prlimit64(const uint64_t* a) {
  if (a[0] != 0 && static_cast<int64_t>(a[0]) != kPid) return Result(-ESRCH);
  if (a[3] == 0) return Result(0);  // setting limits: accepted, not enforced
  rlimit limit{RLIM_INFINITY, RLIM_INFINITY};
  switch (static_cast<int>(a[1])) {
    case RLIMIT_STACK:
      limit.rlim_cur = limit.rlim_max = layout_.stack_size;
      break;
    case RLIMIT_NOFILE:
      limit.rlim_cur = limit.rlim_max = 64;
      break;
    case RLIMIT_AS:
    case RLIMIT_DATA:
      limit.rlim_cur = limit.rlim_max = memory_.size();
      break;
  }
  return Result(Put(UserSlice(a[3], sizeof(limit)), limit) ? 0 : -EFAULT);
}

backend::SyscallResult Syscalls::SchedGetaffinity(const uint64_t* a) {
  if (a[1] < 8) return Result(-EINVAL);
  return Result(Put(UserSlice(a[2], 8), uint64_t{1}) ? 8 : -EFAULT);
}

backend::SyscallResult Syscalls::Futex(const uint64_t* a) {
  const int op = static_cast<int>(a[1]) & FUTEX_CMD_MASK;
  if (op == FUTEX_WAKE) return Result(0);  // nobody else to wake
  if (op != FUTEX_WAIT && op != FUTEX_WAIT_BITSET) return Result(-ENOSYS);
  auto word = UserSlice(a[0], 4);
  if (!word.ok()) return Result(-EFAULT);
  uint32_t value;
  std::memcpy(&value, word->data(), 4);
  if (value != static_cast<uint32_t>(a[2])) return Result(-EAGAIN);
  if (a[3] != 0) return Result(-ETIMEDOUT);  // a timed wait: time is up
  // One thread waiting for itself would wait forever: stop it with a reason
  // rather than hang until the call timeout.
  fatal_ = absl::FailedPreconditionError(absl::StrFormat(
      "the program waits on futex 0x%x with no other thread to wake it "
      "(threads are not supported)",
      a[0]));
  backend::SyscallResult r;
  r.value = static_cast<uint64_t>(-EDEADLK);
  r.stop = true;
  return r;
}

backend::SyscallResult Syscalls::Getrandom(const uint64_t* a) {
  const uint64_t size = std::min<uint64_t>(a[1], 1 << 20);
  auto out = UserSlice(a[0], size);
  if (!out.ok()) return Result(-EFAULT);
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = getrandom(out->data() + done, size - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Result(-EIO);
    }
    done += static_cast<uint64_t>(n);
  }
  return Result(static_cast<int64_t>(size));
}

backend::SyscallResult Syscalls::ClockGettime(const uint64_t* a) {
  timespec ts;
  if (clock_gettime(static_cast<clockid_t>(a[0]), &ts) != 0) {
    return Result(-EINVAL);
  }
  return Result(Put(UserSlice(a[1], sizeof(ts)), ts) ? 0 : -EFAULT);
}

backend::SyscallResult Syscalls::ClockGetres(const uint64_t* a) {
  timespec ts;
  if (clock_getres(static_cast<clockid_t>(a[0]), &ts) != 0) {
    return Result(-EINVAL);
  }
  if (a[1] == 0) return Result(0);
  return Result(Put(UserSlice(a[1], sizeof(ts)), ts) ? 0 : -EFAULT);
}

backend::SyscallResult Syscalls::Gettimeofday(const uint64_t* a) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  timeval tv{ts.tv_sec, ts.tv_nsec / 1000};
  if (a[0] != 0 && !Put(UserSlice(a[0], sizeof(tv)), tv)) {
    return Result(-EFAULT);
  }
  return Result(0);
}

backend::SyscallResult Syscalls::Nanosleep(const uint64_t* a) {
  auto in = UserSlice(a[0], sizeof(timespec));
  if (!in.ok()) return Result(-EFAULT);
  timespec ts;
  std::memcpy(&ts, in->data(), sizeof(ts));
  if (ts.tv_sec < 0 || ts.tv_nsec < 0 || ts.tv_nsec >= 1'000'000'000) {
    return Result(-EINVAL);
  }
  constexpr int64_t kNs = 1'000'000'000;
  // Saturated: a program may ask for centuries (the fuzzer did: the product
  // overflowed int64).
  const int64_t wanted =
      ts.tv_sec > (INT64_MAX - ts.tv_nsec) / kNs
          ? INT64_MAX
          : static_cast<int64_t>(ts.tv_sec) * kNs + ts.tv_nsec;
  const int64_t slept = std::min(wanted, kMaxSleepNs);
  std::this_thread::sleep_for(std::chrono::nanoseconds(slept));
  if (slept < wanted) {
    // Like a signal arriving: EINTR with the time left (exact, taken from
    // the request, not the saturated sum), so the program's loop sleeps
    // again and the call timeout can stop it in between.
    if (a[1] != 0) {
      timespec rem{static_cast<time_t>(ts.tv_sec - slept / kNs),
                   static_cast<long>(ts.tv_nsec - slept % kNs)};
      if (rem.tv_nsec < 0) {
        rem.tv_nsec += kNs;
        rem.tv_sec -= 1;
      }
      Put(UserSlice(a[1], sizeof(rem)), rem);
    }
    return Result(-EINTR);
  }
  return Result(0);
}

}  // namespace thaw::linux_abi
