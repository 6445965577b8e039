#include "lib/backend/backend.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "lib/x86/boot_state.h"
#include "thaw/abi.h"

#include "lib/emu/unicorn_backend.h"
#include "lib/kvm/kvm_backend.h"

namespace thaw::backend {
namespace {

class StopOnFirstHypercall final : public HypercallHandler {
 public:
  HypercallResult Handle(const Hypercall& call) override {
    number = call.number;
    return {0, true};
  }
  uint64_t number = 0;
};

absl::Status ProbeKvm() {
  auto memory = GuestMemory::Create(4ull << 20);
  if (!memory.ok()) return memory.status();
  auto kvm = kvm::CreateKvmBackend(**memory);
  if (!kvm.ok()) return kvm.status();
  auto state = x86::BuildLongModeBootState(**memory);
  if (!state.ok()) return state.status();
  // pxor %xmm0,%xmm0; mov $2,%eax; mov $THAW_HYPERCALL_PORT,%dx;
  // out %eax,%dx; ret — long mode, SSE and a hypercall exit.
  const uint8_t code[] = {0x66, 0x0F, 0xEF, 0xC0, 0xB8, 0x02, 0x00, 0x00,
                          0x00, 0x66, 0xBA, THAW_HYPERCALL_PORT & 0xFF,
                          THAW_HYPERCALL_PORT >> 8, 0xEF, 0xC3};
  if (absl::Status s = (*memory)->Write(THAW_IMAGE_BASE, code, "KVM probe");
      !s.ok()) {
    return s;
  }
  state->rip = THAW_IMAGE_BASE;
  state->rsp = (*memory)->size();
  if (absl::Status s = (*kvm)->SetState(*state); !s.ok()) return s;
  StopOnFirstHypercall handler;
  auto exit = (*kvm)->Run(handler);
  if (!exit.ok()) return exit.status();
  if (exit->reason != Exit::Reason::kStopped || handler.number != 2) {
    return absl::UnavailableError(absl::StrCat(
        "KVM backend unavailable: /dev/kvm opens but cannot run a long-mode "
        "guest with SSE (probe: ",
        exit->detail.empty() ? absl::StrCat("exit reason ", static_cast<int>(exit->reason))
                             : exit->detail,
        ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status KvmRunsGuests() {
  static const absl::Status* const result = new absl::Status(ProbeKvm());
  return *result;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(BackendKind kind,
                                                       GuestMemory& memory) {
  switch (kind) {
    case BackendKind::kKvm:
      if (absl::Status usable = KvmRunsGuests(); !usable.ok()) return usable;
      return kvm::CreateKvmBackend(memory);
    case BackendKind::kEmulated:
      return emu::CreateUnicornBackend(memory);
    case BackendKind::kAuto: {
      if (KvmRunsGuests().ok()) return kvm::CreateKvmBackend(memory);
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
