#include "lib/linux/file_source.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/linux/file_view.h"

namespace thaw::linux_abi {
namespace {

constexpr char kErrnoUrl[] = "type.thaw.dev/thaw.Errno";

std::mutex factory_mutex;
FileSourceFactory& Factory() {
  static FileSourceFactory* factory = new FileSourceFactory;
  return *factory;
}

}  // namespace

HostFd::~HostFd() {
  if (fd_ >= 0) close(fd_);
}

HostFd& HostFd::operator=(HostFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = other.release();
  }
  return *this;
}

absl::Status ErrnoError(int error, absl::string_view what) {
  absl::Status status(absl::StatusCode::kUnavailable,
                      absl::StrCat(what, ": ", std::strerror(error)));
  status.SetPayload(kErrnoUrl, absl::Cord(std::to_string(error)));
  return status;
}

int ErrnoOf(const absl::Status& status) {
  auto payload = status.GetPayload(kErrnoUrl);
  if (!payload) return EIO;
  int value = EIO;
  if (!absl::SimpleAtoi(std::string(*payload), &value)) return EIO;
  return value;
}

void SetFileSourceFactory(FileSourceFactory factory) {
  std::lock_guard<std::mutex> lock(factory_mutex);
  Factory() = std::move(factory);
}

absl::StatusOr<std::shared_ptr<const FileSource>> MakeFileSource(
    const std::vector<FileMount>& mounts) {
  FileSourceFactory factory;
  {
    std::lock_guard<std::mutex> lock(factory_mutex);
    factory = Factory();
  }
  if (factory) return factory(mounts);
  auto view = FileView::Create(mounts);
  if (!view.ok()) return view.status();
  return std::shared_ptr<const FileSource>(*std::move(view));
}

}  // namespace thaw::linux_abi
