#include "lib/worker/channel.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/little_endian.h"

namespace thaw::worker {
namespace {

absl::Status WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("worker channel: send", errno);
    }
    data += n;
    size -= n;
  }
  return absl::OkStatus();
}

// A receive that failed with `error`: DeadlineExceeded when the socket's
// receive timeout (SO_RCVTIMEO) ran out, so that callers need not read
// the message.
absl::Status ReceiveError(absl::string_view what, int error) {
  if (error == EAGAIN || error == EWOULDBLOCK) {
    return absl::DeadlineExceededError(
        absl::StrCat(what, ": nothing within the socket's receive timeout"));
  }
  return ErrnoStatus(what, error);
}

absl::Status ReadAll(int fd, char* data, size_t size) {
  while (size > 0) {
    ssize_t n = recv(fd, data, size, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ReceiveError("worker channel: receive", errno);
    }
    if (n == 0) return absl::UnavailableError("worker channel: closed");
    data += n;
    size -= n;
  }
  return absl::OkStatus();
}

}  // namespace

Channel::~Channel() {
  if (fd_ >= 0) close(fd_);
}

absl::Status Channel::Send(const google::protobuf::MessageLite& message,
                           std::vector<int> fds) {
  if (fds.size() > static_cast<size_t>(kMaxFds)) {
    return absl::InternalError("worker channel: too many descriptors");
  }
  std::string body;
  if (!message.SerializeToString(&body)) {
    return absl::InternalError("worker channel: message does not serialize");
  }
  if (body.size() > kMaxMessage) {
    return absl::ResourceExhaustedError(
        absl::StrCat("worker channel: message of ", body.size(), " bytes"));
  }
  uint8_t length[8];
  StoreLe(length, body.size(), 8);
  // The length goes with the descriptor, in one sendmsg.
  iovec iov{length, sizeof(length)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = sendmsg(fd_, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoStatus("worker channel: sendmsg", errno);
  if (n < static_cast<ssize_t>(sizeof(length))) {
    if (absl::Status s = WriteAll(
            fd_, reinterpret_cast<const char*>(length) + n, sizeof(length) - n);
        !s.ok()) {
      return s;
    }
  }
  return WriteAll(fd_, body.data(), body.size());
}

absl::Status Channel::Receive(google::protobuf::MessageLite& message,
                              std::vector<int>* fds) {
  if (fds != nullptr) fds->clear();
  uint8_t length[8];
  iovec iov{length, sizeof(length)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ReceiveError("worker channel: recvmsg", errno);
  if (n == 0) return absl::UnavailableError("worker channel: closed");
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
       c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        if (fds != nullptr) {
          fds->push_back(fd);
        } else {
          close(fd);  // not wanted
        }
      }
    }
  }
  if (n < static_cast<ssize_t>(sizeof(length))) {
    if (absl::Status s = ReadAll(fd_, reinterpret_cast<char*>(length) + n,
                                 sizeof(length) - n);
        !s.ok()) {
      return s;
    }
  }
  const uint64_t size = LoadLe64(length);
  if (size > kMaxMessage) {
    return absl::DataLossError(
        absl::StrCat("worker channel: a message of ", size, " bytes"));
  }
  // Grown as the bytes arrive: a peer that announces a large message and
  // sends less holds no more of this process's memory than it sent.
  std::string body;
  constexpr uint64_t kStep = 1 << 20;
  while (body.size() < size) {
    const size_t have = body.size();
    body.resize(have + std::min(kStep, size - have));
    if (absl::Status s = ReadAll(fd_, body.data() + have, body.size() - have);
        !s.ok()) {
      return s;
    }
  }
  if (!message.ParseFromString(body)) {
    return absl::DataLossError("worker channel: a message does not parse");
  }
  return absl::OkStatus();
}

}  // namespace thaw::worker
