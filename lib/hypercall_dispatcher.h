// HypercallDispatcher: the host side of the guest ABI (doc/guest-abi.md).
//
// It serves the hypercalls of one Vm: console output, parking, replies, host
// function calls and aborts. Every address and length the guest passes is
// checked through GuestMemory::Slice before use; a bad one fails the call
// with InvalidArgument naming the hypercall, and never touches host memory
// outside the guest.
//
// Thread safety: Handle() runs on the vCPU thread inside Backend::Run();
// console() may be called from any thread.
#ifndef THAW_LIB_HYPERCALL_DISPATCHER_H_
#define THAW_LIB_HYPERCALL_DISPATCHER_H_

#include <cstdint>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "lib/backend/backend.h"
#include "lib/console.h"
#include "lib/guest_memory.h"
#include "thaw/options.h"
#include "thaw/vm.h"

namespace thaw {

class HypercallDispatcher final : public backend::HypercallHandler {
 public:
  HypercallDispatcher(GuestMemory& memory, const VmSettings& settings,
                      uint64_t output_capacity);

  // What the guest did by the time it stopped.
  struct Outcome {
    enum class Kind { kNone, kParked, kReplied, kFailed } kind = Kind::kNone;
    uint32_t reply_status = 0;
    std::string reply;
    // For kFailed: the error, and whether the Vm can still be used (the
    // guest is parked at a clean point) or not.
    absl::Status error;
    bool vm_usable = false;
  };

  // Starts a fresh outcome; `in_call` says whether a reply is expected.
  void Begin(bool in_call);
  const Outcome& outcome() const { return outcome_; }

  void Register(std::string name, HostFunction fn);

  std::string console() const;

  backend::HypercallResult Handle(const backend::Hypercall& call) override;

 private:
  backend::HypercallResult Fail(absl::Status error, bool vm_usable = false);
  backend::HypercallResult ConsoleWrite(uint64_t address, uint64_t size);
  backend::HypercallResult Reply(uint64_t status, uint64_t address,
                                 uint64_t size);
  backend::HypercallResult HostCall(uint64_t args_address);
  backend::HypercallResult Abort(uint64_t address, uint64_t size);

  GuestMemory& memory_;
  uint64_t output_capacity_;
  bool in_call_ = false;
  Outcome outcome_;
  absl::flat_hash_map<std::string, HostFunction> host_functions_;
  Console console_;
};

}  // namespace thaw

#endif  // THAW_LIB_HYPERCALL_DISPATCHER_H_
