// Descriptors and files. A program starts with 0 (stdin, always at end of
// file), 1 and 2 (the Vm's console) and THAW_PROGRAM_FD (the request
// channel); it opens host files read-only through its FileView, plus
// /dev/null, /dev/urandom and /dev/fd/N. Writing to a file is EROFS.
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "lib/linux/syscalls.h"
#include "thaw/program.h"

namespace thaw::linux_abi {
namespace {
// iovec entries one readv/writev may pass (Linux's IOV_MAX).
constexpr uint64_t kMaxIov = 1024;
constexpr int64_t kAtFdcwd = -100;
// Bytes one read of a host file may move (a larger read is short).
constexpr uint64_t kMaxRead = 16ull << 20;
}  // namespace

Syscalls::Syscalls(GuestMemory& memory, ProgramHost& host, Layout layout,
                   std::shared_ptr<const FileSource> view, std::string cwd)
    : memory_(memory),
      host_(host),
      layout_(layout),
      view_(std::move(view)),
      cwd_(FileView::Absolute("/", cwd)),
      fds_(kMaxFds),
      brk_(layout.brk_start),
      mmap_low_(layout.mmap_top) {
  using Kind = OpenFile::Kind;
  auto make = [](Kind kind, const char* path) {
    auto file = std::make_shared<OpenFile>();
    file->kind = kind;
    file->path = path;
    return file;
  };
  fds_[0] = make(Kind::kStdin, "/dev/stdin");
  fds_[1] = fds_[2] = make(Kind::kConsole, "/dev/console");
  fds_[THAW_PROGRAM_FD] = make(Kind::kRequest, "thaw:requests");
}

Syscalls::OpenFile* Syscalls::File(int64_t fd) {
  if (fd < 0 || fd >= kMaxFds) return nullptr;
  return fds_[fd].get();
}

int64_t Syscalls::Install(std::shared_ptr<OpenFile> file, int64_t from) {
  for (int64_t fd = std::max<int64_t>(from, 0); fd < kMaxFds; ++fd) {
    if (fds_[fd] == nullptr) {
      fds_[fd] = std::move(file);
      return fd;
    }
  }
  return -EMFILE;
}

absl::StatusOr<std::string> Syscalls::PathAt(uint64_t address) {
  if (address < 0x200000 || address >= memory_.size()) {
    return absl::OutOfRangeError("path");
  }
  const uint64_t room = std::min<uint64_t>(kMaxPath, memory_.size() - address);
  auto bytes = UserSlice(address, room);
  if (!bytes.ok()) return bytes.status();
  const void* end = std::memchr(bytes->data(), 0, bytes->size());
  if (end == nullptr) return absl::ResourceExhaustedError("path too long");
  return std::string(reinterpret_cast<const char*>(bytes->data()),
                     static_cast<const uint8_t*>(end) - bytes->data());
}

absl::StatusOr<std::string> Syscalls::BaseDir(int64_t dirfd) {
  if (dirfd == kAtFdcwd) return cwd_;
  OpenFile* dir = File(dirfd);
  if (dir == nullptr) return absl::NotFoundError("dirfd");
  if (dir->kind != OpenFile::Kind::kDir &&
      dir->kind != OpenFile::Kind::kVirtualDir &&
      dir->kind != OpenFile::Kind::kTmpDir) {
    return absl::FailedPreconditionError("dirfd");
  }
  return dir->path;
}

int64_t Syscalls::OpenPath(int64_t dirfd, uint64_t path_address, int flags) {
  auto path = PathAt(path_address);
  if (!path.ok()) {
    return path.status().code() == absl::StatusCode::kResourceExhausted
               ? -ENAMETOOLONG
               : -EFAULT;
  }
  using Kind = OpenFile::Kind;
  auto file = std::make_shared<OpenFile>();
  auto base_dir = BaseDir(dirfd);
  if (!base_dir.ok()) return -EBADF;
  const std::string absolute = FileView::Absolute(*base_dir, *path);
  file->flags = flags;
  if (InTmp(absolute)) return OpenTmp(absolute, flags);
  // A few devices every runtime expects.
  if (absolute == "/dev/null") {
    file->kind = Kind::kNull;
  } else if (absolute == "/dev/urandom" || absolute == "/dev/random") {
    file->kind = Kind::kRandom;
  } else if (absolute.rfind("/dev/fd/", 0) == 0 ||
             absolute.rfind("/proc/self/fd/", 0) == 0) {
    int64_t n = -1;
    if (!absl::SimpleAtoi(absolute.substr(absolute.rfind('/') + 1), &n) ||
        File(n) == nullptr) {
      return -ENOENT;
    }
    return Install(fds_[n]);
  } else {
    if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC))) {
      return -EROFS;
    }
    if (view_ == nullptr) return -ENOENT;
    auto base = BaseDir(dirfd);
    if (!base.ok()) return -EBADF;
    auto opened = view_->Open(*base, *path, O_RDONLY | (flags & O_DIRECTORY),
                              !(flags & O_NOFOLLOW));
    if (!opened.ok()) return -ErrnoOf(opened.status());
    file->path = opened->path;
    if (opened->virtual_dir) {
      file->kind = Kind::kVirtualDir;
    } else {
      struct stat st;
      if (fstat(opened->fd.get(), &st) != 0) return -errno;
      file->kind = S_ISDIR(st.st_mode) ? Kind::kDir : Kind::kFile;
      file->host = std::move(opened->fd);
    }
  }
  if ((flags & O_DIRECTORY) && file->kind != Kind::kDir &&
      file->kind != Kind::kVirtualDir) {
    return -ENOTDIR;
  }
  return Install(std::move(file));
}

backend::SyscallResult Syscalls::Open(const uint64_t* a) {
  return Result(OpenPath(kAtFdcwd, a[0], static_cast<int>(a[1])));
}

backend::SyscallResult Syscalls::Openat(const uint64_t* a) {
  return Result(OpenPath(static_cast<int64_t>(static_cast<int32_t>(a[0])), a[1],
                         static_cast<int>(a[2])));
}

backend::SyscallResult Syscalls::Read(const uint64_t* a) {
  OpenFile* file = File(static_cast<int64_t>(a[0]));
  if (file == nullptr) return Result(-EBADF);
  using Kind = OpenFile::Kind;
  if (a[2] == 0) return Result(0);
  auto out = UserSlice(a[1], std::min(a[2], kMaxRead));
  if (!out.ok()) return Result(-EFAULT);
  switch (file->kind) {
    case Kind::kStdin:
    case Kind::kNull:
      return Result(0);
    case Kind::kRequest:
      return host_.ReadRequest(a[1], a[2]);
    case Kind::kRandom: {
      ssize_t n = getrandom(out->data(), out->size(), 0);
      return Result(n < 0 ? -EIO : n);
    }
    case Kind::kFile: {
      ssize_t n = pread(file->host.get(), out->data(), out->size(),
                        static_cast<off_t>(file->offset));
      if (n < 0) return Result(-errno);
      file->offset += static_cast<uint64_t>(n);
      return Result(n);
    }
    case Kind::kTmpFile: {
      const int64_t n = ReadTmp(*file, a[1], out->size(), file->offset);
      if (n > 0) file->offset += static_cast<uint64_t>(n);
      return Result(n);
    }
    case Kind::kDir:
    case Kind::kVirtualDir:
    case Kind::kTmpDir:
      return Result(-EISDIR);
    case Kind::kConsole:
      return Result(-EBADF);
  }
  return Result(-EBADF);
}

backend::SyscallResult Syscalls::Pread64(const uint64_t* a) {
  OpenFile* file = File(static_cast<int64_t>(a[0]));
  if (file == nullptr) return Result(-EBADF);
  if (file->kind == OpenFile::Kind::kTmpFile) {
    return Result(ReadTmp(*file, a[1], std::min(a[2], kMaxRead), a[3]));
  }
  if (file->kind != OpenFile::Kind::kFile) return Result(-ESPIPE);
  auto out = UserSlice(a[1], std::min(a[2], kMaxRead));
  if (!out.ok()) return Result(-EFAULT);
  ssize_t n = pread(file->host.get(), out->data(), out->size(),
                    static_cast<off_t>(a[3]));
  return Result(n < 0 ? -errno : n);
}

backend::SyscallResult Syscalls::Write(const uint64_t* a) {
  OpenFile* file = File(static_cast<int64_t>(a[0]));
  if (file == nullptr) return Result(-EBADF);
  auto bytes = UserSlice(a[1], a[2]);
  if (!bytes.ok()) return Result(-EFAULT);
  using Kind = OpenFile::Kind;
  switch (file->kind) {
    case Kind::kConsole:
      host_.WriteConsole(absl::string_view(
          reinterpret_cast<const char*>(bytes->data()), bytes->size()));
      return Result(static_cast<int64_t>(bytes->size()));
    case Kind::kRequest:
      return Result(host_.WriteReply(*bytes));
    case Kind::kNull:
      return Result(static_cast<int64_t>(bytes->size()));
    case Kind::kTmpFile:
      return Result(WriteTmp(*file, *bytes));
    case Kind::kFile:
    case Kind::kDir:
    case Kind::kVirtualDir:
    case Kind::kTmpDir:
      return Result(-EBADF);  // opened read-only
    case Kind::kStdin:
    case Kind::kRandom:
      return Result(-EBADF);
  }
  return Result(-EBADF);
}

absl::StatusOr<std::vector<iovec>> Syscalls::IoVectors(uint64_t address,
                                                       uint64_t count) {
  if (count > kMaxIov) return absl::InvalidArgumentError("iovcnt");
  auto bytes = UserSlice(address, count * sizeof(iovec));
  if (!bytes.ok()) return bytes.status();
  std::vector<iovec> vectors(count);
  if (count > 0) std::memcpy(vectors.data(), bytes->data(), bytes->size());
  return vectors;
}

backend::SyscallResult Syscalls::Readv(const uint64_t* a) {
  auto vectors = IoVectors(a[1], a[2]);
  if (!vectors.ok()) return Result(a[2] > kMaxIov ? -EINVAL : -EFAULT);
  int64_t total = 0;
  for (const iovec& v : *vectors) {
    if (v.iov_len == 0) continue;
    const uint64_t args[3] = {a[0], reinterpret_cast<uint64_t>(v.iov_base),
                              v.iov_len};
    backend::SyscallResult r = Read(args);
    // A parked read of the request channel ends the call here.
    if (r.park) return total > 0 ? Result(total) : r;
    const int64_t n = static_cast<int64_t>(r.value);
    if (n < 0) return total > 0 ? Result(total) : r;
    total += n;
    if (static_cast<uint64_t>(n) < v.iov_len) break;
    OpenFile* file = File(static_cast<int64_t>(a[0]));
    if (file != nullptr && file->kind == OpenFile::Kind::kRequest) break;
  }
  return Result(total);
}

backend::SyscallResult Syscalls::Writev(const uint64_t* a) {
  auto vectors = IoVectors(a[1], a[2]);
  if (!vectors.ok()) return Result(a[2] > kMaxIov ? -EINVAL : -EFAULT);
  int64_t total = 0;
  for (const iovec& v : *vectors) {
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
  if (File(fd) == nullptr) return Result(-EBADF);
  fds_[fd].reset();
  return Result(0);
}

backend::SyscallResult Syscalls::Lseek(const uint64_t* a) {
  OpenFile* file = File(static_cast<int64_t>(a[0]));
  if (file == nullptr) return Result(-EBADF);
  if (file->kind == OpenFile::Kind::kDir) {
    // Rewinding a directory stream (what seekdir(0)/rewinddir do).
    off_t at = lseek(file->host.get(), static_cast<off_t>(a[1]),
                     static_cast<int>(a[2]));
    return Result(at < 0 ? -errno : at);
  }
  if (file->kind == OpenFile::Kind::kTmpDir) {
    if (a[1] != 0 || static_cast<int>(a[2]) != SEEK_SET) return Result(-EINVAL);
    file->offset = 0;
    return Result(0);
  }
  if (file->kind != OpenFile::Kind::kFile &&
      file->kind != OpenFile::Kind::kTmpFile) {
    return Result(-ESPIPE);
  }
  struct stat st;
  if (file->kind == OpenFile::Kind::kTmpFile) {
    auto it = tmp_files_.find(file->path);
    st.st_size =
        it == tmp_files_.end() ? 0 : static_cast<off_t>(it->second.size);
  } else if (fstat(file->host.get(), &st) != 0) {
    return Result(-errno);
  }
  int64_t base = 0;
  switch (static_cast<int>(a[2])) {
    case SEEK_SET:
      break;
    case SEEK_CUR:
      base = static_cast<int64_t>(file->offset);
      break;
    case SEEK_END:
      base = st.st_size;
      break;
    default:
      return Result(-EINVAL);
  }
  const int64_t at = base + static_cast<int64_t>(a[1]);
  if (at < 0) return Result(-EINVAL);
  file->offset = static_cast<uint64_t>(at);
  return Result(at);
}

backend::SyscallResult Syscalls::Ioctl(const uint64_t* a) {
  // No descriptor is a terminal: TCGETS, TIOCGWINSZ and the rest.
  return Result(File(static_cast<int64_t>(a[0])) ? -ENOTTY : -EBADF);
}

int64_t Syscalls::StatFile(OpenFile& file, uint64_t out_address) {
  auto out = UserSlice(out_address, sizeof(struct stat));
  if (!out.ok()) return -EFAULT;
  struct stat st;
  std::memset(&st, 0, sizeof(st));
  using Kind = OpenFile::Kind;
  if (file.kind == Kind::kFile || file.kind == Kind::kDir) {
    if (fstat(file.host.get(), &st) != 0) return -errno;
    // Read-only to the program, whoever owns it on the host.
    st.st_mode &= ~static_cast<mode_t>(0222);
  } else if (file.kind == Kind::kTmpFile || file.kind == Kind::kTmpDir) {
    st.st_nlink = 1;
    st.st_uid = st.st_gid = 1000;
    st.st_blksize = 4096;
    st.st_ino = std::hash<std::string>()(file.path) | 1;
    if (file.kind == Kind::kTmpDir) {
      st.st_mode = S_IFDIR | 0755;
    } else {
      auto it = tmp_files_.find(file.path);
      st.st_mode = S_IFREG | 0644;
      st.st_size =
          it == tmp_files_.end() ? 0 : static_cast<off_t>(it->second.size);
    }
  } else {
    st.st_nlink = 1;
    st.st_uid = st.st_gid = 1000;
    st.st_blksize = 4096;
    st.st_mode = file.kind == Kind::kVirtualDir ? (S_IFDIR | 0555)
                 : file.kind == Kind::kRequest  ? (S_IFIFO | 0600)
                                                : (S_IFCHR | 0666);
  }
  std::memcpy(out->data(), &st, sizeof(st));
  return 0;
}

int64_t Syscalls::StatPath(int64_t dirfd, uint64_t path_address, uint64_t out,
                           int flags) {
  auto path = PathAt(path_address);
  if (!path.ok()) return -EFAULT;
  if (path->empty() && (flags & AT_EMPTY_PATH)) {
    OpenFile* file = File(dirfd);
    return file == nullptr ? -EBADF : StatFile(*file, out);
  }
  const int64_t fd =
      OpenPath(dirfd, path_address,
               O_RDONLY | ((flags & AT_SYMLINK_NOFOLLOW) ? O_NOFOLLOW : 0));
  if (fd == -ELOOP && (flags & AT_SYMLINK_NOFOLLOW)) {
    // The path names a symlink: report it as one.
    auto out_slice = UserSlice(out, sizeof(struct stat));
    if (!out_slice.ok()) return -EFAULT;
    struct stat st;
    std::memset(&st, 0, sizeof(st));
    st.st_mode = S_IFLNK | 0777;
    st.st_nlink = 1;
    std::memcpy(out_slice->data(), &st, sizeof(st));
    return 0;
  }
  if (fd < 0) return fd;
  const int64_t result = StatFile(*fds_[fd], out);
  fds_[fd].reset();
  return result;
}

backend::SyscallResult Syscalls::Fstat(const uint64_t* a) {
  OpenFile* file = File(static_cast<int64_t>(a[0]));
  return Result(file == nullptr ? -EBADF : StatFile(*file, a[1]));
}

backend::SyscallResult Syscalls::Stat(const uint64_t* a) {
  return Result(StatPath(kAtFdcwd, a[0], a[1], 0));
}

backend::SyscallResult Syscalls::Lstat(const uint64_t* a) {
  return Result(StatPath(kAtFdcwd, a[0], a[1], AT_SYMLINK_NOFOLLOW));
}

backend::SyscallResult Syscalls::Newfstatat(const uint64_t* a) {
  return Result(
      StatPath(static_cast<int32_t>(a[0]), a[1], a[2], static_cast<int>(a[3])));
}

backend::SyscallResult Syscalls::Access(const uint64_t* a) {
  const uint64_t args[4] = {static_cast<uint64_t>(kAtFdcwd), a[0], a[1], 0};
  return Faccessat(args);
}

backend::SyscallResult Syscalls::Faccessat(const uint64_t* a) {
  if (static_cast<int>(a[2]) & W_OK) {
    const int64_t fd = OpenPath(static_cast<int32_t>(a[0]), a[1], O_RDONLY);
    if (fd < 0) return Result(fd);
    const bool writable = fds_[fd]->kind == OpenFile::Kind::kTmpFile ||
                          fds_[fd]->kind == OpenFile::Kind::kTmpDir;
    fds_[fd].reset();
    return Result(writable ? 0 : -EROFS);
  }
  const int64_t fd = OpenPath(static_cast<int32_t>(a[0]), a[1], O_RDONLY);
  if (fd < 0) return Result(fd);
  fds_[fd].reset();
  return Result(0);
}

backend::SyscallResult Syscalls::Readlink(const uint64_t* a) {
  const uint64_t args[4] = {static_cast<uint64_t>(kAtFdcwd), a[0], a[1], a[2]};
  return Readlinkat(args);
}

backend::SyscallResult Syscalls::Readlinkat(const uint64_t* a) {
  auto path = PathAt(a[1]);
  if (!path.ok()) return Result(-EFAULT);
  if (FileView::Absolute(cwd_, *path) == "/proc/self/exe") {
    return Result(-ENOENT);  // no /proc: runtimes fall back to argv[0]
  }
  if (view_ == nullptr) return Result(-ENOENT);
  auto base = BaseDir(static_cast<int32_t>(a[0]));
  if (!base.ok()) return Result(-EBADF);
  auto target = view_->ReadLink(*base, *path);
  if (!target.ok()) return Result(-ErrnoOf(target.status()));
  const uint64_t n = std::min<uint64_t>(target->size(), a[3]);
  auto out = UserSlice(a[2], n);
  if (!out.ok()) return Result(-EFAULT);
  std::memcpy(out->data(), target->data(), n);
  return Result(static_cast<int64_t>(n));
}

backend::SyscallResult Syscalls::Getdents64(const uint64_t* a) {
  OpenFile* file = File(static_cast<int64_t>(a[0]));
  if (file == nullptr) return Result(-EBADF);
  if (file->kind == OpenFile::Kind::kVirtualDir) return Result(0);  // empty
  if (file->kind == OpenFile::Kind::kTmpDir) {
    return Result(TmpDents(*file, a[1], std::min<uint64_t>(a[2], 1 << 20)));
  }
  if (file->kind != OpenFile::Kind::kDir) return Result(-ENOTDIR);
  auto out = UserSlice(a[1], std::min<uint64_t>(a[2], 1 << 20));
  if (!out.ok()) return Result(-EFAULT);
  // The host's linux_dirent64 records are the program's: same ABI.
  long n = syscall(SYS_getdents64, file->host.get(), out->data(), out->size());
  return Result(n < 0 ? -errno : n);
}

backend::SyscallResult Syscalls::Dup(const uint64_t* a) {
  const int64_t fd = static_cast<int64_t>(a[0]);
  if (File(fd) == nullptr) return Result(-EBADF);
  return Result(Install(fds_[fd]));
}

backend::SyscallResult Syscalls::Dup2(const uint64_t* a) {
  const int64_t from = static_cast<int64_t>(a[0]);
  const int64_t to = static_cast<int64_t>(a[1]);
  if (File(from) == nullptr || to < 0 || to >= kMaxFds) return Result(-EBADF);
  fds_[to] = fds_[from];
  return Result(to);
}

backend::SyscallResult Syscalls::Dup3(const uint64_t* a) {
  if (a[0] == a[1]) return Result(-EINVAL);
  return Dup2(a);
}

backend::SyscallResult Syscalls::Fcntl(const uint64_t* a) {
  const int64_t fd = static_cast<int64_t>(a[0]);
  if (File(fd) == nullptr) return Result(-EBADF);
  switch (static_cast<int>(a[1])) {
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
      return Result(Install(fds_[fd], static_cast<int64_t>(a[2])));
    case F_GETFD:
    case F_SETFD:
    case F_SETFL:
      return Result(0);  // no exec, no non-blocking I/O: flags change nothing
    case F_GETFL:
      return Result(fd == 1 || fd == 2 ? O_WRONLY
                    : fd == 3          ? O_RDWR
                                       : O_RDONLY);
    default:
      return Result(-EINVAL);
  }
}

backend::SyscallResult Syscalls::Getcwd(const uint64_t* a) {
  if (a[1] < cwd_.size() + 1) return Result(-ERANGE);
  auto out = UserSlice(a[0], cwd_.size() + 1);
  if (!out.ok()) return Result(-EFAULT);
  std::memcpy(out->data(), cwd_.c_str(), cwd_.size() + 1);
  return Result(static_cast<int64_t>(cwd_.size() + 1));
}

backend::SyscallResult Syscalls::Chdir(const uint64_t* a) {
  const int64_t fd = OpenPath(kAtFdcwd, a[0], O_RDONLY | O_DIRECTORY);
  if (fd < 0) return Result(fd);
  cwd_ = fds_[fd]->path;
  fds_[fd].reset();
  return Result(0);
}

}  // namespace thaw::linux_abi
