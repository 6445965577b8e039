#include "lib/x86/boot_state.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "lib/x86/page_walk.h"
#include "thaw/abi.h"

namespace thaw::x86 {
namespace {

// Every entry is built with its accessed bit (and every leaf with its dirty
// bit) already set, so the CPU's page walker never writes the tables: their
// bytes stay the snapshot's, and a reset never has to look for them.
constexpr uint64_t kTable = kPagePresent | kPageWritable | kPageAccessed;
constexpr uint64_t kLeaf = kTable | kPageDirty;
constexpr uint64_t k2MiB = 2ull << 20;
constexpr uint64_t k1GiB = 1ull << 30;

// Flat descriptors with the accessed bit already set, so the CPU never needs
// to write the GDT.
constexpr uint64_t kCodeDescriptor = 0x00AF9B000000FFFFull;  // L=1, type 0xB
constexpr uint64_t kDataDescriptor = 0x00CF93000000FFFFull;  // D/B=1, type 3
constexpr uint32_t kTssLimit = 0x67;
constexpr uint8_t kTssTypeBusy = 0xB;  // KVM requires a busy 64-bit TSS in TR

Segment FlatCode() {
  Segment s;
  s.limit = 0xFFFFFFFF;
  s.selector = kCodeSelector;
  s.type = 0xB;
  s.present = s.s = s.l = s.g = true;
  return s;
}

Segment FlatData() {
  Segment s;
  s.limit = 0xFFFFFFFF;
  s.selector = kDataSelector;
  s.type = 0x3;
  s.present = s.s = s.db = s.g = true;
  return s;
}

template <typename T>
void Store(uint8_t* where, T value) {
  std::memcpy(where, &value, sizeof(value));
}

// `user`: everything above the first 2 MiB is also reachable from ring 3;
// the first 2 MiB (page tables, descriptor tables, stubs) never is.
// `guard_page` (page-aligned, or 0 for none): left not present, with the
// rest of its 2 MiB mapped by one more 4 KiB page table after the PDs.
absl::Status WritePageTables(GuestMemory& memory, bool user,
                             uint64_t guard_page) {
  const uint64_t u = user ? kPageUser : 0;
  const uint64_t pd_count = (memory.size() + k1GiB - 1) / k1GiB;
  const uint64_t pml4 = THAW_PAGE_TABLES_ADDR;
  const uint64_t pdpt = pml4 + 0x1000;
  const uint64_t pt0 = pdpt + 0x1000;
  const uint64_t pd0 = pt0 + 0x1000;
  auto tables = memory.Slice(pml4, (3 + pd_count) * 0x1000, "page tables");
  if (!tables.ok()) return tables.status();
  if (pd0 + pd_count * 0x1000 > THAW_IMAGE_BASE) {
    return absl::InvalidArgumentError("page tables overlap the guest image");
  }
  std::memset(tables->data(), 0, tables->size());
  uint8_t* base = memory.host_base();
  Store<uint64_t>(base + pml4, pdpt | kTable | u);
  for (uint64_t i = 0; i < pd_count; ++i) {
    Store<uint64_t>(base + pdpt + 8 * i, (pd0 + 0x1000 * i) | kTable | u);
  }
  // The first 2 MiB in 4 KiB supervisor pages; entry 0 stays not-present.
  Store<uint64_t>(base + pd0, pt0 | kTable | u);
  for (uint64_t i = 1; i < 512; ++i) {
    Store<uint64_t>(base + pt0 + 8 * i, (i * 0x1000) | kLeaf);
  }
  for (uint64_t address = k2MiB; address < memory.size(); address += k2MiB) {
    uint64_t entry =
        address / k2MiB;  // index over all PDs, which are contiguous
    Store<uint64_t>(base + pd0 + 8 * entry, address | kLeaf | kPageLarge | u);
  }
  if (guard_page == 0) return absl::OkStatus();
  if (guard_page % 0x1000 != 0 || guard_page < k2MiB ||
      guard_page >= memory.size()) {
    return absl::InternalError(absl::StrFormat(
        "guard page 0x%x is not a page of guest memory above 2 MiB",
        guard_page));
  }
  const uint64_t guard_table = pd0 + pd_count * 0x1000;
  auto table = memory.Slice(guard_table, 0x1000, "guard page table");
  if (!table.ok()) return table.status();
  if (guard_table + 0x1000 > THAW_IMAGE_BASE) {
    return absl::InvalidArgumentError("page tables overlap the guest image");
  }
  const uint64_t region = guard_page & ~(k2MiB - 1);
  for (uint64_t i = 0; i < 512; ++i) {
    const uint64_t page = region + i * 0x1000;
    Store<uint64_t>(table->data() + 8 * i,
                    page == guard_page ? 0 : (page | kLeaf | u));
  }
  Store<uint64_t>(base + pd0 + 8 * (region / k2MiB), guard_table | kTable | u);
  return absl::OkStatus();
}

absl::Status WriteGdtAndTss(GuestMemory& memory) {
  auto page = memory.Slice(THAW_GDT_ADDR, 0x1000, "GDT");
  if (!page.ok()) return page.status();
  std::memset(page->data(), 0, page->size());
  uint8_t* gdt = page->data();
  Store<uint64_t>(gdt + kCodeSelector, kCodeDescriptor);
  Store<uint64_t>(gdt + kDataSelector, kDataDescriptor);
  // 16-byte system descriptor for the 64-bit TSS.
  uint64_t low = (kTssLimit & 0xFFFF) | ((kTssAddress & 0xFFFFFF) << 16) |
                 (uint64_t{kTssTypeBusy} << 40) | (1ull << 47) |
                 ((uint64_t{kTssLimit} >> 16 & 0xF) << 48) |
                 ((kTssAddress >> 24 & 0xFF) << 56);
  Store<uint64_t>(gdt + kTssSelector, low);
  Store<uint64_t>(gdt + kTssSelector + 8, kTssAddress >> 32);
  uint8_t* tss = page->data() + (kTssAddress - THAW_GDT_ADDR);
  Store<uint64_t>(tss + 0x24, THAW_EXCEPTION_STACK_TOP);  // IST1
  Store<uint16_t>(tss + 0x66, kTssLimit + 1);             // no I/O bitmap
  return absl::OkStatus();
}

absl::Status WriteIdtAndStubs(GuestMemory& memory) {
  auto idt = memory.Slice(THAW_IDT_ADDR, 0x1000, "IDT");
  auto stubs = memory.Slice(THAW_EXCEPTION_STUBS_ADDR, 0x1000, "stubs");
  if (!idt.ok()) return idt.status();
  if (!stubs.ok()) return stubs.status();
  for (uint32_t vector = 0; vector < 256; ++vector) {
    // Stub: mov eax, vector; mov dx, THAW_EXCEPTION_PORT; out dx, eax;
    //       1: hlt; jmp 1b — the host never resumes it.
    uint8_t* stub = stubs->data() + 16 * vector;
    const uint8_t code[16] = {0xB8,
                              static_cast<uint8_t>(vector),
                              0,
                              0,
                              0,
                              0x66,
                              0xBA,
                              THAW_EXCEPTION_PORT & 0xFF,
                              THAW_EXCEPTION_PORT >> 8,
                              0xEF,
                              0xF4,
                              0xEB,
                              0xFD,
                              0xCC,
                              0xCC,
                              0xCC};
    std::memcpy(stub, code, sizeof(code));
    uint64_t target = THAW_EXCEPTION_STUBS_ADDR + 16 * vector;
    uint64_t low = (target & 0xFFFF) | (uint64_t{kCodeSelector} << 16) |
                   (1ull << 32) /* IST1 */ | (0x8Eull << 40) /* P, int gate */ |
                   ((target >> 16 & 0xFFFF) << 48);
    Store<uint64_t>(idt->data() + 16 * vector, low);
    Store<uint64_t>(idt->data() + 16 * vector + 8, target >> 32);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<VcpuState> BuildLongModeBootState(GuestMemory& memory,
                                                 bool user_pages,
                                                 uint64_t guard_page) {
  if (memory.size() % k2MiB != 0 || memory.size() > kMaxMemorySize) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "guest memory of %d bytes: must be a multiple of 2 MiB, at most 64 GiB",
        memory.size()));
  }
  if (absl::Status s = WritePageTables(memory, user_pages, guard_page);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteGdtAndTss(memory); !s.ok()) return s;
  if (absl::Status s = WriteIdtAndStubs(memory); !s.ok()) return s;

  VcpuState state;
  state.cs = FlatCode();
  state.ds = state.es = state.fs = state.gs = state.ss = FlatData();
  state.tr.selector = kTssSelector;
  state.tr.base = kTssAddress;
  state.tr.limit = kTssLimit;
  state.tr.type = kTssTypeBusy;
  state.tr.present = true;
  state.ldt.type = 0x2;
  state.ldt.present = true;
  state.ldt.unusable = true;
  state.gdt = {THAW_GDT_ADDR, static_cast<uint16_t>(kTssSelector + 16 - 1)};
  state.idt = {THAW_IDT_ADDR, 256 * 16 - 1};
  state.cr0 = kCr0Pe | kCr0Mp | kCr0Et | kCr0Ne | kCr0Wp | kCr0Pg;
  state.cr3 = THAW_PAGE_TABLES_ADDR;
  state.cr4 = kCr4Pae | kCr4Osfxsr | kCr4Osxmmexcpt;
  state.efer = kEferLme | kEferLma;
  return state;
}

Segment DecodeSegment(const GuestMemory& memory, uint64_t gdt_base,
                      uint16_t gdt_limit, uint16_t selector) {
  Segment s;
  s.selector = selector;
  uint64_t index = selector & ~uint64_t{7};
  uint64_t descriptor = 0;
  if (index == 0 || index + 7 > gdt_limit ||
      !memory
           .Read(gdt_base + index,
                 absl::Span<uint8_t>(reinterpret_cast<uint8_t*>(&descriptor),
                                     sizeof(descriptor)),
                 "GDT descriptor")
           .ok()) {
    s.unusable = true;
    return s;
  }
  s.limit = (descriptor & 0xFFFF) | ((descriptor >> 48 & 0xF) << 16);
  s.base = (descriptor >> 16 & 0xFFFFFF) | ((descriptor >> 56 & 0xFF) << 24);
  s.type = descriptor >> 40 & 0xF;
  s.s = descriptor >> 44 & 1;
  s.dpl = descriptor >> 45 & 3;
  s.present = descriptor >> 47 & 1;
  s.avl = descriptor >> 52 & 1;
  s.l = descriptor >> 53 & 1;
  s.db = descriptor >> 54 & 1;
  s.g = descriptor >> 55 & 1;
  if (s.g) s.limit = (s.limit << 12) | 0xFFF;
  return s;
}

absl::Status CheckPortableState(const VcpuState& s) {
  // VME PVI TSD DE PSE PAE MCE PGE PCE OSFXSR OSXMMEXCPT.
  constexpr uint64_t kPortableCr4 = 0x7FF;
  if ((s.cr0 & (kCr0Pe | kCr0Pg)) != (kCr0Pe | kCr0Pg) ||
      (s.cr4 & kCr4Pae) == 0 ||
      (s.efer & (kEferLme | kEferLma)) != (kEferLme | kEferLma) || !s.cs.l) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "vCPU state is not 64-bit long mode (CR0 0x%x, CR4 0x%x, EFER 0x%x)",
        s.cr0, s.cr4, s.efer));
  }
  if (uint64_t extra = s.cr4 & ~kPortableCr4; extra != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "vCPU state uses CR4 bit %d, a CPU feature not every thaw backend "
        "offers",
        __builtin_ctzll(extra)));
  }
  if (uint64_t extra = s.efer & ~(kEferSce | kEferLme | kEferLma | kEferNxe);
      extra != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "vCPU state uses EFER bit %d, a CPU feature not every thaw backend "
        "offers",
        __builtin_ctzll(extra)));
  }
  if ((s.fpu.mxcsr & 0xFFFF0000u) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "vCPU state has reserved MXCSR bits set (0x%x)", s.fpu.mxcsr));
  }
  return absl::OkStatus();
}

}  // namespace thaw::x86
