// WorkerClient: the host side of a Vm that lives in a worker process of its
// own (VmSettings::worker_process). It starts `thaw-worker` (exec'd, so
// the worker holds none of the host's memory; with only the descriptors it
// is given and an environment without the host's variables), which
// confines itself (lib/worker/process_confinement.h) before it reads a
// request. Every Vm operation becomes one request on a Unix socket; call
// payloads travel through a memfd both map; the guest's host-function
// calls come back over the socket and run here, on the calling thread. The
// host opens every file: the guest's ELF is sent as bytes, a snapshot to
// restore as a descriptor of the checked file, a snapshot to write as the
// descriptor of a temporary file the host puts in place. A Linux program's
// file view lives here too: the worker asks for each file, and the host
// resolves it with its own FileView, made from the mounts the caller gave
// (or the snapshot's, which the host read itself), and sends the opened
// read-only descriptor.
//
// Nothing the worker says is trusted: sizes are checked, and a worker that
// dies, is killed or answers out of turn makes the operation fail with
// Unavailable naming what happened; the Vm then refuses further calls.
//
// Thread safety: one request at a time (a mutex); any-thread methods
// (console(), report()) wait for a running call to finish.
#ifndef THAW_LIB_WORKER_WORKER_CLIENT_H_
#define THAW_LIB_WORKER_WORKER_CLIENT_H_

#include <sys/types.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/linux/file_view.h"
#include "lib/vm_impl.h"
#include "lib/worker/channel.h"
#include "lib/worker/worker.pb.h"
#include "snapshot/signature.h"
#include "snapshot/snapshot_file.h"
#include "thaw/vm.h"

namespace thaw::internal {

class SnapshotState;

class WorkerClient final : public VmImpl {
 public:
  // How long a wait for the worker's next message may take: its call
  // timeout and this slack (the worker's own watchdog ends a guest at the
  // call timeout, so it always has something to say by then).
  static constexpr absl::Duration kAnswerSlack = absl::Seconds(30);

  // A worker with a new Vm.
  static absl::StatusOr<std::unique_ptr<WorkerClient>> Create(
      const VmConfig& config);
  // A worker with a Vm restored from the handle's (checked) snapshot file.
  static absl::StatusOr<std::unique_ptr<WorkerClient>> Restore(
      const SnapshotState& snapshot, const RestoreOptions& options);
  // A client over a connection already made (`fd`, taken over) to a peer
  // that speaks the worker's protocol, with a file view of `mounts`: for
  // tests and the fuzzer that play a misbehaving worker.
  // `slack`: how much longer than the call timeout a wait may take.
  static absl::StatusOr<std::unique_ptr<WorkerClient>> AdoptForTesting(
      int fd, const VmConfig& config, const std::vector<FileMount>& mounts,
      absl::Duration slack = kAnswerSlack);
  ~WorkerClient();

  // The worker runs the emulated backend only.
  BackendKind backend() const override { return BackendKind::kEmulated; }
  const VmConfig& config() const override { return config_; }
  pid_t pid() const { return pid_; }
  // What the worker's confinement self-test found (THAW_WORKER_SELF_TEST).
  const std::string& self_test() const { return self_test_; }

  absl::Status LoadGuestImage(absl::Span<const uint8_t> elf,
                              absl::string_view name) override;
  absl::Status LoadProgram(absl::Span<const uint8_t> elf,
                           absl::string_view name,
                           const ProgramOptions& options) override;
  absl::Status Boot() override;
  absl::StatusOr<std::string> Call(absl::string_view function,
                                   absl::string_view input) override;
  absl::Status RegisterHostFunction(std::string name, HostFunction fn) override;
  absl::Status Snapshot(const std::string& path,
                        const SnapshotOptions& options) override;
  // Rewrites the file this Vm was restored from with what the worker
  // recorded (record_working_set); signed with `key` when given.
  absl::Status WriteWorkingSet(const snapshot::SecretKey* key) override;
  absl::Status Reset() override;
  absl::StatusOr<std::string> ReadMemory(uint64_t address,
                                         uint64_t size) override;
  absl::StatusOr<uint64_t> FindSymbol(absl::string_view name) override;
  std::string console() override;
  absl::Status failure() override;
  PhaseReport report() override;
  RestoreStats restore_stats() override;
  ProgramStats program_stats() override;
  void Pause() override;
  void Resume() override;
  bool paused() const override { return paused_.load(); }

 private:
  WorkerClient() = default;
  absl::Status Start();
  absl::Status AttachPayloadMemory(uint64_t size);
  // Sends `request` and returns the answer, serving host-function calls in
  // between. A broken connection is the worker's death, named.
  absl::StatusOr<worker::proto::Response> Exchange(
      const worker::proto::Request& request, std::vector<int> fds,
      absl::string_view what);
  // Exchange, then the worker's own answer: an error it reports comes
  // back as that error.
  absl::StatusOr<worker::proto::Response> ExchangeOk(
      const worker::proto::Request& request, std::vector<int> fds,
      absl::string_view what);
  // Runs a host function the guest asked for and answers the worker.
  absl::Status ServeHostCall(const worker::proto::HostCall& call);
  // SIGKILL and reap the worker, if there is one.
  void KillWorker();
  absl::Status Died(absl::string_view what,
                    const absl::Status& receive = absl::OkStatus());
  void LimitWaits();
  // Answers the worker's FileRequest from file_view_.
  absl::Status ServeFile(const worker::proto::FileRequest& request);
  // The host's FileView of `mounts` (none when empty).
  absl::Status MakeFileView(const std::vector<FileMount>& mounts);
  absl::Status Apply(const worker::proto::Response& response);
  absl::StatusOr<worker::proto::Response> State();

  VmConfig config_;
  pid_t pid_ = -1;
  std::unique_ptr<worker::Channel> channel_;
  int payload_fd_ = -1;
  uint8_t* payload_ = nullptr;
  uint64_t payload_size_ = 0;
  std::mutex mutex_;  // one exchange at a time
  absl::Status dead_;
  std::map<std::string, HostFunction> host_functions_;
  std::shared_ptr<const linux_abi::FileView> file_view_;
  // The image the host checked and handed the worker (restored Vms).
  std::shared_ptr<const snapshot::SnapshotImage> restored_from_;
  std::atomic<bool> paused_{false};
  absl::Duration answer_slack_ = kAnswerSlack;
  absl::Duration answer_limit_ = absl::InfiniteDuration();
  std::string self_test_;
};

}  // namespace thaw::internal

#endif  // THAW_LIB_WORKER_WORKER_CLIENT_H_
