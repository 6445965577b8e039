// Long-mode boot state for function guests: the host builds everything a
// 64-bit guest needs before its first instruction (TinyKVM's model), so the
// guest starts directly at its ELF entry point in ring 0 with paging on.
//
// Builds, at the fixed addresses of include/thaw/abi.h:
//   - identity-mapped 4-level page tables over all of guest memory (2 MiB
//     pages, with 4 KiB pages in the first 2 MiB so page 0 is not present);
//   - a GDT with a 64-bit code segment, a data segment and a TSS whose IST1
//     points at a host-owned exception stack (so a guest with a broken stack
//     still reports its exception instead of triple-faulting);
//   - an IDT whose 256 gates enter stubs that `out` their vector to
//     THAW_EXCEPTION_PORT, turning every exception into a host exit.
#ifndef THAW_LIB_X86_BOOT_STATE_H_
#define THAW_LIB_X86_BOOT_STATE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "base/vcpu_state.h"
#include "lib/guest_memory.h"

namespace thaw::x86 {

inline constexpr uint64_t kCr0Pe = 1ull << 0;
inline constexpr uint64_t kCr0Mp = 1ull << 1;
inline constexpr uint64_t kCr0Et = 1ull << 4;
inline constexpr uint64_t kCr0Ne = 1ull << 5;
inline constexpr uint64_t kCr0Wp = 1ull << 16;
inline constexpr uint64_t kCr0Pg = 1ull << 31;
inline constexpr uint64_t kCr4Pae = 1ull << 5;
inline constexpr uint64_t kCr4Osfxsr = 1ull << 9;
inline constexpr uint64_t kCr4Osxmmexcpt = 1ull << 10;
inline constexpr uint64_t kEferSce = 1ull << 0;
inline constexpr uint64_t kEferLme = 1ull << 8;
inline constexpr uint64_t kEferLma = 1ull << 10;
inline constexpr uint64_t kEferNxe = 1ull << 11;

inline constexpr uint16_t kCodeSelector = 0x08;
inline constexpr uint16_t kDataSelector = 0x10;
inline constexpr uint16_t kTssSelector = 0x18;
inline constexpr uint64_t kTssAddress = 0x1080;
inline constexpr uint64_t kMaxMemorySize = 64ull << 30;

// Writes page tables, GDT, TSS, IDT and exception stubs into `memory` and
// returns the vCPU state for entering the guest. The caller sets rip, rsp
// and rdi. `memory` must be a multiple of 2 MiB and at most kMaxMemorySize.
// With `user_pages`, memory above the first 2 MiB is also mapped for ring 3
// (lib/x86/user_mode.h); the first 2 MiB never is. `guard_page`, when not
// 0, is a page-aligned address above 2 MiB left not present (a stack's
// guard page: running into it is a clean #PF, not a write into whatever
// lies below).
absl::StatusOr<VcpuState> BuildLongModeBootState(GuestMemory& memory,
                                                 bool user_pages = false,
                                                 uint64_t guard_page = 0);

// Decodes the 8-byte GDT descriptor for `selector` from guest memory into a
// Segment (used by backends that do not report segment attributes).
Segment DecodeSegment(const GuestMemory& memory, uint64_t gdt_base,
                      uint16_t gdt_limit, uint16_t selector);

// OK if `state` is a long-mode state that both backends can load: PE and
// PG, PAE, LME and LMA set, and no CR4 or EFER feature bit beyond those every
// thaw backend offers (a snapshot using one would misbehave later on a
// backend without it). FailedPrecondition naming the first bit otherwise.
absl::Status CheckPortableState(const VcpuState& state);

}  // namespace thaw::x86

#endif  // THAW_LIB_X86_BOOT_STATE_H_
