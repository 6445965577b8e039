// The system-call layer's part of a snapshot (manifest.proto's
// LinuxProgram): saved beside the code that owns the state, restored with
// every value from the file checked before use, and every host file the
// program had open reopened through the view and refused if it changed.
#include <fcntl.h>
#include <sys/stat.h>

#include "absl/strings/str_format.h"
#include "lib/linux/syscalls.h"
#include "snapshot/manifest.pb.h"

namespace thaw::linux_abi {
namespace {

int64_t MtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 +
         st.st_mtim.tv_nsec;
}

}  // namespace

void Syscalls::Save(snapshot::proto::LinuxProgram& p) const {
  p.set_cwd(cwd_);
  p.set_brk_start(layout_.brk_start);
  p.set_brk(brk_);
  p.set_mmap_top(layout_.mmap_top);
  p.set_mmap_low(mmap_low_);
  p.set_stack_size(layout_.stack_size);
  for (const auto& [start, size] : mappings_) {
    auto* m = p.add_mappings();
    m->set_start(start);
    m->set_size(size);
  }
  for (const std::string& dir : tmp_dirs_) p.add_tmp_dirs(dir);
  for (const auto& [path, data] : tmp_files_) {
    auto* t = p.add_tmp_files();
    t->set_path(path);
    t->set_address(data.address);
    t->set_capacity(data.capacity);
    t->set_size(data.size);
  }
  for (int fd = 0; fd < kMaxFds; ++fd) {
    if (fds_[fd] == nullptr) continue;
    auto* f = p.add_files();
    f->set_fd(fd);
    f->set_same_as(-1);
    for (int earlier = 0; earlier < fd; ++earlier) {
      if (fds_[earlier] == fds_[fd]) {
        f->set_same_as(earlier);
        break;
      }
    }
    const OpenFile& file = *fds_[fd];
    f->set_kind(static_cast<uint32_t>(file.kind));
    f->set_path(file.path);
    f->set_offset(file.offset);
    f->set_flags(file.flags);
    struct stat st;
    if (file.host.get() >= 0 && fstat(file.host.get(), &st) == 0) {
      f->set_host_size(static_cast<uint64_t>(st.st_size));
      f->set_host_mtime_ns(MtimeNs(st));
    }
  }
}

absl::Status Syscalls::Restore(const snapshot::proto::LinuxProgram& p,
                               absl::string_view snapshot) {
  auto corrupt = [&](absl::string_view what) {
    return absl::DataLossError(absl::StrFormat(
        "snapshot \"%s\": Linux program state: %s", snapshot, what));
  };
  const uint64_t size = memory_.size();
  if (p.brk() < layout_.brk_start || p.brk() > size ||
      p.mmap_low() > layout_.mmap_top) {
    return corrupt("brk or mapping bounds outside guest memory");
  }
  brk_ = p.brk();
  mmap_low_ = p.mmap_low();
  cwd_ = FileView::Absolute("/", p.cwd());
  mappings_.clear();
  for (const auto& m : p.mappings()) {
    if (m.start() >= size || m.size() > size - m.start() ||
        m.start() < mmap_low_) {
      return corrupt("a mapping outside guest memory");
    }
    mappings_[m.start()] = m.size();
  }
  tmp_dirs_ = {"/tmp"};
  for (const std::string& dir : p.tmp_dirs()) {
    if (!InTmp(dir)) return corrupt("a /tmp directory outside /tmp");
    tmp_dirs_.insert(dir);
  }
  tmp_files_.clear();
  tmp_bytes_ = 0;
  for (const auto& t : p.tmp_files()) {
    if (!InTmp(t.path()) || t.size() > t.capacity() ||
        (t.capacity() > 0 &&
         (t.address() < layout_.brk_start || t.address() >= size ||
          t.capacity() > size - t.address()))) {
      return corrupt("a /tmp file outside guest memory");
    }
    tmp_files_[t.path()] = TmpFile{t.address(), t.capacity(), t.size()};
    tmp_bytes_ += t.capacity();
  }
  std::vector<std::shared_ptr<OpenFile>> fds(kMaxFds);
  using Kind = OpenFile::Kind;
  for (const auto& f : p.files()) {
    if (f.fd() < 0 || f.fd() >= kMaxFds || fds[f.fd()] != nullptr ||
        f.kind() > static_cast<uint32_t>(Kind::kTmpDir)) {
      return corrupt(absl::StrFormat("descriptor %d", f.fd()));
    }
    if (f.same_as() >= 0) {
      if (f.same_as() >= f.fd() || fds[f.same_as()] == nullptr) {
        return corrupt(
            absl::StrFormat("descriptor %d duplicates nothing", f.fd()));
      }
      fds[f.fd()] = fds[f.same_as()];
      continue;
    }
    auto file = std::make_shared<OpenFile>();
    file->kind = static_cast<Kind>(f.kind());
    file->path = f.path();
    file->offset = f.offset();
    file->flags = f.flags();
    if (file->kind == Kind::kFile || file->kind == Kind::kDir ||
        file->kind == Kind::kVirtualDir) {
      if (view_ == nullptr) {
        return corrupt("an open file but no file view");
      }
      auto opened =
          view_->Open("/", f.path(),
                      O_RDONLY | (file->kind == Kind::kFile ? 0 : O_DIRECTORY));
      if (!opened.ok()) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "restore \"%s\": the program had \"%s\" open, which its file "
            "view cannot open now: %s",
            snapshot, f.path(), opened.status().message()));
      }
      if (file->kind != Kind::kVirtualDir) {
        struct stat st;
        if (fstat(opened->fd.get(), &st) != 0 ||
            static_cast<uint64_t>(st.st_size) != f.host_size() ||
            MtimeNs(st) != f.host_mtime_ns()) {
          return absl::FailedPreconditionError(absl::StrFormat(
              "restore \"%s\": \"%s\", which the program had open, changed "
              "since the snapshot was taken (size %d, now %d; or its "
              "modification time)",
              snapshot, f.path(), f.host_size(),
              static_cast<uint64_t>(st.st_size)));
        }
        file->host = std::move(opened->fd);
      }
    }
    fds[f.fd()] = std::move(file);
  }
  fds_ = std::move(fds);
  exited_ = false;
  fatal_ = absl::OkStatus();
  return absl::OkStatus();
}

}  // namespace thaw::linux_abi
