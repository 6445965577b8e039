// BrokeredFiles: a Linux program's file view inside a worker process, which
// may open no file itself (its seccomp filter refuses open, openat and
// openat2). Each open or readlink becomes a FileRequest to the host, which
// resolves the path with its own FileView (lib/linux/file_view.h) made from
// the mounts the host itself chose, and passes back the opened read-only
// descriptor. The host decides everything; a compromised worker can ask
// for any path and gets what the view allows, as the program itself would.
//
// Thread safety: one question at a time on the connection (a mutex in the
// HostLink); callable from any thread.
#ifndef THAW_LIB_WORKER_BROKERED_FILES_H_
#define THAW_LIB_WORKER_BROKERED_FILES_H_

#include <vector>

#include "lib/linux/file_source.h"
#include "lib/worker/worker.pb.h"

namespace thaw::worker {

// The worker's way to ask its host something in the middle of a request.
class HostLink {
 public:
  virtual ~HostLink() = default;
  // Sends `question` and waits for the host's answer and the descriptors
  // that came with it (the caller owns them). An error means the connection
  // is gone; the worker then ends.
  virtual absl::StatusOr<proto::Request> Ask(const proto::Response& question,
                                             std::vector<int>* fds) = 0;
};

class BrokeredFiles final : public linux_abi::FileSource {
 public:
  explicit BrokeredFiles(HostLink& host) : host_(host) {}

  absl::StatusOr<Resolved> Open(absl::string_view cwd, absl::string_view path,
                                int flags,
                                bool follow_last = true) const override;
  absl::StatusOr<std::string> ReadLink(absl::string_view cwd,
                                       absl::string_view path) const override;
  // The host counts escapes (and reports them in ProgramStats).
  uint64_t escapes() const override { return 0; }

 private:
  absl::StatusOr<proto::FileReply> Ask(const proto::FileRequest& request,
                                       std::vector<int>* fds) const;

  HostLink& host_;
};

}  // namespace thaw::worker

#endif  // THAW_LIB_WORKER_BROKERED_FILES_H_
