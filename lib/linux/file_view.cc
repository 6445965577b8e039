#include "lib/linux/file_view.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace thaw::linux_abi {
namespace {

constexpr int kMaxLinks = 40;

// One openat2 step beneath `dir`: never follows a symlink, never leaves
// `dir` (RESOLVE_BENEATH), never crosses a /proc magic link.
int OpenBeneath(int dir, const std::string& relative, int flags) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC | O_NOFOLLOW);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  // Safe: `how` is a complete open_how for this kernel's openat2.
  return static_cast<int>(
      syscall(SYS_openat2, dir, relative.c_str(), &how, sizeof(how)));
}

std::vector<std::string> Components(absl::string_view path) {
  std::vector<std::string> out;
  for (absl::string_view c : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    out.emplace_back(c);
  }
  return out;
}

}  // namespace

std::string FileView::Absolute(absl::string_view cwd, absl::string_view path) {
  std::vector<std::string> stack;
  auto apply = [&](absl::string_view p) {
    for (const std::string& c : Components(p)) {
      if (c == ".") continue;
      if (c == "..") {
        if (!stack.empty()) stack.pop_back();
        continue;
      }
      stack.push_back(c);
    }
  };
  if (!path.empty() && path[0] != '/') apply(cwd);
  apply(path);
  return absl::StrCat("/", absl::StrJoin(stack, "/"));
}

absl::StatusOr<std::unique_ptr<FileView>> FileView::Create(
    const std::vector<FileMount>& mounts) {
  auto view = std::unique_ptr<FileView>(new FileView);
  for (const FileMount& m : mounts) {
    const std::string guest_path =
        m.guest_path.empty() ? m.host_path : m.guest_path;
    if (m.host_path.empty() || m.host_path[0] != '/' || guest_path[0] != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("file mount \"", m.host_path, "\" -> \"", guest_path,
                       "\": both paths must be absolute"));
    }
    // Safe: the host path is the user's own configuration; O_PATH opens
    // nothing for reading.
    int fd = open(m.host_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "file mount \"", m.host_path,
          "\": not an accessible directory: ", std::strerror(errno)));
    }
    std::string guest = Absolute("/", guest_path);
    if (guest == "/") guest.clear();
    view->mounts_.push_back(Mount{guest, HostFd(fd)});
  }
  return view;
}

const FileView::Mount* FileView::Find(const std::string& guest,
                                      std::string* rest) const {
  const Mount* best = nullptr;
  for (const Mount& m : mounts_) {
    const bool inside =
        m.guest.empty() ||
        (guest.size() >= m.guest.size() &&
         guest.compare(0, m.guest.size(), m.guest) == 0 &&
         (guest.size() == m.guest.size() || guest[m.guest.size()] == '/'));
    if (inside && (best == nullptr || m.guest.size() > best->guest.size())) {
      best = &m;
    }
  }
  if (best != nullptr) {
    // The path below the mount, without its leading slashes ("." for the
    // mount itself). Built with find/substr: GCC 12 at -O3 warns falsely
    // (-Wrestrict) about erase(0, 1) on a string here.
    const size_t start = guest.find_first_not_of('/', best->guest.size());
    *rest = start == std::string::npos ? std::string(".") : guest.substr(start);
  }
  return best;
}

bool FileView::IsVirtualDir(const std::string& guest) const {
  if (guest == "/") return true;
  for (const Mount& m : mounts_) {
    if (m.guest.size() > guest.size() &&
        m.guest.compare(0, guest.size(), guest) == 0 &&
        m.guest[guest.size()] == '/') {
      return true;
    }
  }
  return false;
}

absl::StatusOr<FileView::Resolved> FileView::Open(absl::string_view cwd,
                                                  absl::string_view path,
                                                  int flags,
                                                  bool follow_last) const {
  if (path.empty()) return ErrnoError(ENOENT, "empty path");
  if (path.size() >= kMaxPath) return ErrnoError(ENAMETOOLONG, "path");
  // Resolved step by step below: ".." is taken at the guest level, and one
  // that would climb above "/" is an escape attempt (counted, then stopped
  // at "/" as Linux does).
  std::vector<std::string> pending = Components(
      path[0] == '/' ? std::string(path) : absl::StrCat(cwd, "/", path));
  std::vector<std::string> resolved;
  int links = 0;
  while (!pending.empty()) {
    std::string c = std::move(pending.front());
    pending.erase(pending.begin());
    if (c == ".") continue;
    if (c == "..") {
      if (resolved.empty()) {
        ++escapes_;
      } else {
        resolved.pop_back();
      }
      continue;
    }
    resolved.push_back(c);
    const std::string guest = absl::StrCat("/", absl::StrJoin(resolved, "/"));
    std::string rest;
    const Mount* mount = Find(guest, &rest);
    if (mount == nullptr) {
      if (IsVirtualDir(guest)) continue;
      return ErrnoError(ENOENT, guest);
    }
    const bool last = pending.empty();
    if (last && !follow_last) break;
    // Look at this component alone (everything before it is a directory
    // already resolved): a symlink is read, not followed, on the host.
    HostFd step(OpenBeneath(mount->root.get(), rest, O_PATH));
    if (step.get() < 0) {
      const int e = errno;
      if (e == EXDEV || e == ELOOP) ++escapes_;
      return ErrnoError(e == EXDEV ? EACCES : e, guest);
    }
    struct stat st;
    if (fstat(step.get(), &st) != 0) return ErrnoError(errno, guest);
    if (S_ISLNK(st.st_mode)) {
      if (++links > kMaxLinks) return ErrnoError(ELOOP, guest);
      char target[kMaxPath];
      // Safe: readlinkat on an O_PATH symlink fd with an empty path.
      ssize_t n = readlinkat(step.get(), "", target, sizeof(target) - 1);
      if (n < 0) return ErrnoError(errno, guest);
      resolved.pop_back();
      std::vector<std::string> more = Components(absl::string_view(target, n));
      if (n > 0 && target[0] == '/') resolved.clear();
      pending.insert(pending.begin(), more.begin(), more.end());
      continue;
    }
    if (!last && !S_ISDIR(st.st_mode)) return ErrnoError(ENOTDIR, guest);
  }
  Resolved out;
  out.path = absl::StrCat("/", absl::StrJoin(resolved, "/"));
  std::string rest;
  const Mount* mount = Find(out.path, &rest);
  if (mount == nullptr) {
    if (!IsVirtualDir(out.path)) return ErrnoError(ENOENT, out.path);
    if ((flags & O_ACCMODE) != O_RDONLY) return ErrnoError(EROFS, out.path);
    out.virtual_dir = true;
    return out;
  }
  if (!follow_last) flags |= O_PATH;
  out.fd = HostFd(OpenBeneath(mount->root.get(), rest, flags));
  if (out.fd.get() < 0) {
    const int e = errno;
    if (e == EXDEV) ++escapes_;
    return ErrnoError(e == EXDEV ? EACCES : e, out.path);
  }
  return out;
}

absl::StatusOr<std::string> FileView::ReadLink(absl::string_view cwd,
                                               absl::string_view path) const {
  auto link = Open(cwd, path, O_PATH, /*follow_last=*/false);
  if (!link.ok()) return link.status();
  if (link->virtual_dir) return ErrnoError(EINVAL, link->path);
  char target[kMaxPath];
  ssize_t n = readlinkat(link->fd.get(), "", target, sizeof(target) - 1);
  if (n < 0) return ErrnoError(errno == ENOENT ? EINVAL : errno, link->path);
  return std::string(target, n);
}

}  // namespace thaw::linux_abi
