// Channel: length-prefixed protobuf messages on a Unix stream socket, with
// up to kMaxFds descriptors passed alongside a message (SCM_RIGHTS). Both
// ends of a Vm's worker connection use it. Neither end trusts the other's
// sizes: a message over kMaxMessage is refused.
//
// Thread safety: one thread at a time per direction.
#ifndef THAW_LIB_WORKER_CHANNEL_H_
#define THAW_LIB_WORKER_CHANNEL_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "google/protobuf/message_lite.h"
#include "snapshot/format.h"

namespace thaw::worker {

inline constexpr uint64_t kMaxMessage = 1ull << 30;
// The payload memory and a snapshot with its longest chain of diff parents
// (snapshot/format.h's kMaxChainDepth); the kernel allows 253 per message.
inline constexpr int kMaxFds = 1 + snapshot::kMaxChainDepth;

class Channel {
 public:
  explicit Channel(int fd) : fd_(fd) {}  // takes ownership
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Sends `message` with `fds` (at most kMaxFds; the caller keeps its
  // copies).
  absl::Status Send(const google::protobuf::MessageLite& message,
                    std::vector<int> fds = {});
  // Receives the next message; descriptors passed with it land in *fds
  // (the caller owns them; closed when fds is null). Unavailable when the
  // peer closed the connection; DeadlineExceeded when the socket has a
  // receive timeout (SO_RCVTIMEO) and it ran out.
  absl::Status Receive(google::protobuf::MessageLite& message,
                       std::vector<int>* fds = nullptr);

  int fd() const { return fd_; }

 private:
  int fd_;
};

}  // namespace thaw::worker

#endif  // THAW_LIB_WORKER_CHANNEL_H_
