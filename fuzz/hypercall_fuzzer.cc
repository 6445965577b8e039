// Fuzz target: the hypercall dispatcher, the host side of the function-guest
// ABI. The input is a count, that many hypercalls (number and four argument
// registers, as a guest sets them, 40 bytes each), then a guest memory image
// (its first 64 KiB; the rest is zero), with host functions registered that
// echo, fail and return large replies. Addresses are biased towards guest
// memory so that the checks past the range check are reached too. A crash, a
// sanitizer report or a touch outside guest memory is a finding.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "fuzz/call_input.h"
#include "lib/guest_memory.h"
#include "lib/hypercall_dispatcher.h"
#include "thaw/abi.h"

namespace {

constexpr uint64_t kMemory = 4 << 20;
constexpr size_t kImage = 64 << 10;

// Mostly small addresses inside guest memory; sometimes any 64-bit value.
uint64_t Address(uint64_t raw) {
  return (raw & 0xF) == 0 ? raw : (raw >> 4) % (kMemory + 4096);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using thaw::fuzz::Take;
  const thaw::fuzz::CallInput in =
      thaw::fuzz::SplitCallInput(data, size, /*max_calls=*/32, /*record=*/40);
  if (in.count == 0) return 0;
  thaw::GuestMemory* memory = thaw::fuzz::FreshGuestMemory(kMemory, in, kImage);
  if (memory == nullptr) return 0;
  const uint8_t* call_data = in.calls;
  size_t call_size = in.calls_size;
  const int calls = in.count;

  thaw::VmSettings settings;
  settings.console_limit = 4096;
  thaw::HypercallDispatcher dispatcher(*memory, settings, 1 << 16);
  dispatcher.Register("echo", [](absl::string_view in) {
    return absl::StatusOr<std::string>(std::string(in));
  });
  dispatcher.Register("fail", [](absl::string_view) {
    return absl::StatusOr<std::string>(absl::InternalError("no"));
  });
  dispatcher.Register("big", [](absl::string_view) {
    return absl::StatusOr<std::string>(std::string(1 << 20, 'x'));
  });
  dispatcher.Begin(/*in_call=*/true);
  for (int i = 0; i < calls && call_size > 0; ++i) {
    thaw::backend::Hypercall call;
    call.number = Take(call_data, call_size) % 16;
    call.arg0 = Address(Take(call_data, call_size));
    call.arg1 = Take(call_data, call_size) % (kMemory * 2);
    call.arg2 = Address(Take(call_data, call_size));
    call.arg3 = Take(call_data, call_size) % (kMemory * 2);
    thaw::backend::HypercallResult result = dispatcher.Handle(call);
    if (result.stop) dispatcher.Begin((call.number & 1) != 0);
  }
  (void)dispatcher.console();
  return 0;
}
