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
#include "lib/linux/file_source.h"
#include "thaw/options.h"

namespace thaw::linux_abi {

class FileView final : public FileSource {
 public:
  // Opens every mount's host directory (O_PATH). InvalidArgument naming a
  // mount that is not an absolute directory path.
  static absl::StatusOr<std::unique_ptr<FileView>> Create(
      const std::vector<FileMount>& mounts);

  absl::StatusOr<Resolved> Open(absl::string_view cwd, absl::string_view path,
                                int flags,
                                bool follow_last = true) const override;
  absl::StatusOr<std::string> ReadLink(absl::string_view cwd,
                                       absl::string_view path) const override;

  // Paths refused because they would have left the view, so far.
  uint64_t escapes() const override { return escapes_; }

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

}  // namespace thaw::linux_abi

#endif  // THAW_LIB_LINUX_FILE_VIEW_H_
