// The descriptors a program has: 0 (stdin, always at end of file), 1 and 2
// (the Vm's console), and THAW_PROGRAM_FD (the request channel). Host
// files come with the file view (not yet): opening one is ENOENT.
#include <asm/termbits.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

#include "lib/linux/syscalls.h"
#include "thaw/program.h"

namespace thaw::linux_abi {
namespace {
// iovec entries one readv/writev may pass (Linux's IOV_MAX).
constexpr uint64_t kMaxIov = 1024;
}  // namespace

backend::SyscallResult Syscalls::Read(const uint64_t* a) {
  const int64_t fd = static_cast<int64_t>(a[0]);
  if (fd == 0) return Result(0);
  if (fd != THAW_PROGRAM_FD) return Result(-EBADF);
  if (a[2] == 0) return Result(0);
  if (!UserSlice(a[1], a[2]).ok()) return Result(-EFAULT);
  return host_.ReadRequest(a[1], a[2]);
}

backend::SyscallResult Syscalls::Write(const uint64_t* a) {
  const int64_t fd = static_cast<int64_t>(a[0]);
  auto bytes = UserSlice(a[1], a[2]);
  if (!bytes.ok()) return Result(-EFAULT);
  if (fd == 1 || fd == 2) {
    host_.WriteConsole(absl::string_view(
        reinterpret_cast<const char*>(bytes->data()), bytes->size()));
    return Result(static_cast<int64_t>(bytes->size()));
  }
  if (fd == THAW_PROGRAM_FD) return Result(host_.WriteReply(*bytes));
  return Result(-EBADF);
}

backend::SyscallResult Syscalls::Readv(const uint64_t* a) {
  if (a[2] > kMaxIov) return Result(-EINVAL);
  auto vectors = UserSlice(a[1], a[2] * sizeof(iovec));
  if (!vectors.ok()) return Result(-EFAULT);
  // One request read per call keeps the stream simple: fill the first
  // non-empty buffer.
  for (uint64_t i = 0; i < a[2]; ++i) {
    iovec v;
    std::memcpy(&v, vectors->data() + i * sizeof(iovec), sizeof(v));
    if (v.iov_len == 0) continue;
    const uint64_t args[3] = {a[0], reinterpret_cast<uint64_t>(v.iov_base),
                              v.iov_len};
    return Read(args);
  }
  return Result(0);
}

backend::SyscallResult Syscalls::Writev(const uint64_t* a) {
  if (a[2] > kMaxIov) return Result(-EINVAL);
  auto vectors = UserSlice(a[1], a[2] * sizeof(iovec));
  if (!vectors.ok()) return Result(-EFAULT);
  int64_t total = 0;
  for (uint64_t i = 0; i < a[2]; ++i) {
    iovec v;
    std::memcpy(&v, vectors->data() + i * sizeof(iovec), sizeof(v));
    if (v.iov_len == 0) continue;
    const uint64_t args[3] = {a[0], reinterpret_cast<uint64_t>(v.iov_base),
                              v.iov_len};
    backend::SyscallResult r = Write(args);
    const int64_t n = static_cast<int64_t>(r.value);
    if (n < 0) return total > 0 ? Result(total) : r;
    total += n;
  }
  return Result(total);
}

backend::SyscallResult Syscalls::Close(const uint64_t* a) {
  const int64_t fd = static_cast<int64_t>(a[0]);
  return Result(fd >= 0 && fd <= THAW_PROGRAM_FD ? 0 : -EBADF);
}

backend::SyscallResult Syscalls::Lseek(const uint64_t* a) {
  const int64_t fd = static_cast<int64_t>(a[0]);
  return Result(fd >= 0 && fd <= THAW_PROGRAM_FD ? -ESPIPE : -EBADF);
}

backend::SyscallResult Syscalls::Ioctl(const uint64_t* a) {
  const int64_t fd = static_cast<int64_t>(a[0]);
  // No descriptor is a terminal: TCGETS, TIOCGWINSZ and the rest.
  return Result(fd >= 0 && fd <= THAW_PROGRAM_FD ? -ENOTTY : -EBADF);
}

backend::SyscallResult Syscalls::Fstat(const uint64_t* a) {
  const int64_t fd = static_cast<int64_t>(a[0]);
  if (fd < 0 || fd > THAW_PROGRAM_FD) return Result(-EBADF);
  auto out = UserSlice(a[1], sizeof(struct stat));
  if (!out.ok()) return Result(-EFAULT);
  struct stat st;
  std::memset(&st, 0, sizeof(st));
  // A character device for the console; a pipe-like stream for requests.
  st.st_mode = fd == THAW_PROGRAM_FD ? (S_IFIFO | 0600) : (S_IFCHR | 0620);
  st.st_nlink = 1;
  st.st_uid = st.st_gid = 1000;
  st.st_blksize = 4096;
  st.st_ino = static_cast<ino_t>(fd + 1);
  std::memcpy(out->data(), &st, sizeof(st));
  return Result(0);
}

backend::SyscallResult Syscalls::Openat(const uint64_t*) {
  return Result(-ENOENT);
}

backend::SyscallResult Syscalls::Getcwd(const uint64_t* a) {
  static constexpr char kCwd[] = "/";
  if (a[1] < sizeof(kCwd)) return Result(-ERANGE);
  auto out = UserSlice(a[0], sizeof(kCwd));
  if (!out.ok()) return Result(-EFAULT);
  std::memcpy(out->data(), kCwd, sizeof(kCwd));
  return Result(sizeof(kCwd));
}

}  // namespace thaw::linux_abi
