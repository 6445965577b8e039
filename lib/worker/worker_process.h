// The worker process's side of a Vm (lib/worker/): it serves one Vm's
// requests from its host over a Channel. It opens no files: the host sends
// the guest's bytes, snapshot files as descriptors, and the memory that
// call payloads travel through; a Linux program's files come from the host
// one by one (BrokeredFiles).
#ifndef THAW_LIB_WORKER_WORKER_PROCESS_H_
#define THAW_LIB_WORKER_WORKER_PROCESS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "lib/worker/brokered_files.h"
#include "lib/worker/channel.h"
#include "lib/worker/worker.pb.h"
#include "thaw/vm.h"

namespace thaw::worker {

class WorkerProcess final : private HostLink {
 public:
  // `self_test`: what the confinement self-test found (empty unless asked
  // for), reported with the first Vm.
  // Every Linux program in this process gets its files through this
  // worker's host (linux_abi::SetFileSourceFactory).
  WorkerProcess(Channel& channel, std::string self_test);
  ~WorkerProcess();
  // Serves requests until the host closes the connection; returns the
  // process's exit code.
  int Serve();

 private:
  proto::Response Handle(const proto::Request& request, std::vector<int>& fds);
  absl::Status AttachPayloadMemory(int fd, uint64_t size);
  void Describe(proto::Response& response) const;
  VmSettings SettingsFrom(const proto::Settings& settings);
  // Registered as host function `name`: asks the host, waits for its reply.
  absl::StatusOr<std::string> CallHost(const std::string& name,
                                       absl::string_view input);
  absl::StatusOr<proto::Request> Ask(const proto::Response& question,
                                     std::vector<int>* fds) override;
  proto::Response LoadProgram(const proto::LoadProgram& request);
  void DescribeState(proto::Response& response) const;

  Channel& channel_;
  std::string self_test_;
  std::unique_ptr<Vm> vm_;
  uint8_t* payload_ = nullptr;
  uint64_t payload_size_ = 0;
  std::mutex ask_mutex_;  // one question to the host at a time
  // The connection failed mid-request (set on whichever thread asked).
  std::atomic<bool> broken_{false};
};

}  // namespace thaw::worker

#endif  // THAW_LIB_WORKER_WORKER_PROCESS_H_
