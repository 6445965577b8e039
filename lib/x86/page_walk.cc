#include "lib/x86/page_walk.h"

#include "absl/strings/str_format.h"
#include "lib/x86/boot_state.h"

namespace thaw::x86 {

absl::StatusOr<uint64_t> TranslateForSupervisor(const GuestMemory& memory,
                                                const VcpuState& state,
                                                uint64_t address, bool write) {
  auto refuse = [&](absl::string_view why) {
    return absl::FailedPreconditionError(
        absl::StrFormat("guest address 0x%x: %s", address, why));
  };
  // Bits 63..47 must all equal bit 47 (4-level paging).
  const uint64_t high = address >> 47;
  if (high != 0 && high != (1ull << 17) - 1) {
    return refuse("not canonical");
  }
  const bool nx_allowed = (state.efer & kEferNxe) != 0;
  const bool write_protect = (state.cr0 & kCr0Wp) != 0;
  static const char* const kLevels[] = {"PML4", "PDPT", "page directory",
                                        "page table"};
  auto in_memory = [&](uint64_t physical) -> absl::StatusOr<uint64_t> {
    if (physical >= memory.size()) {
      return refuse(
          absl::StrFormat("it maps to 0x%x, outside guest memory", physical));
    }
    return physical;
  };
  uint64_t table = state.cr3 & kPageAddressBits;
  for (int level = 0; level < 4; ++level) {
    const int shift = 39 - 9 * level;
    const uint64_t slot = table + 8 * ((address >> shift) & 511);
    uint64_t entry = 0;
    if (!memory
             .Read(slot,
                   absl::Span<uint8_t>(reinterpret_cast<uint8_t*>(&entry),
                                       sizeof(entry)),
                   "page table entry")
             .ok()) {
      return refuse(absl::StrFormat("its %s at 0x%x lies outside guest memory",
                                    kLevels[level], table));
    }
    auto bad_entry = [&](const char* what) {
      return refuse(absl::StrFormat("its %s entry 0x%x (at 0x%x) %s",
                                    kLevels[level], entry, slot, what));
    };
    if ((entry & kPagePresent) == 0) return bad_entry("is not present");
    if ((entry & kPageNoExecute) != 0 && !nx_allowed) {
      return bad_entry("sets NX, reserved without EFER.NXE");
    }
    if (write && write_protect && (entry & kPageWritable) == 0) {
      return bad_entry("is read-only");
    }
    const bool large = (entry & kPageLarge) != 0 && level > 0 && level < 3;
    if ((entry & kPageLarge) != 0 && level == 0) {
      return bad_entry("sets the page-size bit, reserved in a PML4 entry");
    }
    if (large && level == 1) return bad_entry("maps a 1 GiB page");
    if (large) {
      // A 2 MiB page: bits 20..13 of the entry are reserved (12 is PAT).
      if ((entry & 0x1FE000ull) != 0) return bad_entry("has reserved bits set");
      return in_memory((entry & kPageAddressBits & ~0x1FFFFFull) |
                       (address & 0x1FFFFF));
    }
    table = entry & kPageAddressBits;
  }
  return in_memory(table | (address & 0xFFF));
}

}  // namespace thaw::x86
