// MapGuestMemory: the host mapping that backs a Vm's guest memory, in 4 KiB
// pages or in 2 MiB pages. Huge pages cut the page-table entries (and so
// the faults and the entry updates, dear under shadow paging) 512-fold:
//  - reserved huge pages (vm.nr_hugepages, hugetlbfs) when enough are free:
//    a private memfd whose pages are all reserved at mapping time, so the
//    guest can never meet a missing page later (SIGBUS);
//  - transparent huge pages otherwise, where the kernel offers them
//    (MADV_HUGEPAGE on a 2 MiB-aligned mapping; best effort per 2 MiB).
// With neither, asking for huge pages is an error that says what to set.
#ifndef THAW_SNAPSHOT_GUEST_MAPPING_H_
#define THAW_SNAPSHOT_GUEST_MAPPING_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace thaw::snapshot {

enum class PageBacking {
  kSmall,            // 4 KiB pages
  kReservedHuge,     // 2 MiB pages from hugetlbfs (vm.nr_hugepages)
  kTransparentHuge,  // 2 MiB transparent huge pages where the kernel can
};

inline constexpr uint64_t kHugePage = 2ull << 20;

struct GuestMapping {
  uint8_t* base = nullptr;  // owned: munmap(base, size) frees it
  PageBacking backing = PageBacking::kSmall;
};

// Maps `size` bytes (a multiple of 2 MiB when `huge_pages`) of zeroed,
// private guest memory; `what` names it in errors.
absl::StatusOr<GuestMapping> MapGuestMemory(uint64_t size, bool huge_pages,
                                            absl::string_view what);

// "4 KiB", "2 MiB reserved (hugetlbfs)", "2 MiB transparent".
absl::string_view PageBackingName(PageBacking backing);

// Reserved 2 MiB huge pages on this host that no mapping holds or has
// been promised yet (/proc/meminfo: HugePages_Free - HugePages_Rsvd).
uint64_t FreeReservedHugePages();

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_GUEST_MAPPING_H_
