// VmCore: the monitor behind a thaw::Vm. It ties together the Vm's memory
// source (where its memory comes from), the backend running its vCPU, the
// run loop and the guest runtime (what kind of guest it runs), keeps the
// Vm's lifecycle, and enforces the public thread-safety contract: one
// operation at a time (Turn), the rest readable from any thread.
//
// lib/vm.cc has creation, load, boot and calls; lib/vm_snapshot.cc has
// snapshots, restores, resets and working sets. Not part of the public API.
#ifndef THAW_LIB_VM_CORE_H_
#define THAW_LIB_VM_CORE_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/backend/backend.h"
#include "lib/guest_memory.h"
#include "lib/guest_runtime.h"
#include "lib/vcpu_loop.h"
#include "snapshot/memory_source.h"
#include "snapshot/snapshot_file.h"
#include "thaw/vm.h"

namespace thaw::internal {

class SnapshotState;

// InvalidArgument naming the field if `config` cannot make a Vm.
absl::Status CheckConfig(const VmConfig& config);

class VmCore {
 public:
  // A Vm whose guest memory is `memory`; Start() brings up the rest.
  VmCore(VmConfig config, std::unique_ptr<snapshot::MemorySource> memory);
  ~VmCore();

  // Creates the backend, the run loop and the guest runtime; the report's
  // create phase runs from `start`.
  absl::Status Start(absl::Time start);

  // Holds the Vm's one operation slot for its lifetime. ok() is false when
  // the thread already holds it (a host function re-entering its own Vm).
  class Turn {
   public:
    Turn(VmCore& core, absl::string_view operation);
    ~Turn();
    const absl::Status& status() const { return status_; }

   private:
    VmCore& core_;
    bool held_ = false;
    absl::Status status_;
  };

  // Operations (hold a Turn).
  // Loads a guest of `kind`, which must be the Vm's.
  absl::Status Load(GuestKind kind, absl::Span<const uint8_t> image,
                    absl::string_view name, const ProgramOptions& options);
  absl::Status Boot();
  absl::StatusOr<std::string> Call(absl::string_view function,
                                   absl::string_view input);
  // `output_fd` >= 0: write into that empty file (the caller keeps the
  // descriptor) instead of creating one at `path`; its creator puts it in
  // place. `parent_checked`: options.parent was checked by a worker's host
  // (CheckDiffParent) and is the path to record, as it is.
  absl::Status Snapshot(const std::string& path, const SnapshotOptions& options,
                        int output_fd = -1, bool parent_checked = false);
  absl::Status Reset();
  const absl::Status& failure() const { return failure_; }
  // `key`: sign the rewritten file with it.
  absl::Status WriteWorkingSet(const snapshot::SecretKey* key);
  // FailedPrecondition unless a working set has been recorded.
  absl::Status CheckWorkingSetRecorded() const;
  const std::vector<uint32_t>& working_set() const { return working_set_; }
  const std::vector<uint32_t>& written_pages() const { return written_pages_; }
  absl::StatusOr<std::string> ReadMemory(uint64_t address, uint64_t size) const;
  // Brings this Vm to `image`'s parked state; its memory is in place.
  absl::Status RestoreFrom(std::shared_ptr<const snapshot::SnapshotImage> image,
                           const RestoreOptions& options, absl::Time start,
                           bool built_base);

  // From any thread.
  GuestRuntime& runtime() { return *runtime_; }
  const GuestRuntime& runtime() const { return *runtime_; }
  VcpuLoop& loop() { return *loop_; }
  const VcpuLoop& loop() const { return *loop_; }
  const VmConfig& config() const { return config_; }
  BackendKind backend() const { return backend_->kind(); }
  PhaseReport report() const;
  RestoreStats restore_stats() const;

 private:
  enum class State { kCreated, kLoaded, kReady, kFailed };

  // Runs the guest for the request the runtime was set up for.
  absl::Status RunGuest(absl::string_view what);
  absl::Status Failed(absl::Status error);
  // The runs of pages Reset must put back.
  absl::StatusOr<PageRuns> ChangedPages();
  // The pages the dirty log and the host-write journal hold; both clear.
  absl::StatusOr<PageRuns> TakeWrittenPages();
  // Ends working-set recording after the first call: the chunks it touched
  // and the pages it wrote.
  void StopRecording();
  template <typename F>
  void Record(F update) {
    std::lock_guard<std::mutex> lock(report_mutex_);
    update(report_, stats_);
  }

  VmConfig config_;
  // Declaration order is teardown order in reverse: the runtime and loop
  // use the backend, which maps memory_, a view of source_'s mapping.
  std::unique_ptr<snapshot::MemorySource> source_;
  std::unique_ptr<GuestMemory> memory_;
  std::unique_ptr<backend::Backend> backend_;
  std::unique_ptr<VcpuLoop> loop_;
  std::unique_ptr<GuestRuntime> runtime_;

  State state_ = State::kCreated;
  absl::Status failure_;

  // Where a restored Vm came from: for Reset, diff snapshots, working sets.
  struct RestorePoint {
    std::shared_ptr<const snapshot::SnapshotImage> image;  // null if booted
    VcpuState vcpu;           // the vCPU as restored
    uint64_t generation = 0;  // the snapshot's restore generation
  };
  RestorePoint restored_;
  // record_working_set: recording until the first call completes, then the
  // chunks it touched.
  bool recording_ = false;
  std::vector<uint32_t> working_set_;
  // While recording, the dirty log is on for the pages the call writes.
  bool recording_writes_ = false;
  std::vector<uint32_t> written_pages_;
  // Reset finds changed pages from the backend's dirty log plus the host's own
  // writes (GuestMemory's journal) when set, else from the memory source.
  bool dirty_log_ = false;

  mutable std::mutex report_mutex_;
  PhaseReport report_;  // guarded by report_mutex_
  RestoreStats stats_;  // guarded by report_mutex_

  std::mutex turn_mutex_;
  std::atomic<std::thread::id> turn_owner_{};
};

}  // namespace thaw::internal

#endif  // THAW_LIB_VM_CORE_H_
