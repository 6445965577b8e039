// Entering ring 3: the boot state of a Linux program guest. On top of the
// long-mode state of lib/x86/boot_state.h (host-owned tables and stubs in
// the first 2 MiB, which ring 3 can never touch), it adds user code and
// data segments (laid out as SYSRET expects them) and a host-owned `iretq`
// stub whose frame enters the program at its entry point in ring 3: both
// backends get there the way a kernel does (Unicorn keeps CPL 0 when CS is
// written directly; doc/platform-facts.md).
#ifndef THAW_LIB_X86_USER_MODE_H_
#define THAW_LIB_X86_USER_MODE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "base/vcpu_state.h"
#include "lib/guest_memory.h"

namespace thaw::x86 {

// GDT slots after the TSS (0x18, 16 bytes): SYSRET loads CS from
// STAR[63:48] + 16 and SS from STAR[63:48] + 8, so 32-bit user code, user
// data and 64-bit user code follow in that order.
inline constexpr uint16_t kUserCode32Selector = 0x28 | 3;
inline constexpr uint16_t kUserDataSelector = 0x30 | 3;
inline constexpr uint16_t kUserCodeSelector = 0x38 | 3;
// The host-owned page holding the ring-3 entry stub and its frame.
inline constexpr uint64_t kUserEntryPage = 0x5000;
// On KVM a program's `syscall` enters a host-owned ring-0 stub (LSTAR)
// that writes the syscall number to this port (`out imm8, eax`: no register
// but RAX is touched) and, when the host resumes it with RAX set, returns
// with `sysretq`. The emulated backend hooks the instruction instead.
inline constexpr uint16_t kSyscallPort = 0x7C;
inline constexpr uint64_t kSyscallEntry = kUserEntryPage + 0x10;
// Memory below this address is the host's; programs live above it.
inline constexpr uint64_t kUserMemoryStart = 2ull << 20;

// Flat 64-bit ring-3 code and data segments (kUserCodeSelector,
// kUserDataSelector) as a vCPU state holds them.
Segment UserCodeSegment();
Segment UserDataSegment();

// A program's state as it would be in ring 3: a vCPU parked in the KVM
// syscall stub (after its `out`, before its `sysretq`) becomes the state
// the `sysretq` would give (RIP = RCX, RFLAGS = R11, user CS and SS). Other
// states are returned as they are. Snapshots hold this form, so they
// restore on either backend.
VcpuState AsUserState(const VcpuState& state);

// The state that resumes `user` (a ring-3 state) through the entry page's
// `iretq`, as BuildUserModeBootState enters a program: writes the frame
// into `memory` and returns a ring-0 state at the stub with every general
// register of `user`. Both backends resume a restored program this way
// (Unicorn keeps CPL 0 when a ring-3 CS is written directly).
absl::StatusOr<VcpuState> ResumeThroughEntryPage(GuestMemory& memory,
                                                 const VcpuState& user);

// Builds everything and returns the vCPU state that, when run, enters the
// program at `entry` with RSP = `user_rsp` in ring 3 (all other registers
// zero, as the ABI expects of RDX at least).
absl::StatusOr<VcpuState> BuildUserModeBootState(GuestMemory& memory,
                                                 uint64_t entry,
                                                 uint64_t user_rsp);

}  // namespace thaw::x86

#endif  // THAW_LIB_X86_USER_MODE_H_
