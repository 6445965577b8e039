// Translating a guest-virtual address through the guest's own 4-level page
// tables, as the CPU does for a ring-0 data access in long mode. The
// emulated backend uses it to check, before it hands Unicorn a vCPU state,
// that every access Unicorn makes while loading that state would succeed:
// Unicorn reads some of guest memory (a segment's GDT descriptor) outside a
// run, where a page fault has nowhere to go and takes the process down.
#ifndef THAW_LIB_X86_PAGE_WALK_H_
#define THAW_LIB_X86_PAGE_WALK_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "base/vcpu_state.h"
#include "lib/guest_memory.h"

namespace thaw::x86 {

// Bits of a 4-level page-table entry.
inline constexpr uint64_t kPagePresent = 1ull << 0;
inline constexpr uint64_t kPageWritable = 1ull << 1;
inline constexpr uint64_t kPageUser = 1ull << 2;
inline constexpr uint64_t kPageAccessed = 1ull << 5;
inline constexpr uint64_t kPageDirty = 1ull << 6;
inline constexpr uint64_t kPageLarge = 1ull << 7;
inline constexpr uint64_t kPageNoExecute = 1ull << 63;
inline constexpr uint64_t kPageAddressBits = 0x000FFFFFFFFFF000ull;

// The guest-physical address of `address` for a supervisor read (or write,
// when `write`) under the paging state of `state` (CR0.WP, CR3, EFER.NXE).
// FailedPrecondition naming the address and what stops the walk: a
// non-canonical address, an entry not present or with reserved bits set, a
// read-only page for a write, a table or page outside guest memory. Only
// what a thaw state can hold is walked (4-level paging, 4 KiB and 2 MiB
// pages); a 1 GiB page is refused, since not every backend's CPU model has
// them.
absl::StatusOr<uint64_t> TranslateForSupervisor(const GuestMemory& memory,
                                                const VcpuState& state,
                                                uint64_t address, bool write);

}  // namespace thaw::x86

#endif  // THAW_LIB_X86_PAGE_WALK_H_
