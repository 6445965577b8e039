#include "lib/local_vm.h"

namespace thaw::internal {

absl::Status LocalVm::LoadGuestImage(absl::Span<const uint8_t> elf,
                                     absl::string_view name) {
  return InTurn("LoadGuest", [&] {
    return core_->Load(GuestKind::kFunction, elf, name, {});
  });
}

absl::Status LocalVm::LoadProgram(absl::Span<const uint8_t> elf,
                                  absl::string_view name,
                                  const ProgramOptions& options) {
  return InTurn("LoadProgram", [&] {
    return core_->Load(GuestKind::kLinuxProgram, elf, name, options);
  });
}

absl::Status LocalVm::Boot() {
  return InTurn("Boot", [&] { return core_->Boot(); });
}

absl::StatusOr<std::string> LocalVm::Call(absl::string_view function,
                                          absl::string_view input) {
  return InTurn("Call", [&] { return core_->Call(function, input); });
}

absl::Status LocalVm::RegisterHostFunction(std::string name, HostFunction fn) {
  return InTurn("RegisterHostFunction", [&] {
    core_->runtime().RegisterHostFunction(std::move(name), std::move(fn));
    return absl::OkStatus();
  });
}

absl::Status LocalVm::Snapshot(const std::string& path,
                               const SnapshotOptions& options) {
  return InTurn("Snapshot", [&] { return core_->Snapshot(path, options); });
}

absl::Status LocalVm::Reset() {
  return InTurn("Reset", [&] { return core_->Reset(); });
}

absl::Status LocalVm::WriteWorkingSet(const snapshot::SecretKey* key) {
  return InTurn("WriteWorkingSet", [&] { return core_->WriteWorkingSet(key); });
}

absl::Status LocalVm::failure() {
  return InTurn("failure", [&] { return core_->failure(); });
}

ProgramStats LocalVm::program_stats() {
  VmCore::Turn turn(*core_, "program_stats");
  if (!turn.status().ok()) return {};
  return core_->runtime().program_stats();
}

}  // namespace thaw::internal
