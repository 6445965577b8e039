// /tmp: a private, writable directory whose files live in guest memory.
// Everything else a program sees is read-only; this is where its tempfile,
// sqlite temp store and caches go. Because the bytes are guest memory, a
// snapshot holds them and Reset puts them back with the rest of memory;
// names and sizes are part of the system-call layer's saved state. At most
// a quarter of guest memory holds /tmp (ENOSPC beyond).
#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "lib/linux/syscalls.h"

namespace thaw::linux_abi {
namespace {
constexpr uint64_t kPage = 4096;
constexpr int64_t kAtFdcwd = -100;
uint64_t PageUp(uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }
std::string Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}
}  // namespace

bool Syscalls::InTmp(const std::string& absolute) {
  return absolute == "/tmp" || absolute.rfind("/tmp/", 0) == 0;
}

int64_t Syscalls::OpenTmp(const std::string& path, int flags) {
  auto file = std::make_shared<OpenFile>();
  file->path = path;
  file->flags = flags;
  if (tmp_dirs_.count(path)) {
    if ((flags & O_CREAT) && (flags & O_EXCL)) return -EEXIST;
    if ((flags & O_ACCMODE) != O_RDONLY) return -EISDIR;
    file->kind = OpenFile::Kind::kTmpDir;
    return Install(std::move(file));
  }
  if ((flags & O_DIRECTORY) && !(flags & O_CREAT)) {
    return tmp_files_.count(path) ? -ENOTDIR : -ENOENT;
  }
  if (!tmp_dirs_.count(Parent(path))) return -ENOENT;
  auto it = tmp_files_.find(path);
  if (it == tmp_files_.end()) {
    if (!(flags & O_CREAT)) return -ENOENT;
    it = tmp_files_.emplace(path, TmpFile{}).first;
  } else if ((flags & O_CREAT) && (flags & O_EXCL)) {
    return -EEXIST;
  }
  if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) {
    it->second.size = 0;
  }
  file->kind = OpenFile::Kind::kTmpFile;
  return Install(std::move(file));
}

int64_t Syscalls::GrowTmp(TmpFile& file, uint64_t size) {
  if (size <= file.capacity) return 0;
  const uint64_t capacity = PageUp(std::max(size, file.capacity * 2));
  if (tmp_bytes_ - file.capacity + capacity > memory_.size() / 4) {
    return -ENOSPC;
  }
  const uint64_t address = Reserve(capacity);
  if (address == 0) return -ENOMEM;
  // Reserve hands out memory that reads as zero only below every earlier
  // mapping; a reused stretch is zeroed here.
  ZeroRange(address, capacity);
  if (file.size > 0) {
    std::memmove(memory_.host_base() + address,
                 memory_.host_base() + file.address, file.size);
  }
  if (file.capacity > 0) mappings_.erase(file.address);
  tmp_bytes_ = tmp_bytes_ - file.capacity + capacity;
  file.address = address;
  file.capacity = capacity;
  return 0;
}

int64_t Syscalls::ReadTmp(OpenFile& file, uint64_t address, uint64_t size,
                          uint64_t at) {
  auto it = tmp_files_.find(file.path);
  if (it == tmp_files_.end()) return 0;  // unlinked while open: empty
  const TmpFile& data = it->second;
  if (at >= data.size) return 0;
  const uint64_t n = std::min(size, data.size - at);
  auto out = UserSlice(address, n);
  if (!out.ok()) return -EFAULT;
  // Safe: both ranges are inside guest memory (checked at write time for
  // the file's region, just now for the buffer).
  std::memmove(out->data(), memory_.host_base() + data.address + at, n);
  return static_cast<int64_t>(n);
}

int64_t Syscalls::WriteTmp(OpenFile& file, absl::Span<const uint8_t> bytes) {
  if ((file.flags & O_ACCMODE) == O_RDONLY) return -EBADF;
  auto it = tmp_files_.find(file.path);
  if (it == tmp_files_.end()) {
    it = tmp_files_.emplace(file.path, TmpFile{}).first;  // unlinked: recreate
  }
  TmpFile& data = it->second;
  if (file.flags & O_APPEND) file.offset = data.size;
  const uint64_t end = file.offset + bytes.size();
  if (end < file.offset) return -EFBIG;
  if (int64_t e = GrowTmp(data, end); e < 0) return e;
  if (file.offset > data.size) {
    std::memset(memory_.host_base() + data.address + data.size, 0,
                file.offset - data.size);
  }
  std::memmove(memory_.host_base() + data.address + file.offset, bytes.data(),
               bytes.size());
  file.offset = end;
  data.size = std::max(data.size, end);
  return static_cast<int64_t>(bytes.size());
}

int64_t Syscalls::TmpDents(OpenFile& dir, uint64_t address, uint64_t size) {
  // linux_dirent64 records for the directory's children, from the entry
  // numbered by the descriptor's offset.
  std::vector<std::pair<std::string, bool>> children;  // name, is dir
  const std::string prefix = absl::StrCat(dir.path, "/");
  for (const std::string& d : tmp_dirs_) {
    if (d.rfind(prefix, 0) == 0 &&
        d.find('/', prefix.size()) == std::string::npos) {
      children.emplace_back(d.substr(prefix.size()), true);
    }
  }
  for (const auto& [f, data] : tmp_files_) {
    if (f.rfind(prefix, 0) == 0 &&
        f.find('/', prefix.size()) == std::string::npos) {
      children.emplace_back(f.substr(prefix.size()), false);
    }
  }
  auto out = UserSlice(address, size);
  if (!out.ok()) return -EFAULT;
  uint64_t written = 0;
  for (uint64_t i = dir.offset; i < children.size(); ++i) {
    const auto& [name, is_dir] = children[i];
    const uint64_t length = (19 + name.size() + 1 + 7) & ~uint64_t{7};
    if (written + length > size) break;
    uint8_t* record = out->data() + written;
    std::memset(record, 0, length);
    const uint64_t ino = std::hash<std::string>()(prefix + name) | 1;
    const int64_t next = static_cast<int64_t>(i + 1);
    const uint16_t reclen = static_cast<uint16_t>(length);
    const uint8_t type = is_dir ? 4 : 8;  // DT_DIR, DT_REG
    std::memcpy(record, &ino, 8);
    std::memcpy(record + 8, &next, 8);
    std::memcpy(record + 16, &reclen, 2);
    record[18] = type;
    std::memcpy(record + 19, name.c_str(), name.size() + 1);
    written += length;
    dir.offset = i + 1;
  }
  if (written == 0 && dir.offset < children.size()) return -EINVAL;
  return static_cast<int64_t>(written);
}

backend::SyscallResult Syscalls::Mkdirat(const uint64_t* a) {
  auto path = PathAt(a[1]);
  if (!path.ok()) return Result(-EFAULT);
  auto base = BaseDir(static_cast<int32_t>(a[0]));
  if (!base.ok()) return Result(-EBADF);
  const std::string absolute = FileView::Absolute(*base, *path);
  if (!InTmp(absolute))
    return Result(view_ && absolute != "/" ? -EROFS : -EACCES);
  if (tmp_dirs_.count(absolute) || tmp_files_.count(absolute)) {
    return Result(-EEXIST);
  }
  if (!tmp_dirs_.count(Parent(absolute))) return Result(-ENOENT);
  tmp_dirs_.insert(absolute);
  return Result(0);
}

backend::SyscallResult Syscalls::Mkdir(const uint64_t* a) {
  const uint64_t args[3] = {static_cast<uint64_t>(kAtFdcwd), a[0], a[1]};
  return Mkdirat(args);
}

backend::SyscallResult Syscalls::Unlinkat(const uint64_t* a) {
  auto path = PathAt(a[1]);
  if (!path.ok()) return Result(-EFAULT);
  auto base = BaseDir(static_cast<int32_t>(a[0]));
  if (!base.ok()) return Result(-EBADF);
  const std::string absolute = FileView::Absolute(*base, *path);
  if (!InTmp(absolute)) return Result(-EROFS);
  if (static_cast<int>(a[2]) & AT_REMOVEDIR) {
    if (absolute == "/tmp" || !tmp_dirs_.count(absolute)) {
      return Result(absolute == "/tmp" ? -EBUSY : -ENOENT);
    }
    const std::string prefix = absl::StrCat(absolute, "/");
    for (const auto& [f, data] : tmp_files_) {
      if (f.rfind(prefix, 0) == 0) return Result(-ENOTEMPTY);
    }
    for (const std::string& d : tmp_dirs_) {
      if (d.rfind(prefix, 0) == 0) return Result(-ENOTEMPTY);
    }
    tmp_dirs_.erase(absolute);
    return Result(0);
  }
  auto it = tmp_files_.find(absolute);
  if (it == tmp_files_.end()) {
    return Result(tmp_dirs_.count(absolute) ? -EISDIR : -ENOENT);
  }
  if (it->second.capacity > 0) mappings_.erase(it->second.address);
  tmp_bytes_ -= it->second.capacity;
  tmp_files_.erase(it);
  return Result(0);
}

backend::SyscallResult Syscalls::Unlink(const uint64_t* a) {
  const uint64_t args[3] = {static_cast<uint64_t>(kAtFdcwd), a[0], 0};
  return Unlinkat(args);
}

backend::SyscallResult Syscalls::Rmdir(const uint64_t* a) {
  const uint64_t args[3] = {static_cast<uint64_t>(kAtFdcwd), a[0],
                            AT_REMOVEDIR};
  return Unlinkat(args);
}

backend::SyscallResult Syscalls::Rename(const uint64_t* a) {
  auto from = PathAt(a[0]);
  auto to = PathAt(a[1]);
  if (!from.ok() || !to.ok()) return Result(-EFAULT);
  const std::string source = FileView::Absolute(cwd_, *from);
  const std::string target = FileView::Absolute(cwd_, *to);
  if (!InTmp(source) || !InTmp(target)) return Result(-EROFS);
  auto it = tmp_files_.find(source);
  if (it == tmp_files_.end()) return Result(-ENOENT);
  if (!tmp_dirs_.count(Parent(target))) return Result(-ENOENT);
  if (tmp_dirs_.count(target)) return Result(-EISDIR);
  if (auto old = tmp_files_.find(target); old != tmp_files_.end()) {
    if (old->second.capacity > 0) mappings_.erase(old->second.address);
    tmp_bytes_ -= old->second.capacity;
    tmp_files_.erase(old);
  }
  TmpFile data = it->second;
  tmp_files_.erase(source);
  tmp_files_[target] = data;
  return Result(0);
}

}  // namespace thaw::linux_abi
