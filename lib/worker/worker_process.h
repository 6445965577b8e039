// The worker process's side of a Vm (lib/worker/): it serves one Vm's
// requests from its host over a Channel. It opens no files: the host sends
// the guest's bytes, snapshot files as descriptors, and the memory that
// call payloads travel through.
#ifndef THAW_LIB_WORKER_WORKER_PROCESS_H_
#define THAW_LIB_WORKER_WORKER_PROCESS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "lib/worker/channel.h"
#include "lib/worker/worker.pb.h"
#include "thaw/vm.h"

namespace thaw::worker {

class WorkerProcess {
 public:
  // `self_test`: what the confinement self-test found (empty unless asked
  // for), reported with the first Vm.
  WorkerProcess(Channel& channel, std::string self_test)
      : channel_(channel), self_test_(std::move(self_test)) {}
  ~WorkerProcess();
  // Serves requests until the host closes the connection; returns the
  // process's exit code.
  int Serve();

 private:
  proto::Response Handle(const proto::Request& request, std::vector<int>& fds);
  absl::Status AttachPayloadMemory(int fd, uint64_t size);
  void Describe(proto::Response& response) const;
  // Registered as host function `name`: asks the host, waits for its reply.
  absl::StatusOr<std::string> CallHost(const std::string& name,
                                       absl::string_view input);

  Channel& channel_;
  std::string self_test_;
  std::unique_ptr<Vm> vm_;
  uint8_t* payload_ = nullptr;
  uint64_t payload_size_ = 0;
  bool broken_ = false;  // the connection failed mid-request
};

}  // namespace thaw::worker

#endif  // THAW_LIB_WORKER_WORKER_PROCESS_H_
