// VcpuState: the whole architectural state of one x86-64 vCPU, in a form that
// does not depend on the backend, so a state read from one backend can be
// written to the other (and, later, stored in a snapshot).
#ifndef THAW_BASE_VCPU_STATE_H_
#define THAW_BASE_VCPU_STATE_H_

#include <array>
#include <cstddef>
#include <cstdint>

namespace thaw {

struct Segment {
  uint64_t base = 0;
  uint32_t limit = 0;
  uint16_t selector = 0;
  uint8_t type = 0;  // descriptor type field (4 bits)
  bool present = false;
  uint8_t dpl = 0;
  bool db = false;  // default operand size
  bool s = false;   // code/data (true) or system (false)
  bool l = false;   // 64-bit code
  bool g = false;   // limit granularity 4 KiB
  bool avl = false;
  bool unusable = false;
};

struct DescriptorTable {
  uint64_t base = 0;
  uint16_t limit = 0;
};

struct FpuState {
  uint16_t fcw = 0x37F;  // the x87 reset value; Unicorn starts at 0
  uint16_t fsw = 0;
  uint8_t ftw = 0;  // abridged tag word, as in FXSAVE
  uint32_t mxcsr = 0x1F80;
  std::array<std::array<uint8_t, 16>, 8> st{};  // 80-bit values, padded
  std::array<std::array<uint8_t, 16>, 16> xmm{};
};

// The model-specific registers every backend saves and restores (EFER and
// the FS/GS bases live in their own fields), with their values at boot.
struct PortableMsr {
  uint32_t index;
  uint64_t boot_value;
  const char* name;
};
inline constexpr PortableMsr kPortableMsrs[] = {
    {0xC0000102, 0, "KERNEL_GS_BASE"},
    {0x00000174, 0, "SYSENTER_CS"},
    {0x00000175, 0, "SYSENTER_ESP"},
    {0x00000176, 0, "SYSENTER_EIP"},
    {0xC0000081, 0, "STAR"},
    {0xC0000082, 0, "LSTAR"},
    {0xC0000083, 0, "CSTAR"},
    {0xC0000084, 0, "SFMASK"},
    {0x00000277, 0x0007040600070406ull,
     "PAT"},  // the architectural reset value
};
inline constexpr size_t kPortableMsrCount =
    sizeof(kPortableMsrs) / sizeof(kPortableMsrs[0]);

constexpr std::array<uint64_t, kPortableMsrCount> BootMsrValues() {
  std::array<uint64_t, kPortableMsrCount> values{};
  for (size_t i = 0; i < kPortableMsrCount; ++i) {
    values[i] = kPortableMsrs[i].boot_value;
  }
  return values;
}

struct VcpuState {
  uint64_t rax = 0, rbx = 0, rcx = 0, rdx = 0, rsi = 0, rdi = 0, rsp = 0,
           rbp = 0;
  uint64_t r8 = 0, r9 = 0, r10 = 0, r11 = 0, r12 = 0, r13 = 0, r14 = 0, r15 = 0;
  uint64_t rip = 0;
  uint64_t rflags = 0x2;  // bit 1 is reserved and always set

  Segment cs, ds, es, fs, gs, ss, tr, ldt;
  DescriptorTable gdt, idt;
  uint64_t cr0 = 0, cr2 = 0, cr3 = 0, cr4 = 0, efer = 0;
  // Values of kPortableMsrs, in that order.
  std::array<uint64_t, kPortableMsrCount> msrs = BootMsrValues();

  FpuState fpu;
};

}  // namespace thaw

#endif  // THAW_BASE_VCPU_STATE_H_
