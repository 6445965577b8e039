// Vm::Impl, the monitor behind thaw::Vm, shared by lib/vm.cc (create, load,
// boot, call and the vCPU run loop) and lib/vm_snapshot.cc (snapshot,
// restore, reset). Not part of the public API.
#ifndef THAW_LIB_VM_IMPL_H_
#define THAW_LIB_VM_IMPL_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "lib/backend/backend.h"
#include "lib/guest_memory.h"
#include "lib/hypercall_dispatcher.h"
#include "lib/page_map.h"
#include "lib/x86/boot_state.h"
#include "snapshot/lazy_pager.h"
#include "snapshot/restore_counters.h"
#include "snapshot/shared_base.h"
#include "snapshot/snapshot_file.h"
#include "snapshot/writer.h"
#include "thaw/abi.h"
#include "thaw/vm.h"

namespace thaw {

inline constexpr uint64_t kGuestPage = 4096;

// Where the buffers and the stack go, from the top of guest memory down.
struct Layout {
  uint64_t stack_top, input_addr, output_addr;
};

// The layout for `config`; InvalidArgument naming the field if it is bad.
absl::StatusOr<Layout> ComputeLayout(const VmConfig& config);

class Vm::Impl {
 public:
  Impl(VmConfig config, Layout layout, std::unique_ptr<GuestMemory> memory)
      : config_(std::move(config)),
        layout_(layout),
        memory_(std::move(memory)),
        dispatcher_(*memory_, config_, config_.output_buffer_size) {}

  ~Impl() {
    // The pager's threads may still call back into the backend (on_error
    // interrupts it), so they stop first; then the backend, which maps
    // memory_; memory_ itself goes last (member order).
    pager_.reset();
    backend_.reset();
  }

  absl::Status CreateBackend() {
    auto backend = backend::CreateBackend(config_.backend, *memory_);
    if (!backend.ok()) return backend.status();
    backend_ = *std::move(backend);
    report_.backend = backend_->kind();
    return absl::OkStatus();
  }

  absl::Status Init() {
    absl::Time start = absl::Now();
    if (absl::Status s = CreateBackend(); !s.ok()) return s;
    auto state = x86::BuildLongModeBootState(*memory_);
    if (!state.ok()) return state.status();
    boot_state_ = *state;
    report_.create = absl::Now() - start;
    return absl::OkStatus();
  }

  absl::Status LoadImage(absl::Span<const uint8_t> elf, absl::string_view name);
  absl::Status Boot();
  absl::Status RestoreFrom(std::shared_ptr<const snapshot::SnapshotImage> image,
                           const RestoreOptions& options, absl::Time start);
  absl::Status Snapshot(const std::string& path,
                        const SnapshotOptions& options);
  void AdoptBase(std::shared_ptr<const snapshot::SharedBase> base, bool built,
                 const snapshot::RestoreCounters& counters) {
    base_ = std::move(base);
    stats_.shared_base_built = built;
    counters_.chunks_read = counters.chunks_read.load();
    counters_.bytes_read = counters.bytes_read.load();
    counters_.reads_without_io_uring = counters.reads_without_io_uring.load();
  }
  absl::Status Reset();
  absl::Status WriteWorkingSet();
  RestoreStats restore_stats() const {
    RestoreStats stats = stats_;
    stats.faults = counters_.faults.load();
    stats.prefetch_waits = counters_.prefetch_waits.load();
    stats.chunks_read = counters_.chunks_read.load();
    stats.bytes_read = counters_.bytes_read.load();
    stats.zero_chunks = counters_.zero_chunks.load();
    stats.prefetched = counters_.prefetched.load();
    stats.mapped = counters_.mapped.load();
    stats.reads_without_io_uring = counters_.reads_without_io_uring.load();
    stats.reset_uses_dirty_log = dirty_log_;
    return stats;
  }
  absl::StatusOr<std::string> Call(absl::string_view function,
                                   absl::string_view input);

  void Pause() {
    {
      std::lock_guard<std::mutex> lock(pause_mutex_);
      paused_ = true;
    }
    backend_->Interrupt();
  }
  void Resume() {
    std::lock_guard<std::mutex> lock(pause_mutex_);
    paused_ = false;
    resumed_.notify_all();
  }
  bool paused() const {
    std::lock_guard<std::mutex> lock(pause_mutex_);
    return paused_;
  }

  const VmConfig& config() const { return config_; }
  BackendKind backend() const { return backend_->kind(); }
  std::string console() const { return dispatcher_.console(); }
  PhaseReport report() const {
    std::lock_guard<std::mutex> lock(report_mutex_);
    return report_;
  }
  void Register(std::string name, HostFunction fn) {
    dispatcher_.Register(std::move(name), std::move(fn));
  }
  absl::StatusOr<std::string> ReadMemory(uint64_t address,
                                         uint64_t size) const {
    auto slice = memory_->Slice(address, size, "ReadGuestMemory");
    if (!slice.ok()) return slice.status();
    return std::string(reinterpret_cast<const char*>(slice->data()),
                       slice->size());
  }
  absl::StatusOr<uint64_t> FindSymbol(absl::string_view name) const {
    auto it = symbols_.find(name);
    if (it == symbols_.end()) {
      return absl::NotFoundError(
          absl::StrCat("guest symbol \"", name, "\" not found"));
    }
    return it->second;
  }

 private:
  enum class State { kCreated, kLoaded, kReady, kFailed };

  // Runs the vCPU until the guest parks, fails, or the deadline passes.
  absl::Status RunGuest(absl::string_view what);
  absl::Status ExitToStatus(const backend::Exit& exit, absl::string_view what);
  // Runs the guest's before-snapshot hook (THAW_REQUEST_BEFORE_SNAPSHOT).
  absl::Status RunBeforeSnapshotHook();
  // The runs of pages Reset must restore.
  absl::StatusOr<PageRuns> ChangedPages();
  // A new restore generation and fresh entropy in the boot-info page.
  absl::Status WriteRestoreIdentity();
  // What the snapshot writer may assume about each chunk without reading it.
  absl::StatusOr<std::function<snapshot::ChunkHint(uint64_t)>> ChunkHints(
      uint32_t chunk_size);
  // The error of the lazy pager, if it met one.
  absl::Status MemoryError() const {
    return pager_ ? pager_->error() : absl::OkStatus();
  }
  // Blocks while paused; returns how long it waited.
  absl::Duration WaitWhilePaused();
  absl::Status Failed(absl::Status error) {
    state_ = State::kFailed;
    failure_ = error;
    return error;
  }
  void RecordCall(absl::Duration d) {
    std::lock_guard<std::mutex> lock(report_mutex_);
    ++report_.calls;
    report_.last_call = d;
    report_.total_calls += d;
  }

  VmConfig config_;
  Layout layout_;
  std::unique_ptr<GuestMemory> memory_;
  std::unique_ptr<backend::Backend> backend_;
  HypercallDispatcher dispatcher_;
  backend::VcpuState boot_state_;
  thaw_boot_info* boot_info_ = nullptr;
  absl::flat_hash_map<std::string, uint64_t> symbols_;
  std::string guest_name_;
  State state_ = State::kCreated;

  // Set for a restored Vm: where it came from and how it was restored.
  std::shared_ptr<const snapshot::SnapshotImage> source_;
  snapshot::RestoreCounters counters_;
  RestoreStats stats_;
  std::unique_ptr<snapshot::LazyPager> pager_;
  std::shared_ptr<const snapshot::SharedBase> base_;
  backend::VcpuState snapshot_state_;  // the vCPU as restored (for Reset)
  uint64_t snapshot_generation_ = 0;
  bool recording_ = false;
  // Reset finds the pages to restore from KVM's dirty log plus the host's
  // own writes (GuestMemory's journal) when set, else from the page map.
  bool dirty_log_ = false;
  std::vector<uint32_t> working_set_;
  absl::Status failure_;
  std::atomic<bool> timed_out_{false};

  mutable std::mutex pause_mutex_;
  std::condition_variable resumed_;
  bool paused_ = false;

  mutable std::mutex report_mutex_;
  PhaseReport report_;
};

}  // namespace thaw

#endif  // THAW_LIB_VM_IMPL_H_
