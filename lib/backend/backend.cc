#include "lib/backend/backend.h"

#include "lib/emu/unicorn_backend.h"
#include "lib/kvm/kvm_backend.h"

namespace thaw::backend {

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(BackendKind kind,
                                                       GuestMemory& memory) {
  switch (kind) {
    case BackendKind::kKvm:
      return kvm::CreateKvmBackend(memory);
    case BackendKind::kEmulated:
      return emu::CreateUnicornBackend(memory);
    case BackendKind::kAuto: {
      auto kvm = kvm::CreateKvmBackend(memory);
      if (kvm.ok() || !absl::IsUnavailable(kvm.status())) return kvm;
      return emu::CreateUnicornBackend(memory);
    }
  }
  return absl::InvalidArgumentError("unknown backend kind");
}

bool ExceptionHasErrorCode(uint32_t vector) {
  switch (vector) {
    case 8:   // #DF
    case 10:  // #TS
    case 11:  // #NP
    case 12:  // #SS
    case 13:  // #GP
    case 14:  // #PF
    case 17:  // #AC
    case 21:  // #CP
    case 29:  // #VC
    case 30:  // #SX
      return true;
    default:
      return false;
  }
}

const char* ExceptionName(uint32_t vector) {
  static const char* const kNames[32] = {
      "#DE divide error", "#DB debug", "NMI", "#BP breakpoint",
      "#OF overflow", "#BR bound range", "#UD invalid opcode",
      "#NM device not available", "#DF double fault",
      "coprocessor segment overrun", "#TS invalid TSS",
      "#NP segment not present", "#SS stack fault",
      "#GP general protection", "#PF page fault", "reserved",
      "#MF x87 floating-point", "#AC alignment check", "#MC machine check",
      "#XM SIMD floating-point", "#VE virtualization", "#CP control protection",
      "reserved", "reserved", "reserved", "reserved", "reserved", "reserved",
      "#HV hypervisor injection", "#VC VMM communication", "#SX security",
      "reserved"};
  return vector < 32 ? kNames[vector] : "interrupt";
}

}  // namespace thaw::backend
