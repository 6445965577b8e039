// thaw::Snapshot, the handle (thaw/snapshot.h), over SnapshotState
// (lib/snapshot_state.h); SnapshotInfo; InspectSnapshot and VerifySnapshot.
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/signing_access.h"
#include "lib/snapshot_state.h"
#include "remote/store_location.h"
#include "snapshot/format.h"
#include "snapshot/verify.h"
#include "thaw/snapshot.h"

namespace thaw {
namespace internal {
namespace {

SnapshotInfo Summarize(const snapshot::SnapshotFile& file) {
  const snapshot::proto::Manifest& m = file.manifest();
  SnapshotInfo info;
  info.path = file.path();
  info.format_major = snapshot::kMajorVersion;
  info.format_minor = file.format_minor();
  info.snapshot_id = absl::BytesToHexString(m.snapshot_id());
  if (m.has_parent()) info.parent_path = m.parent().path();
  info.source_backend = m.source_backend();
  info.guest_name = m.abi().guest_name();
  info.created = absl::FromUnixNanos(m.created_unix_ns());
  info.file_size = file.file_size();
  info.memory_size = m.memory().size();
  info.chunk_size = file.chunk_size();
  info.chunks = file.chunk_count();
  for (uint64_t c = 0; c < info.chunks; ++c) {
    const uint32_t frame = file.ChunkFrame(c);
    if (frame == snapshot::SnapshotFile::kZero) ++info.zero_chunks;
    if (frame == snapshot::kParentChunk) ++info.parent_chunks;
  }
  info.frames = file.frame_count();
  for (uint32_t size : m.frames().stored_size()) info.stored_bytes += size;
  info.working_set_chunks = m.working_set_size();
  for (uint32_t size : m.packed_working_set().stored_size()) {
    info.packed_working_set_bytes += size;
  }
  info.compression_level = m.compression_level();
  info.restore_generation = m.abi().restore_generation();
  if (file.is_signed()) {
    info.signer = snapshot::KeyName(file.signer());
    info.signature_verified = file.authenticated();
  }
  info.guest_kind = m.config().guest_kind() == 2   ? "linux-vm"
                    : m.config().guest_kind() == 1 ? "linux-program"
                                                   : "function";
  if (m.has_linux_machine()) {
    info.guest_name = m.linux_machine().kernel_name();
    info.restore_generation = m.linux_machine().restore_generation();
  }
  for (const auto& mount : m.program().mounts()) {
    info.program_mounts.push_back(
        absl::StrCat(mount.host_path(), " -> ", mount.guest_path()));
  }
  for (const auto& file : m.program().files()) {
    // Kind 3 and 4 are host files and directories (Syscalls::OpenFile).
    if ((file.kind() == 3 || file.kind() == 4) && file.same_as() < 0) {
      info.program_files.push_back(file.path());
    }
  }
  return info;
}

}  // namespace

absl::StatusOr<std::shared_ptr<SnapshotState>> SnapshotState::Open(
    const std::string& path, const VerifyKey* key) {
  auto image = snapshot::SnapshotImage::Open(
      path, key != nullptr ? &KeyAccess::Public(*key) : nullptr);
  if (!image.ok()) return image.status();
  SnapshotInfo info = Summarize((*image)->top());
  return std::shared_ptr<SnapshotState>(new SnapshotState(
      *std::move(image), std::move(info),
      key != nullptr ? std::optional<VerifyKey>(*key) : std::nullopt));
}

absl::StatusOr<std::shared_ptr<SnapshotState>> SnapshotState::Open(
    const std::string& location, const OpenOptions& options) {
  const VerifyKey* key = options.key.has_value() ? &*options.key : nullptr;
  if (!IsRemoteLocation(location)) return Open(location, key);
  auto store = remote::RemoteStore::Create(options.remote);
  if (!store.ok()) return store.status();
  const snapshot::PublicKey* public_key =
      key != nullptr ? &KeyAccess::Public(*key) : nullptr;
  auto top = (*store)->OpenFile(location, public_key,
                                /*start_working_set=*/true);
  if (!top.ok()) return top.status();
  // A diff chain's links come from the same store, each beside its child.
  auto image = snapshot::SnapshotImage::Link(
      *std::move(top),
      [&](const std::string& parent)
          -> absl::StatusOr<std::shared_ptr<const snapshot::SnapshotFile>> {
        if (absl::Status s = remote::CheckParentLocation(location, parent);
            !s.ok()) {
          return s;
        }
        return (*store)->OpenFile(parent, public_key);
      });
  if (!image.ok()) return image.status();
  SnapshotInfo info = Summarize((*image)->top());
  std::shared_ptr<SnapshotState> state(
      new SnapshotState(*std::move(image), std::move(info), options.key));
  state->remote_ = *std::move(store);
  return state;
}

absl::StatusOr<std::shared_ptr<SnapshotState>> SnapshotState::OpenDescriptors(
    std::vector<int> fds, const std::vector<std::string>& names,
    const VerifyKey* key) {
  auto image = snapshot::SnapshotImage::OpenDescriptors(
      std::move(fds), names,
      key != nullptr ? &KeyAccess::Public(*key) : nullptr);
  if (!image.ok()) return image.status();
  SnapshotInfo info = Summarize((*image)->top());
  return std::shared_ptr<SnapshotState>(new SnapshotState(
      *std::move(image), std::move(info),
      key != nullptr ? std::optional<VerifyKey>(*key) : std::nullopt));
}

absl::StatusOr<std::shared_ptr<const snapshot::SharedBase>>
SnapshotState::SharedBase(snapshot::RestoreCounters& counters, bool* built) {
  std::lock_guard<std::mutex> lock(base_mutex_);
  *built = false;
  if (base_ != nullptr) return base_;
  auto base = snapshot::SharedBase::Build(*image_, counters);
  if (!base.ok()) return base.status();
  base_ = *std::move(base);
  *built = true;
  return base_;
}

}  // namespace internal

absl::StatusOr<Snapshot> Snapshot::Open(const std::string& path) {
  return Open(path, OpenOptions{});
}

absl::StatusOr<Snapshot> Snapshot::Open(const std::string& path,
                                        const VerifyKey& key) {
  OpenOptions options;
  options.key = key;
  return Open(path, options);
}

absl::StatusOr<Snapshot> Snapshot::Open(const std::string& location,
                                        const OpenOptions& options) {
  auto state = internal::SnapshotState::Open(location, options);
  if (!state.ok()) return state.status();
  return Snapshot(*std::move(state));
}

RemoteStats Snapshot::remote_stats() const {
  return state_->remote() != nullptr ? state_->remote()->stats()
                                     : RemoteStats{};
}

const SnapshotInfo& Snapshot::Info() const { return state_->info(); }
const std::string& Snapshot::path() const { return state_->info().path; }

absl::Status Snapshot::Verify(
    std::function<void(uint64_t done, uint64_t total)> progress) const {
  return snapshot::VerifyImage(*state_->image(), progress);
}

absl::StatusOr<SnapshotInfo> InspectSnapshot(const std::string& path) {
  // The top file only: a diff snapshot is summarized without its parents.
  if (IsRemoteLocation(path)) {
    auto store = remote::RemoteStore::Create(RemoteOptions{});
    if (!store.ok()) return store.status();
    auto file = (*store)->OpenFile(path, nullptr);
    if (!file.ok()) return file.status();
    return internal::Summarize(**file);
  }
  auto file = snapshot::SnapshotFile::Open(path);
  if (!file.ok()) return file.status();
  return internal::Summarize(**file);
}

absl::Status VerifySnapshot(
    const std::string& path,
    std::function<void(uint64_t done, uint64_t total)> progress,
    const VerifyKey* key) {
  auto snapshot =
      key != nullptr ? Snapshot::Open(path, *key) : Snapshot::Open(path);
  if (!snapshot.ok()) return snapshot.status();
  return snapshot->Verify(std::move(progress));
}

double SnapshotInfo::compression_ratio() const {
  return file_size == 0 ? 0.0 : static_cast<double>(memory_size) / file_size;
}

std::string SnapshotInfo::ToString() const {
  std::string out;
  absl::StrAppendFormat(&out, "file: %s (%d bytes, format %d.%d)\n", path,
                        file_size, format_major, format_minor);
  absl::StrAppendFormat(&out, "snapshot id: %s\n", snapshot_id);
  absl::StrAppendFormat(
      &out, "signature: %s\n",
      signer.empty()
          ? "none (unsigned)"
          : absl::StrCat(signer, signature_verified
                                     ? " (verified)"
                                     : " (not checked: no key given)"));
  if (!parent_path.empty()) {
    absl::StrAppendFormat(&out, "parent: %s (diff snapshot)\n", parent_path);
  }
  absl::StrAppendFormat(&out, "taken on: %s backend, %s\n", source_backend,
                        absl::FormatTime(created, absl::UTCTimeZone()));
  absl::StrAppendFormat(&out, "guest: %s %s (restore generation %d)\n",
                        guest_kind, guest_name, restore_generation);
  for (const std::string& mount : program_mounts) {
    absl::StrAppendFormat(&out, "file view: %s\n", mount);
  }
  for (const std::string& file : program_files) {
    absl::StrAppendFormat(&out, "open file: %s\n", file);
  }
  absl::StrAppendFormat(&out, "memory: %d bytes in %d chunks of %d bytes\n",
                        memory_size, chunks, chunk_size);
  absl::StrAppendFormat(
      &out,
      "chunks: %d zero, %d from parent, %d stored as %d distinct frames "
      "(%d bytes, zstd level %d)\n",
      zero_chunks, parent_chunks, chunks - zero_chunks - parent_chunks, frames,
      stored_bytes, compression_level);
  absl::StrAppendFormat(&out, "compression ratio: %.1fx (memory / file)\n",
                        compression_ratio());
  absl::StrAppendFormat(
      &out, "working set: %d chunks (%d bytes)%s\n", working_set_chunks,
      working_set_chunks * uint64_t{chunk_size},
      working_set_chunks == 0 ? ", none recorded"
      : packed_working_set_bytes == 0
          ? ""
          : absl::StrFormat(", packed for remote restores in %d bytes",
                            packed_working_set_bytes));
  return out;
}

}  // namespace thaw
