// VmCore's snapshots, restores, resets and working sets (the engines are
// memory sources in snapshot/), Snapshot::Restore, and the public Vm
// methods for them.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "lib/function_guest.h"
#include "lib/linuxvm/linux_vm.h"
#include "lib/local_vm.h"
#include "lib/memory_choice.h"
#include "lib/signing_access.h"
#include "lib/snapshot_state.h"
#include "lib/vm_core.h"
#include "lib/vm_internal.h"
#include "lib/worker/worker_client.h"
#include "lib/x86/boot_state.h"
#include "snapshot/copy_on_write_memory.h"
#include "snapshot/vcpu_codec.h"
#include "snapshot/writer.h"
#include "thaw/abi.h"
#include "thaw/vm.h"

namespace thaw {
namespace internal {
namespace {

constexpr uint64_t kPage = 4096;

// The configuration a Vm restored from `m` runs with: the layout the
// snapshot was taken with, the settings the restore asks for.
VmConfig RestoredConfig(const snapshot::proto::Manifest& m,
                        const RestoreOptions& options) {
  VmConfig config;
  static_cast<VmSettings&>(config) = options;
  config.guest_kind = m.config().guest_kind() == 2   ? GuestKind::kLinuxVm
                      : m.config().guest_kind() == 1 ? GuestKind::kLinuxProgram
                                                     : GuestKind::kFunction;
  config.vcpus = std::max<int>(1, m.config().vcpus());
  config.memory_size = m.config().memory_size();
  config.input_buffer_size = m.config().input_buffer_size();
  config.output_buffer_size = m.config().output_buffer_size();
  config.stack_size = m.config().stack_size();
  return config;
}

absl::Status CheckRestoreOptions(const RestoreOptions& options) {
  if (options.record_working_set && options.engine != RestoreEngine::kLazy) {
    return absl::InvalidArgumentError(
        "RestoreOptions.record_working_set needs RestoreEngine::kLazy (other "
        "engines install chunks the guest may never touch)");
  }
  return absl::OkStatus();
}

// A Vm restored from `state` over `memory` (nullptr: the engine's).
absl::StatusOr<std::unique_ptr<Vm>> RestoreVm(
    SnapshotState& state, const RestoreOptions& options,
    std::unique_ptr<snapshot::MemorySource> memory, absl::Time start) {
  const std::string& path = state.image()->top().path();
  VmConfig config = RestoredConfig(state.image()->manifest(), options);
  if (absl::Status s = CheckConfig(config); !s.ok()) {
    return absl::Status(s.code(),
                        absl::StrCat("restore \"", path, "\": ", s.message()));
  }
  if (config.guest_kind == GuestKind::kLinuxVm) {
    if (memory != nullptr) {
      return absl::UnimplementedError(
          absl::StrCat("restore \"", path,
                       "\": a Linux VM restores through thaw's engines only"));
    }
    auto linux_vm = LinuxVm::Restore(state, config, options, start);
    if (!linux_vm.ok()) return linux_vm.status();
    return VmAccess::Wrap(*std::move(linux_vm));
  }
  bool built_base = false;
  if (memory == nullptr) {
    auto chosen = RestoreMemory(state, options, &built_base);
    if (!chosen.ok()) return chosen.status();
    memory = *std::move(chosen);
  }
  auto core = std::make_unique<VmCore>(std::move(config), std::move(memory));
  if (absl::Status s = core->Start(start); !s.ok()) return s;
  if (absl::Status s =
          core->RestoreFrom(state.image(), options, start, built_base);
      !s.ok()) {
    return s;
  }
  return VmAccess::Wrap(std::make_unique<LocalVm>(std::move(core)));
}

}  // namespace

std::unique_ptr<Vm> VmAccess::Wrap(std::unique_ptr<VmImpl> impl) {
  return std::unique_ptr<Vm>(new Vm(std::move(impl)));
}

LocalVm* VmAccess::Local(Vm& vm) {
  return dynamic_cast<LocalVm*>(vm.impl_.get());
}

WorkerClient* VmAccess::Worker(const Vm& vm) {
  return dynamic_cast<WorkerClient*>(vm.impl_.get());
}

absl::Status VmCore::RestoreFrom(
    std::shared_ptr<const snapshot::SnapshotImage> image,
    const RestoreOptions& options, absl::Time start, bool built_base) {
  const snapshot::proto::Manifest& m = image->manifest();
  const std::string& path = image->top().path();
  absl::Status msrs = snapshot::CheckMsrs(m.vcpu());
  VcpuState state = snapshot::DecodeVcpuState(m.vcpu());
  if (absl::Status s = msrs.ok() ? x86::CheckPortableState(state) : msrs;
      !s.ok()) {
    return absl::Status(s.code(),
                        absl::StrCat("restore \"", path, "\": ", s.message()));
  }
  restored_.image = std::move(image);
  // Resets are cheapest with the backend's dirty log (KVM's; the
  // emulator's write hook); without one the memory source finds what
  // changed.
  if (options.engine == RestoreEngine::kSharedBase && source_->can_revert() &&
      backend_->StartDirtyLog().ok()) {
    dirty_log_ = true;
    memory_->StartHostWriteJournal();
  } else if (options.record_working_set && backend_->StartDirtyLog().ok()) {
    // The recorded call's writes too, so that a prefetching restore can make
    // those pages private before the guest writes them.
    memory_->StartHostWriteJournal();
    recording_writes_ = true;
  }
  if (absl::Status s = runtime_->Restore(m, path); !s.ok()) {
    if (absl::Status damage = source_->error(); !damage.ok()) return damage;
    return s;
  }
  restored_.vcpu = state;
  restored_.generation = runtime_->generation();
  auto entry = runtime_->ResumeState(state);
  if (!entry.ok()) return entry.status();
  if (absl::Status s = backend_->SetState(*entry); !s.ok()) return s;
  if (absl::Status s = runtime_->NewIdentity(restored_.generation + 1);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = source_->error(); !s.ok()) return s;
  if (dirty_log_ || recording_writes_) {
    // Start from a clean log: only what happens from here on is undone (or
    // recorded).
    if (auto log = backend_->TakeDirtyLog(); !log.ok()) return log.status();
    memory_->TakeHostWrites();
  }
  recording_ = options.record_working_set;
  state_ = State::kReady;
  Record([&](PhaseReport& r, RestoreStats& stats) {
    r.restore = absl::Now() - start;
    stats.engine = options.engine;
    stats.shared_base_built = built_base;
    stats.reset_uses_dirty_log = dirty_log_;
  });
  return absl::OkStatus();
}

RestoreStats VmCore::restore_stats() const {
  RestoreStats stats;
  {
    std::lock_guard<std::mutex> lock(report_mutex_);
    stats = stats_;
  }
  AddSourceCounters(*source_, stats);
  return stats;
}

absl::Status VmCore::Snapshot(const std::string& path,
                              const SnapshotOptions& options, int output_fd,
                              bool parent_checked) {
  if (state_ == State::kFailed) {
    return absl::FailedPreconditionError(
        absl::StrCat("Snapshot: this Vm failed earlier: ", failure_.message()));
  }
  if (state_ != State::kReady) {
    return absl::FailedPreconditionError(
        "Snapshot: the guest has not been booted (a snapshot is taken at its "
        "park point)");
  }
  if (path.empty()) {
    return absl::InvalidArgumentError("Snapshot: empty path");
  }
  absl::Time start = absl::Now();
  auto begun = BeginWriteRequest(
      path, options, restored_.image,
      recording_ ? std::vector<uint32_t>() : working_set_, parent_checked);
  if (!begun.ok()) return begun.status();
  snapshot::WriteRequest& request = *begun;
  request.output_fd = output_fd;
  // The guest's before-snapshot hook runs first, so it can drop secrets.
  absl::Status hook = runtime_->BeginBeforeSnapshot();
  if (hook.ok()) hook = RunGuest("before-snapshot hook");
  if (!hook.ok()) return Failed(hook);
  GuestRuntime::Outcome outcome = runtime_->Finish("before-snapshot hook");
  if (!outcome.reply.ok()) {
    return outcome.vm_usable ? outcome.reply.status()
                             : Failed(outcome.reply.status());
  }
  if (absl::Status s = backend_->CheckNothingPending(); !s.ok()) return s;
  auto state = backend_->GetState();
  if (!state.ok()) return state.status();

  snapshot::proto::Manifest& m = request.manifest;
  if (absl::Status s = runtime_->Save(m); !s.ok()) return s;
  m.set_source_backend(std::string(BackendName(backend_->kind())));
  *m.mutable_vcpu() =
      snapshot::EncodeVcpuState(runtime_->SnapshotState(*state));
  request.memory = memory_->host_base();
  request.memory_size = memory_->size();
  auto hints = source_->ChunkHints(options.chunk_size);
  if (!hints.ok()) return hints.status();
  request.hint = *std::move(hints);
  if (absl::Status s = snapshot::WriteSnapshot(request); !s.ok()) return s;
  if (absl::Status s = source_->error(); !s.ok()) return s;
  Record(
      [&](PhaseReport& r, RestoreStats&) { r.snapshot = absl::Now() - start; });
  return absl::OkStatus();
}

absl::StatusOr<PageRuns> VmCore::TakeWrittenPages() {
  const uint64_t page_count = memory_->size() / kPage;
  auto log = backend_->TakeDirtyLog();
  if (!log.ok()) return log.status();
  PageRuns runs = *std::move(log);
  for (const auto& [address, length] : memory_->TakeHostWrites()) {
    runs.emplace_back(
        address / kPage,
        std::min(page_count, (address + length + kPage - 1) / kPage));
  }
  NormalizeRuns(runs);
  return runs;
}

void VmCore::StopRecording() {
  working_set_ = source_->StopRecording();
  recording_ = false;
  if (!recording_writes_) return;
  recording_writes_ = false;
  written_pages_.clear();
  // Without the log the working set is still good; only the pages to make
  // private up front are unknown.
  if (auto written = TakeWrittenPages(); written.ok()) {
    for (const auto& [first, end] : *written) {
      for (uint64_t p = first; p < end; ++p) written_pages_.push_back(p);
    }
  }
  backend_->StopDirtyLog();
  memory_->StopHostWriteJournal();
}

absl::StatusOr<PageRuns> VmCore::ChangedPages() {
  const uint64_t page_count = memory_->size() / kPage;
  PageRuns runs;
  if (dirty_log_) {
    // The backend logged the guest's writes; the journal holds the host's
    // (call input, host-function output), and the runtime rewrites its own
    // pages at every reset. A page in none of them was not written, so it
    // is still the image's. The page walker never writes the page tables
    // (their accessed and dirty bits are preset), so they need no look.
    auto written = TakeWrittenPages();
    if (!written.ok()) return written.status();
    runs = *std::move(written);
    for (const auto& [first, end] : runtime_->HostOwnedPages()) {
      runs.emplace_back(first, std::min(end, page_count));
    }
    NormalizeRuns(runs);
  } else {
    auto found = source_->ChangedPages(0, memory_->size());
    if (!found.ok()) return found.status();
    runs = *std::move(found);
  }
  // The emulator drops code it translated from the pages being put back
  // (it notices the guest's own writes to code, not the host's).
  for (const auto& [first, end] : runs) {
    backend_->DiscardCachedCode(first * kPage, (end - first) * kPage);
  }
  return runs;
}

absl::Status VmCore::Reset() {
  if (!source_->can_revert() || restored_.image == nullptr) {
    return absl::FailedPreconditionError(
        "Reset: only a Vm restored with RestoreEngine::kSharedBase can be "
        "reset");
  }
  absl::Time start = absl::Now();
  auto runs = ChangedPages();
  if (!runs.ok()) return Failed(runs.status());
  if (absl::Status s = source_->Revert(*runs); !s.ok()) return Failed(s);
  const uint64_t pages = CountPages(*runs);
  if (absl::Status s = runtime_->Rewind(); !s.ok()) return Failed(s);
  auto entry = runtime_->ResumeState(restored_.vcpu);
  if (!entry.ok()) return Failed(entry.status());
  if (absl::Status s = backend_->SetState(*entry); !s.ok()) {
    return Failed(s);
  }
  if (absl::Status s = runtime_->NewIdentity(restored_.generation + 1);
      !s.ok()) {
    return Failed(s);
  }
  state_ = State::kReady;
  failure_ = absl::OkStatus();
  Record([&](PhaseReport& r, RestoreStats& stats) {
    ++stats.resets;
    stats.pages_reset = pages;
    r.reset = absl::Now() - start;
  });
  return absl::OkStatus();
}

absl::StatusOr<std::string> CheckDiffParent(
    const std::string& path, const std::string& parent_path,
    const snapshot::SnapshotImage& restored_from) {
  auto parent = snapshot::SnapshotFile::Open(parent_path);
  if (!parent.ok()) return parent.status();
  if ((*parent)->manifest().snapshot_id() !=
      restored_from.manifest().snapshot_id()) {
    return absl::FailedPreconditionError(
        absl::StrCat("Snapshot: \"", parent_path,
                     "\" is not the snapshot this Vm was restored from"));
  }
  namespace fs = std::filesystem;
  std::error_code same_error;
  if (fs::equivalent(path, parent_path, same_error)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Snapshot: a diff snapshot cannot replace its own parent \"",
        parent_path, "\""));
  }
  const fs::path absolute = fs::absolute(parent_path);
  return absolute.parent_path() == fs::absolute(path).parent_path()
             ? absolute.filename().string()
             : absolute.string();
}

absl::StatusOr<snapshot::WriteRequest> BeginWriteRequest(
    const std::string& path, const SnapshotOptions& options,
    std::shared_ptr<const snapshot::SnapshotImage> restored_from,
    std::vector<uint32_t> working_set, bool parent_checked) {
  snapshot::WriteRequest request;
  request.path = path;
  request.level = options.compression_level;
  request.chunk_size = options.chunk_size;
  request.progress = options.progress;
  request.threads = options.threads;
  if (options.signing_key.has_value()) {
    request.signing_key = &KeyAccess::Secret(*options.signing_key);
  }
  // A recorded working set goes first in the new file too (its chunk
  // numbers hold only for the chunk size they were recorded in).
  if (restored_from != nullptr &&
      restored_from->chunk_size() == options.chunk_size) {
    request.working_set = std::move(working_set);
  }
  if (!options.parent.empty()) {
    if (restored_from == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("Snapshot: a diff snapshot against \"", options.parent,
                       "\" needs a Vm restored from it; this one was booted"));
    }
    request.diff = true;
    if (parent_checked) {
      request.parent_path = options.parent;
    } else {
      auto recorded = CheckDiffParent(path, options.parent, *restored_from);
      if (!recorded.ok()) return recorded.status();
      request.parent_path = *std::move(recorded);
    }
  }
  request.source = std::move(restored_from);
  return request;
}

absl::Status VmCore::WriteWorkingSet(const snapshot::SecretKey* key) {
  if (absl::Status s = CheckWorkingSetRecorded(); !s.ok()) return s;
  return snapshot::RewriteWithWorkingSet(restored_.image->top(), working_set_,
                                         written_pages_, key);
}

absl::Status VmCore::CheckWorkingSetRecorded() const {
  const RestoreEngine engine = restore_stats().engine;
  if (restored_.image == nullptr || (engine != RestoreEngine::kLazy &&
                                     engine != RestoreEngine::kLazyPrefetch)) {
    return absl::FailedPreconditionError(
        "WriteWorkingSet: only a Vm restored with a lazy engine and "
        "RestoreOptions::record_working_set records a working set");
  }
  if (recording_ || working_set_.empty()) {
    return absl::FailedPreconditionError(
        "WriteWorkingSet: nothing recorded yet (record_working_set was off, "
        "or no call has completed)");
  }
  return absl::OkStatus();
}

SnapshotState& VmAccess::State(const thaw::Snapshot& snapshot) {
  return *snapshot.state_;
}

absl::StatusOr<thaw::Snapshot> VmAccess::OpenDescriptors(
    std::vector<int> fds, const std::vector<std::string>& names,
    const VerifyKey* key) {
  auto state = SnapshotState::OpenDescriptors(std::move(fds), names, key);
  if (!state.ok()) return state.status();
  return thaw::Snapshot(*std::move(state));
}

absl::Status VmAccess::SnapshotToDescriptor(Vm& vm, int fd,
                                            const std::string& name,
                                            const SnapshotOptions& options) {
  LocalVm* local = Local(vm);
  if (local == nullptr) {
    return absl::UnimplementedError(
        "SnapshotToDescriptor: only for a Vm in this process");
  }
  VmCore::Turn turn(local->core(), "Snapshot");
  if (!turn.status().ok()) return turn.status();
  return local->core().Snapshot(name, options, fd, /*parent_checked=*/true);
}

absl::StatusOr<std::unique_ptr<Vm>> VmAccess::RestoreInWorker(
    const SnapshotState& state, const RestoreOptions& options) {
  if (state.image()->manifest().has_linux_machine()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "restore \"", state.image()->top().path(),
        "\": RestoreOptions.worker_process: a Linux VM runs on KVM, which "
        "isolates it in hardware; the worker process is for the emulated "
        "backend"));
  }
  // A remote snapshot: the worker, which reaches no network, gets the
  // host's local copies, so every frame is fetched (and checked) first.
  for (const auto& file : state.image()->files()) {
    if (!file->fetched()) continue;
    std::vector<uint32_t> frames(file->frame_count());
    for (uint32_t f = 0; f < frames.size(); ++f) frames[f] = f;
    if (absl::Status s = file->Fetch(frames); !s.ok()) return s;
  }
  auto worker = WorkerClient::Restore(state, options);
  if (!worker.ok()) return worker.status();
  return Wrap(*std::move(worker));
}

absl::StatusOr<VmAccess::RecordedWorkingSet> VmAccess::WorkingSet(Vm& vm) {
  LocalVm* local = Local(vm);
  if (local == nullptr) {
    return absl::UnimplementedError(
        "WorkingSet: only for a Vm in this process");
  }
  VmCore& core = local->core();
  VmCore::Turn turn(core, "WriteWorkingSet");
  if (!turn.status().ok()) return turn.status();
  if (absl::Status s = core.CheckWorkingSetRecorded(); !s.ok()) return s;
  return RecordedWorkingSet{core.working_set(), core.written_pages()};
}

pid_t VmAccess::WorkerPid(const Vm& vm) {
  const WorkerClient* worker = Worker(vm);
  return worker != nullptr ? worker->pid() : -1;
}

std::string VmAccess::WorkerSelfTest(const Vm& vm) {
  const WorkerClient* worker = Worker(vm);
  return worker != nullptr ? worker->self_test() : std::string();
}

absl::StatusOr<std::unique_ptr<Vm>> VmAccess::RestoreOverMemoryFile(
    const thaw::Snapshot& snapshot, int memory_fd,
    const RestoreOptions& options) {
  absl::Time start = absl::Now();
  SnapshotState& state = State(snapshot);
  auto memory = snapshot::CopyOnWriteMemory::Map(
      memory_fd, state.image()->memory_size(), nullptr);
  if (!memory.ok()) return memory.status();
  RestoreOptions over_file = options;
  over_file.record_working_set = false;
  return RestoreVm(state, over_file, *std::move(memory), start);
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<Vm>> Snapshot::Restore(
    const RestoreOptions& options) const {
  absl::Time start = absl::Now();
  if (absl::Status s = internal::CheckRestoreOptions(options); !s.ok()) {
    return s;
  }
  if (options.verify_key.has_value() &&
      state_->verify_key() != options.verify_key) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "Restore: the options require a signature by %s, but the handle on "
        "\"%s\" was opened %s",
        options.verify_key->Name(), path(),
        state_->verify_key().has_value()
            ? absl::StrCat("with ", state_->verify_key()->Name())
            : std::string("without a key")));
  }
  if (options.worker_process) {
    return internal::VmAccess::RestoreInWorker(*state_, options);
  }
  return internal::RestoreVm(*state_, options, nullptr, start);
}

absl::StatusOr<std::unique_ptr<Vm>> Vm::Restore(const std::string& path,
                                                const RestoreOptions& options) {
  absl::Time start = absl::Now();
  if (absl::Status s = internal::CheckRestoreOptions(options); !s.ok()) {
    return s;
  }
  auto snapshot = options.verify_key.has_value()
                      ? Snapshot::Open(path, *options.verify_key)
                      : Snapshot::Open(path);
  if (!snapshot.ok()) return snapshot.status();
  if (options.worker_process) {
    return internal::VmAccess::RestoreInWorker(
        internal::VmAccess::State(*snapshot), options);
  }
  return internal::RestoreVm(internal::VmAccess::State(*snapshot), options,
                             nullptr, start);
}

absl::Status Vm::Snapshot(const std::string& path,
                          const SnapshotOptions& options) {
  return impl_->Snapshot(path, options);
}

absl::Status Vm::Reset() { return impl_->Reset(); }

absl::Status Vm::WriteWorkingSet() { return impl_->WriteWorkingSet(nullptr); }

absl::Status Vm::WriteWorkingSet(const SigningKey& key) {
  return impl_->WriteWorkingSet(&internal::KeyAccess::Secret(key));
}

RestoreStats Vm::restore_stats() const { return impl_->restore_stats(); }

absl::Status Vm::failure() const { return impl_->failure(); }

ProgramStats Vm::program_stats() const { return impl_->program_stats(); }

}  // namespace thaw
