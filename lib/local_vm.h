// LocalVm: a thaw::Vm that lives in this process — a VmCore running a
// function guest or a Linux program on one vCPU — with the public
// contract's one operation at a time (VmCore::Turn) around each operation.
#ifndef THAW_LIB_LOCAL_VM_H_
#define THAW_LIB_LOCAL_VM_H_

#include <memory>
#include <string>

#include "lib/vm_core.h"
#include "lib/vm_impl.h"

namespace thaw::internal {

class LocalVm final : public VmImpl {
 public:
  explicit LocalVm(std::unique_ptr<VmCore> core) : core_(std::move(core)) {}

  // For thaw's own tools (VmAccess), which take a Turn themselves.
  VmCore& core() { return *core_; }

  BackendKind backend() const override { return core_->backend(); }
  const VmConfig& config() const override { return core_->config(); }

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
  absl::Status Reset() override;
  absl::Status WriteWorkingSet(const snapshot::SecretKey* key) override;
  absl::Status failure() override;
  ProgramStats program_stats() override;

  RestoreStats restore_stats() override { return core_->restore_stats(); }
  void Pause() override { core_->loop().Pause(); }
  void Resume() override { core_->loop().Resume(); }
  bool paused() const override { return core_->loop().paused(); }
  std::string console() override { return core_->runtime().console(); }
  PhaseReport report() override { return core_->report(); }
  absl::StatusOr<std::string> ReadMemory(uint64_t address,
                                         uint64_t size) override {
    return core_->ReadMemory(address, size);
  }
  absl::StatusOr<uint64_t> FindSymbol(absl::string_view name) override {
    return core_->runtime().FindSymbol(name);
  }

 private:
  // Runs `operation` holding the Vm's turn; the turn's error if the
  // thread already holds it.
  template <typename F>
  auto InTurn(absl::string_view what, F operation) -> decltype(operation()) {
    VmCore::Turn turn(*core_, what);
    if (!turn.status().ok()) return turn.status();
    return operation();
  }

  std::unique_ptr<VmCore> core_;
};

}  // namespace thaw::internal

#endif  // THAW_LIB_LOCAL_VM_H_
