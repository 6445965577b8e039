// The one table from x86-64 syscall number to name and handler (gVisor's
// linux64.go is the model). A number not here is ENOSYS and counted.
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "lib/linux/syscalls.h"
#include "lib/x86/user_mode.h"

namespace thaw::linux_abi {

struct SyscallTable {
  using S = Syscalls;
  static constexpr S::Entry kEntries[] = {
      {0, "read", &S::Read},
      {1, "write", &S::Write},
      {2, "open", &S::Open},
      {3, "close", &S::Close},
      {4, "stat", &S::Stat},
      {5, "fstat", &S::Fstat},
      {6, "lstat", &S::Lstat},
      {8, "lseek", &S::Lseek},
      {9, "mmap", &S::Mmap},
      {10, "mprotect", &S::Mprotect},
      {11, "munmap", &S::Munmap},
      {12, "brk", &S::Brk},
      {13, "rt_sigaction", &S::RtSigaction},
      {14, "rt_sigprocmask", &S::RtSigprocmask},
      {16, "ioctl", &S::Ioctl},
      {17, "pread64", &S::Pread64},
      {19, "readv", &S::Readv},
      {20, "writev", &S::Writev},
      {21, "access", &S::Access},
      {24, "sched_yield", &S::Zero},
      {25, "mremap", &S::Mremap},
      {28, "madvise", &S::Madvise},
      {32, "dup", &S::Dup},
      {33, "dup2", &S::Dup2},
      {35, "nanosleep", &S::Nanosleep},
      {39, "getpid", &S::Identity},
      {41, "socket", &S::NoNetwork},
      {56, "clone", &S::NotSupported},
      {57, "fork", &S::NotSupported},
      {58, "vfork", &S::NotSupported},
      {59, "execve", &S::NotSupported},
      {60, "exit", &S::Exit},
      {62, "kill", &S::Kill},
      {63, "uname", &S::Uname},
      {72, "fcntl", &S::Fcntl},
      {79, "getcwd", &S::Getcwd},
      {80, "chdir", &S::Chdir},
      {82, "rename", &S::Rename},
      {83, "mkdir", &S::Mkdir},
      {84, "rmdir", &S::Rmdir},
      {87, "unlink", &S::Unlink},
      {89, "readlink", &S::Readlink},
      {95, "umask", &S::Zero},
      {96, "gettimeofday", &S::Gettimeofday},
      {102, "getuid", &S::Identity},
      {104, "getgid", &S::Identity},
      {107, "geteuid", &S::Identity},
      {108, "getegid", &S::Identity},
      {110, "getppid", &S::Identity},
      {131, "sigaltstack", &S::Zero},
      {158, "arch_prctl", &S::ArchPrctl},
      {99, "sysinfo", &S::Sysinfo},
      {186, "gettid", &S::Identity},
      {201, "time", &S::Time},
      {202, "futex", &S::Futex},
      {204, "sched_getaffinity", &S::SchedGetaffinity},
      {217, "getdents64", &S::Getdents64},
      {218, "set_tid_address", &S::SetTidAddress},
      {228, "clock_gettime", &S::ClockGettime},
      {229, "clock_getres", &S::ClockGetres},
      {231, "exit_group", &S::Exit},
      {234, "tgkill", &S::Kill},
      {257, "openat", &S::Openat},
      {258, "mkdirat", &S::Mkdirat},
      {262, "newfstatat", &S::Newfstatat},
      {263, "unlinkat", &S::Unlinkat},
      {267, "readlinkat", &S::Readlinkat},
      {269, "faccessat", &S::Faccessat},
      {273, "set_robust_list", &S::Zero},
      {292, "dup3", &S::Dup3},
      {302, "prlimit64", &S::Prlimit64},
      {318, "getrandom", &S::Getrandom},
      {435, "clone3", &S::NotSupported},
      {439, "faccessat2", &S::Faccessat},
  };
};

const Syscalls::Entry* Syscalls::Find(uint64_t number) {
  for (const Entry& e : SyscallTable::kEntries) {
    if (e.number == number) return &e;
  }
  return nullptr;
}

std::string Syscalls::Name(uint64_t number) {
  const Entry* e = Find(number);
  return e ? std::string(e->name) : absl::StrCat("syscall_", number);
}

backend::SyscallResult Syscalls::Dispatch(const backend::Syscall& call) {
  ++calls_;
  current_ = call.number;
  const Entry* entry = Find(call.number);
  if (entry == nullptr) {
    ++unsupported_[call.number];
    return Result(-ENOSYS);
  }
  return (this->*entry->handler)(call.args);
}

absl::StatusOr<absl::Span<uint8_t>> Syscalls::UserSlice(uint64_t address,
                                                        uint64_t size) {
  if (address < x86::kUserMemoryStart) {
    return absl::OutOfRangeError("address in thaw's host-owned memory");
  }
  return memory_.Slice(address, size, Name(current_));
}

backend::SyscallResult Syscalls::NotSupported(const uint64_t*) {
  // Threads, processes and programs: the program sees ENOSYS and can fall
  // back or fail with its own message; the count says what it wanted.
  ++unsupported_[current_];
  return Result(-ENOSYS);
}

backend::SyscallResult Syscalls::NoNetwork(const uint64_t*) {
  return Result(-EACCES);
}

}  // namespace thaw::linux_abi
