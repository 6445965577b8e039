// FileView: the read-only host directories a Linux program may see, and
// path resolution in the program's namespace.
//
// A path is resolved one component at a time, as a kernel would: "." and
// ".." at the guest level (".." never climbs above "/"), symlinks read and
// followed in the guest namespace (an absolute target restarts from the
// guest root, at most 40 links), and each component opened on the host with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
// beneath the directory of the mount it falls in. No step can leave a
// mount's directory on the host, whatever the program's paths or the host's
// symlinks say. Directories above mounts ("/" when only "/usr" is mounted)
// exist as empty virtual directories.
//
// Thread safety: immutable after Create; methods may run on any thread.
#ifndef THAW_LIB_LINUX_FILE_VIEW_H_
#define THAW_LIB_LINUX_FILE_VIEW_H_

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

class FileView {
 public:
  // Opens every mount's host directory (O_PATH). InvalidArgument naming a
  // mount that is not an absolute directory path.
  static absl::StatusOr<std::unique_ptr<FileView>> Create(
      const std::vector<FileMount>& mounts);

  struct Resolved {
    std::string path;  // normalized guest path
    HostFd fd;         // open as asked; -1 for a virtual directory
    bool virtual_dir = false;
  };
  // Resolves `path` (absolute, or relative to `cwd`) and opens it with
  // `flags` (O_RDONLY, optionally O_DIRECTORY / O_PATH). Errors are errno
  // values: ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG, EACCES (a path that would
  // leave the view), ...
  absl::StatusOr<Resolved> Open(absl::string_view cwd, absl::string_view path,
                                int flags, bool follow_last = true) const;
  // The target of the symlink at `path` (not followed).
  absl::StatusOr<std::string> ReadLink(absl::string_view cwd,
                                       absl::string_view path) const;

  // Paths refused because they would have left the view, so far.
  uint64_t escapes() const { return escapes_; }

  // Normalized absolute guest path of `path` against `cwd`, lexically.
  static std::string Absolute(absl::string_view cwd, absl::string_view path);

 private:
  struct Mount {
    std::string guest;  // normalized, no trailing slash ("" for "/")
    HostFd root;        // O_PATH directory
  };
  // The mount holding `guest` (normalized), and the path below it.
  const Mount* Find(const std::string& guest, std::string* rest) const;
  bool IsVirtualDir(const std::string& guest) const;

  std::vector<Mount> mounts_;
  mutable uint64_t escapes_ = 0;
};

// The errno an error status of FileView carries (EIO if none).
int ErrnoOf(const absl::Status& status);

}  // namespace thaw::linux_abi

#endif  // THAW_LIB_LINUX_FILE_VIEW_H_
