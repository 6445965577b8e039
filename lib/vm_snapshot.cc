// Vm::Impl's snapshots, restores, resets and working sets (the engines
// themselves are in snapshot/), and the public Vm methods for them.
#include <sys/mman.h>
#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/errno_status.h"
#include "lib/page_map.h"
#include "lib/vm_impl.h"
#include "lib/vm_internal.h"
#include "snapshot/eager_restore.h"
#include "snapshot/vcpu_codec.h"
#include "thaw/vm.h"

namespace thaw {

absl::Status Vm::Impl::WriteRestoreIdentity() {
  boot_info_->restore_generation = snapshot_generation_ + 1;
  if (getrandom(boot_info_->entropy, sizeof(boot_info_->entropy), 0) !=
      static_cast<ssize_t>(sizeof(boot_info_->entropy))) {
    return ErrnoStatus("getrandom for guest entropy", errno);
  }
  boot_info_->request = THAW_REQUEST_CALL;
  return MemoryError();
}

absl::Status Vm::Impl::RestoreFrom(
    std::shared_ptr<const snapshot::SnapshotImage> image,
    const RestoreOptions& options, absl::Time start) {
  const snapshot::proto::Manifest& m = image->manifest();
  const std::string& path = image->top().path();
  absl::Status msrs = snapshot::CheckMsrs(m.vcpu());
  backend::VcpuState state = snapshot::DecodeVcpuState(m.vcpu());
  if (absl::Status s = msrs.ok() ? x86::CheckPortableState(state) : msrs;
      !s.ok()) {
    return absl::Status(s.code(),
                        absl::StrCat("restore \"", path, "\": ", s.message()));
  }
  source_ = image;
  stats_.engine = options.engine;
  if (absl::Status s = CreateBackend(); !s.ok()) return s;
  switch (options.engine) {
    case RestoreEngine::kEager:
      if (absl::Status s =
              snapshot::RestoreEagerly(*image, memory_->host_base(), counters_);
          !s.ok()) {
        return s;
      }
      break;
    case RestoreEngine::kLazy:
    case RestoreEngine::kLazyPrefetch: {
      snapshot::LazyPager::Options pager_options;
      pager_options.prefetch = options.engine == RestoreEngine::kLazyPrefetch;
      pager_options.record = options.record_working_set;
      // A chunk that fails its checksum stops the guest at once.
      pager_options.on_error = [this](const absl::Status&) {
        backend_->Interrupt();
      };
      auto pager = snapshot::LazyPager::Start(image, memory_->host_base(),
                                              counters_, pager_options);
      if (!pager.ok()) return pager.status();
      pager_ = *std::move(pager);
      recording_ = options.record_working_set;
      break;
    }
    case RestoreEngine::kSharedBase:
      // memory_ already maps the base (Vm::Restore). Resets are cheapest
      // with the hypervisor's dirty log where there is one (KVM).
      if (base_ != nullptr && backend_->StartDirtyLog().ok()) {
        dirty_log_ = true;
        memory_->StartHostWriteJournal();
      }
      break;
  }
  for (const auto& [name, address] : m.abi().symbols()) {
    symbols_[name] = address;
  }
  guest_name_ = m.abi().guest_name();
  auto info = memory_->As<thaw_boot_info>(THAW_BOOT_INFO_ADDR, "boot info");
  if (!info.ok()) return info.status();
  boot_info_ = *info;
  if (boot_info_->magic != THAW_BOOT_INFO_MAGIC ||
      boot_info_->abi_version != THAW_ABI_VERSION ||
      boot_info_->memory_size != config_.memory_size ||
      boot_info_->input_addr != layout_.input_addr ||
      boot_info_->output_addr != layout_.output_addr) {
    if (absl::Status s = MemoryError(); !s.ok()) return s;
    return absl::DataLossError(absl::StrCat(
        "restore \"", path,
        "\": the boot-info page in the snapshot's memory does not match its "
        "manifest"));
  }
  snapshot_state_ = state;
  snapshot_generation_ = m.abi().restore_generation();
  if (absl::Status s = backend_->SetState(state); !s.ok()) return s;
  if (absl::Status s = WriteRestoreIdentity(); !s.ok()) return s;
  if (dirty_log_) {
    // Start from a clean log: only what happens from here on is undone.
    if (auto log = backend_->TakeDirtyLog(); !log.ok()) return log.status();
    memory_->TakeHostWrites();
  }
  state_ = State::kReady;
  std::lock_guard<std::mutex> lock(report_mutex_);
  report_.restore = absl::Now() - start;
  return absl::OkStatus();
}

absl::Status Vm::Impl::RunBeforeSnapshotHook() {
  boot_info_->request = THAW_REQUEST_BEFORE_SNAPSHOT;
  std::memset(boot_info_->function_name, 0, sizeof(boot_info_->function_name));
  boot_info_->input_size = 0;
  dispatcher_.Begin(/*in_call=*/true);
  absl::Status status = RunGuest("before-snapshot hook");
  boot_info_->request = THAW_REQUEST_CALL;
  if (!status.ok()) return Failed(status);
  const auto& outcome = dispatcher_.outcome();
  if (outcome.kind == HypercallDispatcher::Outcome::Kind::kFailed) {
    absl::Status error(
        outcome.error.code(),
        absl::StrCat("before-snapshot hook: ", outcome.error.message()));
    return outcome.vm_usable ? error : Failed(error);
  }
  if (outcome.reply_status != 0) {
    return absl::AbortedError(absl::StrFormat(
        "before-snapshot hook replied with status %d", outcome.reply_status));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::function<snapshot::ChunkHint(uint64_t)>>
Vm::Impl::ChunkHints(uint32_t chunk_size) {
  using snapshot::ChunkHint;
  if (pager_) {
    // Chunks the pager never installed are still the image's.
    if (source_->chunk_size() != chunk_size) {
      return [](uint64_t) { return ChunkHint::kRead; };
    }
    snapshot::LazyPager* pager = pager_.get();
    return [pager](uint64_t c) {
      return pager->installed(c) ? ChunkHint::kRead : ChunkHint::kUnchanged;
    };
  }
  auto map = PageMap::Read(memory_->host_base(), memory_->size());
  if (!map.ok()) return map.status();
  auto pages = std::make_shared<PageMap>(*std::move(map));
  const uint64_t per_chunk = chunk_size / kGuestPage;
  if (memory_->file_backed()) {
    // A shared base: pages without a private copy are still the base's.
    return [pages, per_chunk](uint64_t c) {
      for (uint64_t p = c * per_chunk; p < (c + 1) * per_chunk; ++p) {
        if (pages->private_copy(p)) return ChunkHint::kRead;
      }
      return ChunkHint::kUnchanged;
    };
  }
  // Anonymous memory: a page never touched reads as zeros.
  return [pages, per_chunk](uint64_t c) {
    for (uint64_t p = c * per_chunk; p < (c + 1) * per_chunk; ++p) {
      if (pages->touched(p)) return ChunkHint::kRead;
    }
    return ChunkHint::kZero;
  };
}

absl::Status Vm::Impl::Snapshot(const std::string& path,
                                const SnapshotOptions& options) {
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
  snapshot::WriteRequest request;
  request.path = path;
  request.level = options.compression_level;
  request.chunk_size = options.chunk_size;
  request.source = source_;
  request.progress = options.progress;
  if (!options.parent.empty()) {
    if (source_ == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("Snapshot: a diff snapshot against \"", options.parent,
                       "\" needs a Vm restored from it; this one was booted"));
    }
    auto parent = snapshot::SnapshotFile::Open(options.parent);
    if (!parent.ok()) return parent.status();
    if ((*parent)->manifest().snapshot_id() !=
        source_->manifest().snapshot_id()) {
      return absl::FailedPreconditionError(
          absl::StrCat("Snapshot: \"", options.parent,
                       "\" is not the snapshot this Vm was restored from"));
    }
    request.diff = true;
    namespace fs = std::filesystem;
    std::error_code same_error;
    if (fs::equivalent(path, options.parent, same_error)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Snapshot: a diff snapshot cannot replace its own parent \"",
          options.parent, "\""));
    }
    fs::path parent_path = fs::absolute(options.parent);
    request.parent_path =
        parent_path.parent_path() == fs::absolute(path).parent_path()
            ? parent_path.filename().string()
            : parent_path.string();
  }
  if (absl::Status s = RunBeforeSnapshotHook(); !s.ok()) return s;
  if (absl::Status s = backend_->CheckNothingPending(); !s.ok()) return s;
  auto state = backend_->GetState();
  if (!state.ok()) return state.status();

  snapshot::proto::Manifest& m = request.manifest;
  m.set_source_backend(std::string(BackendName(backend_->kind())));
  m.mutable_config()->set_memory_size(config_.memory_size);
  m.mutable_config()->set_input_buffer_size(config_.input_buffer_size);
  m.mutable_config()->set_output_buffer_size(config_.output_buffer_size);
  m.mutable_config()->set_stack_size(config_.stack_size);
  *m.mutable_vcpu() = snapshot::EncodeVcpuState(*state);
  m.mutable_abi()->set_abi_version(THAW_ABI_VERSION);
  m.mutable_abi()->set_restore_generation(boot_info_->restore_generation);
  m.mutable_abi()->set_guest_name(guest_name_);
  for (const auto& [name, address] : symbols_) {
    (*m.mutable_abi()->mutable_symbols())[name] = address;
  }
  request.memory = memory_->host_base();
  request.memory_size = memory_->size();
  auto hints = ChunkHints(options.chunk_size);
  if (!hints.ok()) return hints.status();
  request.hint = *std::move(hints);
  if (absl::Status s = snapshot::WriteSnapshot(request); !s.ok()) return s;
  if (absl::Status s = MemoryError(); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(report_mutex_);
  report_.snapshot = absl::Now() - start;
  return absl::OkStatus();
}

absl::StatusOr<PageRuns> Vm::Impl::ChangedPages() {
  const uint64_t page_count = memory_->size() / kGuestPage;
  if (dirty_log_) {
    // KVM logged the guest's writes; the journal holds the host's (call
    // input, host-function output) and the boot-info page is rewritten at
    // every reset. A page in neither was not written, so it is still the
    // base's.
    auto log = backend_->TakeDirtyLog();
    if (!log.ok()) return log.status();
    std::vector<uint64_t>& bits = *log;
    auto mark = [&](uint64_t address, uint64_t length) {
      for (uint64_t p = address / kGuestPage;
           p < page_count && p * kGuestPage < address + length; ++p) {
        bits[p / 64] |= uint64_t{1} << (p % 64);
      }
    };
    mark(THAW_BOOT_INFO_ADDR, kGuestPage);
    for (const auto& [address, length] : memory_->TakeHostWrites()) {
      mark(address, length);
    }
    PageRuns runs;
    for (uint64_t p = 0; p < page_count; ++p) {
      if (!(bits[p / 64] >> (p % 64) & 1)) continue;
      if (!runs.empty() && runs.back().second == p) {
        ++runs.back().second;
      } else {
        runs.emplace_back(p, p + 1);
      }
    }
    return runs;
  }
  auto runs = PageMap::PrivateRuns(memory_->host_base(), memory_->size());
  if (!runs.ok()) return runs.status();
  // The emulator drops code it translated from changed pages first: finding
  // that code walks the guest page tables and may set accessed bits in them,
  // a write. The page tables live in the host-owned first 2 MiB, so only
  // that stretch needs a second look.
  bool discarded = false;
  for (const auto& [first, end] : *runs) {
    discarded |= backend_->DiscardCachedCode(first * kGuestPage,
                                             (end - first) * kGuestPage);
  }
  if (discarded) {
    auto low = PageMap::PrivateRuns(memory_->host_base(), THAW_IMAGE_BASE);
    if (!low.ok()) return low.status();
    PageRuns merged = *std::move(low);
    for (const auto& run : *runs) {
      if (run.second > THAW_IMAGE_BASE / kGuestPage) {
        merged.emplace_back(
            std::max<uint64_t>(run.first, THAW_IMAGE_BASE / kGuestPage),
            run.second);
      }
    }
    *runs = std::move(merged);
  }
  return runs;
}

absl::Status Vm::Impl::Reset() {
  if (base_ == nullptr) {
    return absl::FailedPreconditionError(
        "Reset: only a Vm restored with RestoreEngine::kSharedBase can be "
        "reset");
  }
  absl::Time start = absl::Now();
  auto runs = ChangedPages();
  if (!runs.ok()) return Failed(runs.status());
  uint64_t pages = 0;
  for (const auto& [first, end] : *runs) {
    // Safe: drops this Vm's private copies of its own pages; the next touch
    // maps the shared base's page again.
    if (madvise(memory_->host_base() + first * kGuestPage,
                (end - first) * kGuestPage, MADV_DONTNEED) != 0) {
      return Failed(ErrnoStatus("Reset: madvise(MADV_DONTNEED)", errno));
    }
    pages += end - first;
  }
  if (absl::Status s = backend_->SetState(snapshot_state_); !s.ok()) {
    return Failed(s);
  }
  if (absl::Status s = WriteRestoreIdentity(); !s.ok()) return Failed(s);
  state_ = State::kReady;
  failure_ = absl::OkStatus();
  ++stats_.resets;
  stats_.pages_reset = pages;
  std::lock_guard<std::mutex> lock(report_mutex_);
  report_.reset = absl::Now() - start;
  return absl::OkStatus();
}

absl::Status Vm::Impl::WriteWorkingSet() {
  if (pager_ == nullptr) {
    return absl::FailedPreconditionError(
        "WriteWorkingSet: only a Vm restored with a lazy engine and "
        "RestoreOptions::record_working_set records a working set");
  }
  if (recording_ || working_set_.empty()) {
    return absl::FailedPreconditionError(
        "WriteWorkingSet: nothing recorded yet (record_working_set was off, "
        "or no call has completed)");
  }
  return snapshot::RewriteWithWorkingSet(source_->top(), working_set_);
}
absl::StatusOr<std::unique_ptr<Vm>> internal::VmAccess::Restore(
    const std::string& path, const RestoreOptions& options, int memory_fd) {
  absl::Time start = absl::Now();
  if (options.record_working_set && options.engine != RestoreEngine::kLazy) {
    return absl::InvalidArgumentError(
        "RestoreOptions.record_working_set needs RestoreEngine::kLazy (other "
        "engines install chunks the guest may never touch)");
  }
  auto image = snapshot::SnapshotImage::Open(path);
  if (!image.ok()) return image.status();
  const snapshot::proto::Manifest& m = (*image)->manifest();
  VmConfig config;
  config.memory_size = m.config().memory_size();
  config.input_buffer_size = m.config().input_buffer_size();
  config.output_buffer_size = m.config().output_buffer_size();
  config.stack_size = m.config().stack_size();
  config.backend = options.backend;
  config.call_timeout = options.call_timeout;
  config.console_limit = options.console_limit;
  config.console_sink = options.console_sink;
  auto layout = ComputeLayout(config);
  if (!layout.ok()) {
    return absl::Status(
        layout.status().code(),
        absl::StrCat("restore \"", path, "\": ", layout.status().message()));
  }
  std::shared_ptr<const snapshot::SharedBase> base;
  snapshot::RestoreCounters base_counters;
  bool built = false;
  absl::StatusOr<std::unique_ptr<GuestMemory>> memory;
  if (memory_fd >= 0) {
    memory = GuestMemory::MapPrivate(memory_fd, config.memory_size);
  } else if (options.engine == RestoreEngine::kSharedBase) {
    auto shared = snapshot::SharedBase::Get(*image, base_counters, &built);
    if (!shared.ok()) return shared.status();
    base = *std::move(shared);
    memory = GuestMemory::MapPrivate(base->fd(), base->size());
  } else {
    memory = GuestMemory::Create(config.memory_size);
  }
  if (!memory.ok()) return memory.status();
  auto impl = std::make_unique<Vm::Impl>(config, *layout, *std::move(memory));
  impl->AdoptBase(std::move(base), built, base_counters);
  if (absl::Status s = impl->RestoreFrom(*std::move(image), options, start);
      !s.ok()) {
    return s;
  }
  return std::unique_ptr<Vm>(new Vm(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<Vm>> Vm::Restore(const std::string& path,
                                                const RestoreOptions& options) {
  return internal::VmAccess::Restore(path, options, /*memory_fd=*/-1);
}

absl::StatusOr<std::unique_ptr<Vm>> internal::VmAccess::RestoreOverMemoryFile(
    const std::string& snapshot_path, int memory_fd,
    const RestoreOptions& options) {
  RestoreOptions over_file = options;
  over_file.engine = RestoreEngine::kSharedBase;  // memory is mapped already
  over_file.record_working_set = false;
  return Restore(snapshot_path, over_file, memory_fd);
}
absl::Status Vm::Snapshot(const std::string& path,
                          const SnapshotOptions& options) {
  return impl_->Snapshot(path, options);
}
absl::Status Vm::Reset() { return impl_->Reset(); }
absl::Status Vm::WriteWorkingSet() { return impl_->WriteWorkingSet(); }
RestoreStats Vm::restore_stats() const { return impl_->restore_stats(); }

}  // namespace thaw
