#include "lib/worker/brokered_files.h"

#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace thaw::worker {
namespace {

void CloseAll(std::vector<int>& fds) {
  for (int fd : fds) close(fd);
  fds.clear();
}

}  // namespace

absl::StatusOr<proto::FileReply> BrokeredFiles::Ask(
    const proto::FileRequest& request, std::vector<int>* fds) const {
  proto::Response question;
  *question.mutable_file_request() = request;
  auto answer = host_.Ask(question, fds);
  if (!answer.ok()) {
    return linux_abi::ErrnoError(EIO, answer.status().message());
  }
  if (!answer->has_file_reply()) {
    CloseAll(*fds);
    return linux_abi::ErrnoError(EIO, "worker: expected the host's file reply");
  }
  const proto::FileReply& reply = answer->file_reply();
  if (reply.error() != 0) {
    CloseAll(*fds);
    return linux_abi::ErrnoError(reply.error(), reply.message());
  }
  return reply;
}

absl::StatusOr<linux_abi::FileSource::Resolved> BrokeredFiles::Open(
    absl::string_view cwd, absl::string_view path, int flags,
    bool follow_last) const {
  proto::FileRequest request;
  request.set_cwd(std::string(cwd));
  request.set_path(std::string(path));
  request.set_flags(flags);
  request.set_follow_last(follow_last);
  std::vector<int> fds;
  auto reply = Ask(request, &fds);
  if (!reply.ok()) return reply.status();
  Resolved resolved;
  resolved.path = reply->path();
  resolved.virtual_dir = reply->virtual_dir();
  if (!fds.empty()) {
    resolved.fd = linux_abi::HostFd(fds.front());
    fds.erase(fds.begin());
  }
  CloseAll(fds);
  if (!resolved.virtual_dir && resolved.fd.get() < 0) {
    return linux_abi::ErrnoError(
        EIO, absl::StrCat(path, ": the host sent no descriptor"));
  }
  return resolved;
}

absl::StatusOr<std::string> BrokeredFiles::ReadLink(
    absl::string_view cwd, absl::string_view path) const {
  proto::FileRequest request;
  request.set_cwd(std::string(cwd));
  request.set_path(std::string(path));
  request.set_read_link(true);
  std::vector<int> fds;
  auto reply = Ask(request, &fds);
  CloseAll(fds);
  if (!reply.ok()) return reply.status();
  return reply->target();
}

}  // namespace thaw::worker
