// FunctionGuest: the runtime of function guests — freestanding x86-64 ELF
// programs written against thaw's SDK (include/thaw/guest.h), running in
// ring 0 on identity-mapped page tables the host builds. The host talks to
// them through the boot-info page and hypercalls (doc/guest-abi.md): a call
// writes the request into the boot-info page and the input buffer and
// resumes the guest, parked in its `wait` hypercall; the guest replies with
// the `reply` hypercall.
//
// Thread safety: see GuestRuntime.
#ifndef THAW_LIB_FUNCTION_GUEST_H_
#define THAW_LIB_FUNCTION_GUEST_H_

#include <memory>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "lib/guest_memory.h"
#include "lib/guest_runtime.h"
#include "lib/hypercall_dispatcher.h"
#include "thaw/abi.h"

namespace thaw {

// Where the buffers and the stack go, from the top of guest memory down.
struct FunctionGuestLayout {
  uint64_t stack_top, input_addr, output_addr;
};

// The layout for `config`; InvalidArgument naming the field if it is bad.
absl::StatusOr<FunctionGuestLayout> ComputeLayout(const VmConfig& config);

class FunctionGuest final : public GuestRuntime {
 public:
  // `memory` and `config` outlive the runtime.
  FunctionGuest(const VmConfig& config, FunctionGuestLayout layout,
                GuestMemory& memory)
      : config_(config),
        layout_(layout),
        memory_(memory),
        dispatcher_(memory, config, config.output_buffer_size) {}

  backend::HypercallHandler& handler() override { return dispatcher_; }
  absl::Status Load(absl::Span<const uint8_t> image, absl::string_view name,
                    const ProgramOptions& options,
                    backend::Backend& backend) override;
  absl::Status BeginBoot() override;
  absl::Status BeginCall(absl::string_view function,
                         absl::string_view input) override;
  absl::Status BeginBeforeSnapshot() override;
  Outcome Finish(absl::string_view what) override;
  absl::Status Save(snapshot::proto::Manifest& manifest) const override;
  absl::Status Restore(const snapshot::proto::Manifest& manifest,
                       absl::string_view path) override;
  absl::Status NewIdentity(uint64_t generation) override;
  uint64_t generation() const override {
    return boot_info_ ? boot_info_->restore_generation : 0;
  }
  PageRuns HostOwnedPages() const override;
  void RegisterHostFunction(std::string name, HostFunction fn) override {
    dispatcher_.Register(std::move(name), std::move(fn));
  }
  absl::StatusOr<uint64_t> FindSymbol(absl::string_view name) const override;
  std::string console() const override { return dispatcher_.console(); }

 private:
  enum class Request { kNone, kBoot, kCall, kBeforeSnapshot };

  const VmConfig& config_;
  const FunctionGuestLayout layout_;
  GuestMemory& memory_;
  HypercallDispatcher dispatcher_;
  thaw_boot_info* boot_info_ = nullptr;  // in guest memory, once loaded
  Request request_ = Request::kNone;
  std::string function_;  // of the call in progress
  std::string guest_name_;
  mutable std::mutex symbols_mutex_;  // FindSymbol runs on any thread
  absl::flat_hash_map<std::string, uint64_t> symbols_;
};

}  // namespace thaw

#endif  // THAW_LIB_FUNCTION_GUEST_H_
