#include "lib/x86/user_mode.h"

#include <cstring>

#include "lib/x86/boot_state.h"
#include "thaw/abi.h"

namespace thaw::x86 {
namespace {

// Flat DPL-3 descriptors with the accessed bit set.
constexpr uint64_t kUserCode32Descriptor = 0x00CFFB000000FFFFull;  // D=1
constexpr uint64_t kUserDataDescriptor = 0x00CFF3000000FFFFull;
constexpr uint64_t kUserCodeDescriptor = 0x00AFFB000000FFFFull;  // L=1
constexpr uint64_t kUserRflags = 0x202;                          // IF, bit 1
constexpr uint32_t kMsrStar = 0xC0000081;
constexpr uint32_t kMsrLstar = 0xC0000082;
constexpr uint32_t kMsrSfmask = 0xC0000084;

template <typename T>
void Store(uint8_t* where, T value) {
  std::memcpy(where, &value, sizeof(value));
}

constexpr uint64_t kFrame = kUserEntryPage + 0xF00;

Segment Flat(uint16_t selector, uint8_t type, bool code) {
  Segment s;
  s.limit = 0xFFFFFFFF;
  s.selector = selector;
  s.type = type;
  s.present = s.s = s.g = true;
  s.dpl = 3;
  s.l = code;
  s.db = !code;
  return s;
}

// SYSCALL enters kernel CS 0x08 (SS 0x10) at the KVM stub; SYSRET returns
// to the user CS and SS derived from STAR[63:48] (see kUserCode32Selector).
// SFMASK clears TF, IF, DF, IOPL, NT and AC on entry, as Linux does. Set on
// every entry and resume: the emulated backend does not keep EFER.SCE, so a
// snapshot taken there lacks it.
void SetSyscallEntry(VcpuState& state) {
  state.efer |= kEferSce;
  for (size_t i = 0; i < kPortableMsrCount; ++i) {
    const uint32_t index = kPortableMsrs[i].index;
    if (index == kMsrStar) {
      state.msrs[i] = (uint64_t{kUserCode32Selector & ~3} << 48) |
                      (uint64_t{kCodeSelector} << 32);
    } else if (index == kMsrLstar) {
      state.msrs[i] = kSyscallEntry;
    } else if (index == kMsrSfmask) {
      state.msrs[i] = 0x47700;
    }
  }
}

}  // namespace

Segment UserCodeSegment() { return Flat(kUserCodeSelector, 0xB, true); }
Segment UserDataSegment() { return Flat(kUserDataSelector, 0x3, false); }

VcpuState AsUserState(const VcpuState& state) {
  // After KVM completed the stub's `out`, RIP is on its `sysretq`.
  if (state.rip != kSyscallEntry + 2 || (state.cs.selector & 3) != 0) {
    return state;
  }
  VcpuState user = state;
  user.rip = state.rcx;
  user.rflags = (state.r11 & 0x3C7FD7) | 0x2;  // what SYSRET loads
  user.cs = UserCodeSegment();
  user.ss = UserDataSegment();
  return user;
}

absl::StatusOr<VcpuState> ResumeThroughEntryPage(GuestMemory& memory,
                                                 const VcpuState& user) {
  auto frame_bytes = memory.Slice(kFrame, 5 * 8, "user entry frame");
  if (!frame_bytes.ok()) return frame_bytes.status();
  const uint64_t frame[5] = {user.rip, kUserCodeSelector, user.rflags, user.rsp,
                             kUserDataSelector};
  std::memcpy(frame_bytes->data(), frame, sizeof(frame));
  VcpuState state = user;
  SetSyscallEntry(state);
  state.rip = kUserEntryPage;
  state.rsp = kFrame;
  state.rflags = 0x2;
  Segment code = user.cs;
  code.selector = kCodeSelector;
  code.dpl = 0;
  code.type = 0xB;
  code.l = true;
  code.db = false;
  Segment data = user.ss;
  data.selector = kDataSelector;
  data.dpl = 0;
  data.type = 0x3;
  data.l = false;
  data.db = true;
  state.cs = code;
  state.ss = state.ds = state.es = data;
  state.ds.base = state.es.base = 0;
  return state;
}

absl::StatusOr<VcpuState> BuildUserModeBootState(GuestMemory& memory,
                                                 uint64_t entry,
                                                 uint64_t user_rsp) {
  auto state = BuildLongModeBootState(memory, /*user_pages=*/true);
  if (!state.ok()) return state.status();
  auto gdt = memory.Slice(THAW_GDT_ADDR, 0x40, "GDT");
  if (!gdt.ok()) return gdt.status();
  Store<uint64_t>(gdt->data() + (kUserCode32Selector & ~3),
                  kUserCode32Descriptor);
  Store<uint64_t>(gdt->data() + (kUserDataSelector & ~3), kUserDataDescriptor);
  Store<uint64_t>(gdt->data() + (kUserCodeSelector & ~3), kUserCodeDescriptor);
  state->gdt.limit = 0x40 - 1;

  // iretq at the start of the page; its frame near the end, on a stack that
  // is the host's. RIP, CS, RFLAGS, RSP, SS.
  auto page = memory.Slice(kUserEntryPage, 0x1000, "user entry page");
  if (!page.ok()) return page.status();
  std::memset(page->data(), 0xCC, page->size());
  const uint8_t iretq[] = {0x48, 0xCF};
  std::memcpy(page->data(), iretq, sizeof(iretq));
  // The syscall entry: out kSyscallPort, eax; sysretq.
  const uint8_t entry_stub[] = {0xE7, kSyscallPort, 0x48, 0x0F, 0x07};
  std::memcpy(page->data() + (kSyscallEntry - kUserEntryPage), entry_stub,
              sizeof(entry_stub));
  const uint64_t frame[5] = {entry, kUserCodeSelector, kUserRflags, user_rsp,
                             kUserDataSelector};
  std::memcpy(memory.host_base() + kFrame, frame, sizeof(frame));
  SetSyscallEntry(*state);
  state->rip = kUserEntryPage;
  state->rsp = kFrame;
  state->rflags = 0x2;
  return state;
}

}  // namespace thaw::x86
