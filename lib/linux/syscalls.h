// Syscalls: the host side of a Linux program's system calls. One table
// (syscall_table.cc) maps each number to its name and handler, gVisor-style;
// numbers without a handler return ENOSYS and are counted. Handlers are
// short functions over validated arguments: every guest pointer and length
// goes through UserSlice(), which refuses thaw's host-owned first 2 MiB and
// anything outside guest memory (EFAULT), so a program can never make the
// host touch memory that is not its own.
//
// What a program gets: its memory (brk and anonymous mmap inside the Vm's
// memory), stdin (empty), stdout and stderr (the Vm's console), the request
// channel (THAW_PROGRAM_FD, include/thaw/program.h), time, randomness,
// identity, and no-op signal bookkeeping. Not yet: host files (a read-only
// view), threads, fork/exec (ENOSYS), network (EACCES).
//
// Thread safety: Dispatch() on the vCPU thread; the counters may be read
// from the thread that owns the Vm between runs.
#ifndef THAW_LIB_LINUX_SYSCALLS_H_
#define THAW_LIB_LINUX_SYSCALLS_H_

#include <sys/uio.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "lib/backend/backend.h"
#include "lib/guest_memory.h"
#include "lib/linux/file_view.h"

namespace thaw::snapshot::proto {
class LinuxProgram;
}  // namespace thaw::snapshot::proto

namespace thaw::linux_abi {

// Where the calls that are not about memory or time go (LinuxProgram).
class ProgramHost {
 public:
  virtual ~ProgramHost() = default;
  // read(THAW_PROGRAM_FD): the next request bytes, or park until a request.
  virtual backend::SyscallResult ReadRequest(uint64_t address,
                                             uint64_t size) = 0;
  // write(THAW_PROGRAM_FD): reply bytes; the count taken, or -errno.
  virtual int64_t WriteReply(absl::Span<const uint8_t> bytes) = 0;
  // stdout and stderr.
  virtual void WriteConsole(absl::string_view text) = 0;
};

class Syscalls {
 public:
  struct Layout {
    uint64_t brk_start;   // page-aligned end of the program image
    uint64_t mmap_top;    // mappings are placed below this (the stack)
    uint64_t stack_size;  // RLIMIT_STACK
  };
  // `view` may be null (no host files).
  Syscalls(GuestMemory& memory, ProgramHost& host, Layout layout,
           std::shared_ptr<const FileSource> view, std::string cwd);

  // The layer's state for a snapshot, and taking it back in a Syscalls
  // made with the same Layout over the snapshot's memory
  // (syscalls_persist.cc). DataLoss for a damaged state, FailedPrecondition
  // naming a host file that is gone or changed.
  void Save(snapshot::proto::LinuxProgram& state) const;
  absl::Status Restore(const snapshot::proto::LinuxProgram& state,
                       absl::string_view snapshot);

  // Places `size` bytes (page-aligned) among the mappings, as mmap would:
  // for the program's ELF interpreter. 0 if there is no room.
  uint64_t Reserve(uint64_t size);

  backend::SyscallResult Dispatch(const backend::Syscall& call);

  // exit / exit_group was called.
  bool exited() const { return exited_; }
  int exit_status() const { return exit_status_; }
  // The signal that ended the program (kill/tgkill to itself), or 0.
  int killed_by() const { return killed_by_; }
  // A call the program made that can never complete (a futex wait with no
  // other thread to wake it): the run stopped; this says why.
  const absl::Status& fatal() const { return fatal_; }

  uint64_t calls() const { return calls_; }
  // Calls answered ENOSYS (no handler, or not supported), per number.
  const std::map<uint64_t, uint64_t>& unsupported() const {
    return unsupported_;
  }
  // The name of syscall `number` ("syscall_N" when unknown).
  static std::string Name(uint64_t number);

 private:
  using Handler = backend::SyscallResult (Syscalls::*)(const uint64_t* args);
  struct Entry {
    uint32_t number;
    const char* name;
    Handler handler;
  };
  static const Entry* Find(uint64_t number);
  friend struct SyscallTable;

  static backend::SyscallResult Result(int64_t value) {
    backend::SyscallResult r;
    r.value = static_cast<uint64_t>(value);
    return r;
  }
  // Guest memory [address, address + size) of the program's own, or
  // nullopt (the caller returns EFAULT).
  absl::StatusOr<absl::Span<uint8_t>> UserSlice(uint64_t address,
                                                uint64_t size);

  // An open file description (shared by dup'ed descriptors).
  struct OpenFile {
    enum class Kind {
      kStdin,
      kConsole,
      kRequest,
      kFile,
      kDir,
      kVirtualDir,
      kNull,
      kRandom,
      kTmpFile,  // a file of /tmp, in guest memory
      kTmpDir,
    };
    Kind kind;
    HostFd host;       // kFile, kDir
    std::string path;  // in the program's namespace
    uint64_t offset = 0;
    int flags = 0;  // the open(2) flags (access mode, O_APPEND)
  };
  // /tmp: the program's only writable files. Their bytes live in guest
  // memory (a region among the mappings each), so a snapshot holds them
  // and Reset puts them back; the names and sizes are this layer's state.
  struct TmpFile {
    uint64_t address = 0, capacity = 0, size = 0;
  };
  static bool InTmp(const std::string& absolute);
  int64_t OpenTmp(const std::string& absolute, int flags);
  // Makes room for `size` bytes in `file`; 0 or -ENOSPC / -ENOMEM.
  int64_t GrowTmp(TmpFile& file, uint64_t size);
  int64_t ReadTmp(OpenFile& file, uint64_t address, uint64_t size, uint64_t at);
  int64_t WriteTmp(OpenFile& file, absl::Span<const uint8_t> bytes);
  int64_t TmpDents(OpenFile& dir, uint64_t address, uint64_t size);
  static constexpr int kMaxFds = 64;
  // The open file behind `fd`, or null.
  OpenFile* File(int64_t fd);
  // The lowest free descriptor at or above `from` now holding `file`, or
  // -EMFILE.
  int64_t Install(std::shared_ptr<OpenFile> file, int64_t from = 0);
  // openat's work: `dirfd` AT_FDCWD or a directory descriptor.
  int64_t OpenPath(int64_t dirfd, uint64_t path_address, int flags);
  // The iovec array of readv/writev (`count` entries at `address`), or
  // -EINVAL / -EFAULT.
  absl::StatusOr<std::vector<iovec>> IoVectors(uint64_t address,
                                               uint64_t count);
  // The guest path at `address` (NUL-terminated, shorter than kMaxPath).
  absl::StatusOr<std::string> PathAt(uint64_t address);
  // The directory a relative path is taken from.
  absl::StatusOr<std::string> BaseDir(int64_t dirfd);
  // stat of a path (AT_SYMLINK_NOFOLLOW / AT_EMPTY_PATH in `flags`) or of
  // an open file, into guest `out`; 0 or -errno.
  int64_t StatPath(int64_t dirfd, uint64_t path, uint64_t out, int flags);
  int64_t StatFile(OpenFile& file, uint64_t out);

  // memory_syscalls.cc
  backend::SyscallResult Brk(const uint64_t* a);
  backend::SyscallResult Mmap(const uint64_t* a);
  backend::SyscallResult Munmap(const uint64_t* a);
  backend::SyscallResult Mprotect(const uint64_t* a);
  backend::SyscallResult Madvise(const uint64_t* a);
  backend::SyscallResult Mremap(const uint64_t* a);
  // file_syscalls.cc
  backend::SyscallResult Read(const uint64_t* a);
  backend::SyscallResult Write(const uint64_t* a);
  backend::SyscallResult Readv(const uint64_t* a);
  backend::SyscallResult Writev(const uint64_t* a);
  backend::SyscallResult Close(const uint64_t* a);
  backend::SyscallResult Lseek(const uint64_t* a);
  backend::SyscallResult Ioctl(const uint64_t* a);
  backend::SyscallResult Fstat(const uint64_t* a);
  backend::SyscallResult Open(const uint64_t* a);
  backend::SyscallResult Openat(const uint64_t* a);
  backend::SyscallResult Getcwd(const uint64_t* a);
  backend::SyscallResult Chdir(const uint64_t* a);
  backend::SyscallResult Pread64(const uint64_t* a);
  backend::SyscallResult Stat(const uint64_t* a);
  backend::SyscallResult Lstat(const uint64_t* a);
  backend::SyscallResult Newfstatat(const uint64_t* a);
  backend::SyscallResult Access(const uint64_t* a);
  backend::SyscallResult Faccessat(const uint64_t* a);
  backend::SyscallResult Readlink(const uint64_t* a);
  backend::SyscallResult Readlinkat(const uint64_t* a);
  backend::SyscallResult Getdents64(const uint64_t* a);
  backend::SyscallResult Dup(const uint64_t* a);
  backend::SyscallResult Dup2(const uint64_t* a);
  backend::SyscallResult Dup3(const uint64_t* a);
  backend::SyscallResult Fcntl(const uint64_t* a);
  backend::SyscallResult Mkdir(const uint64_t* a);
  backend::SyscallResult Mkdirat(const uint64_t* a);
  backend::SyscallResult Unlink(const uint64_t* a);
  backend::SyscallResult Unlinkat(const uint64_t* a);
  backend::SyscallResult Rmdir(const uint64_t* a);
  backend::SyscallResult Rename(const uint64_t* a);
  // process_syscalls.cc
  backend::SyscallResult Exit(const uint64_t* a);
  backend::SyscallResult ArchPrctl(const uint64_t* a);
  backend::SyscallResult SetTidAddress(const uint64_t* a);
  backend::SyscallResult Zero(const uint64_t* a);
  backend::SyscallResult Identity(const uint64_t* a);
  backend::SyscallResult RtSigaction(const uint64_t* a);
  backend::SyscallResult RtSigprocmask(const uint64_t* a);
  backend::SyscallResult Uname(const uint64_t* a);
  backend::SyscallResult Prlimit64(const uint64_t* a);
  backend::SyscallResult SchedGetaffinity(const uint64_t* a);
  backend::SyscallResult Futex(const uint64_t* a);
  backend::SyscallResult Getrandom(const uint64_t* a);
  backend::SyscallResult ClockGettime(const uint64_t* a);
  backend::SyscallResult Gettimeofday(const uint64_t* a);
  backend::SyscallResult ClockGetres(const uint64_t* a);
  backend::SyscallResult Nanosleep(const uint64_t* a);
  backend::SyscallResult NotSupported(const uint64_t* a);
  backend::SyscallResult Kill(const uint64_t* a);
  backend::SyscallResult Time(const uint64_t* a);
  backend::SyscallResult Sysinfo(const uint64_t* a);
  backend::SyscallResult NoNetwork(const uint64_t* a);

  // Zeroes [address, address + size), which the program owns.
  void ZeroRange(uint64_t address, uint64_t size);
  // A free stretch of `size` bytes below mmap_top, or 0.
  uint64_t FindFree(uint64_t size);

  GuestMemory& memory_;
  ProgramHost& host_;
  const Layout layout_;
  std::shared_ptr<const FileSource> view_;
  std::string cwd_;
  std::vector<std::shared_ptr<OpenFile>> fds_;
  std::map<std::string, TmpFile> tmp_files_;
  std::set<std::string> tmp_dirs_{"/tmp"};
  uint64_t tmp_bytes_ = 0;  // capacity of all /tmp files
  uint64_t brk_;
  // Mappings by start address -> size; mmap_low_ is the lowest ever used,
  // so brk may grow up to it.
  std::map<uint64_t, uint64_t> mappings_;
  uint64_t mmap_low_;
  uint64_t fs_base_ = 0;
  bool exited_ = false;
  int exit_status_ = 0;
  int killed_by_ = 0;
  absl::Status fatal_;
  uint64_t calls_ = 0;
  uint64_t current_ = 0;  // the number being served
  std::map<uint64_t, uint64_t> unsupported_;
};

}  // namespace thaw::linux_abi

#endif  // THAW_LIB_LINUX_SYSCALLS_H_
