// FileSource: where a Linux program's file system calls open host files —
// the read-only file view of ProgramOptions::files. In the host process it
// is a FileView (lib/linux/file_view.h), which resolves paths itself; in a
// worker process (VmSettings::worker_process), which may open nothing, it
// is a broker that asks the host to resolve and open each path with the
// host's own FileView and hands back the opened descriptor
// (lib/worker/brokered_files.h). The system call layer sees only this.
//
// Thread safety: implementations are safe to call from any thread.
#ifndef THAW_LIB_LINUX_FILE_SOURCE_H_
#define THAW_LIB_LINUX_FILE_SOURCE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "thaw/options.h"

namespace thaw::linux_abi {

// An owned file descriptor.
class HostFd {
 public:
  explicit HostFd(int fd = -1) : fd_(fd) {}
  ~HostFd();
  HostFd(HostFd&& other) noexcept : fd_(other.release()) {}
  HostFd& operator=(HostFd&& other) noexcept;
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

inline constexpr uint64_t kMaxPath = 4096;

class FileSource {
 public:
  virtual ~FileSource() = default;

  struct Resolved {
    std::string path;  // normalized guest path
    HostFd fd;         // open as asked; -1 for a virtual directory
    bool virtual_dir = false;
  };
  // Resolves `path` (absolute, or relative to `cwd`) and opens it with
  // `flags` (O_RDONLY, optionally O_DIRECTORY / O_PATH). Errors are errno
  // values (ErrnoOf): ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG, EACCES (a path
  // that would leave the view), ...
  virtual absl::StatusOr<Resolved> Open(absl::string_view cwd,
                                        absl::string_view path, int flags,
                                        bool follow_last = true) const = 0;
  // The target of the symlink at `path` (not followed).
  virtual absl::StatusOr<std::string> ReadLink(
      absl::string_view cwd, absl::string_view path) const = 0;
  // Paths refused because they would have left the view, so far (0 where
  // the count is kept elsewhere: a broker's host keeps it).
  virtual uint64_t escapes() const = 0;
};

// An error status carrying errno `error`, for `what`.
absl::Status ErrnoError(int error, absl::string_view what);
// The errno an error status of a FileSource carries (EIO if none).
int ErrnoOf(const absl::Status& status);

// Makes the file source of a program whose view is `mounts` (not empty).
using FileSourceFactory =
    std::function<absl::StatusOr<std::shared_ptr<const FileSource>>(
        const std::vector<FileMount>& mounts)>;

// The factory every program in this process uses: FileView::Create unless
// replaced. A worker process replaces it, once, before its first Vm: the
// whole process may open no file (its seccomp filter), so every program in
// it gets its files through the host.
void SetFileSourceFactory(FileSourceFactory factory);
absl::StatusOr<std::shared_ptr<const FileSource>> MakeFileSource(
    const std::vector<FileMount>& mounts);

}  // namespace thaw::linux_abi

#endif  // THAW_LIB_LINUX_FILE_SOURCE_H_
