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

#include "lib/guest_memory.h"
#include "lib/hypercall_dispatcher.h"
#include "thaw/abi.h"

namespace {

constexpr uint64_t kMemory = 4 << 20;
constexpr size_t kImage = 64 << 10;

uint64_t Take(const uint8_t*& data, size_t& size) {
  uint64_t v = 0;
  const size_t n = std::min<size_t>(size, 8);
  std::memcpy(&v, data, n);
  data += n;
  size -= n;
  return v;
}

// Mostly small addresses inside guest memory; sometimes any 64-bit value.
uint64_t Address(uint64_t raw) {
  return (raw & 0xF) == 0 ? raw : (raw >> 4) % (kMemory + 4096);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::unique_ptr<thaw::GuestMemory> memory = [] {
    auto m = thaw::GuestMemory::Create(kMemory);
    return m.ok() ? *std::move(m) : nullptr;
  }();
  if (!memory) return 0;
  auto all = memory->Slice(0, kMemory, "fuzz");
  if (!all.ok()) return 0;
  std::memset(all->data(), 0, kMemory);
  if (size == 0) return 0;
  const int calls = 1 + data[0] % 32;
  ++data;
  --size;
  const size_t call_bytes = std::min<size_t>(size, calls * 40);
  const uint8_t* call_data = data;
  size_t call_size = call_bytes;
  data += call_bytes;
  size -= call_bytes;
  std::memcpy(all->data(), data, std::min(size, kImage));

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
