// PageMap: which pages of a mapping are present, and which of them are the
// process's own private copies, from /proc/self/pagemap. It is how thaw finds
// what a Vm changed without tracking writes as they happen:
//  - in anonymous guest memory a page never touched reads as zeros;
//  - in a copy-on-write mapping of a shared base, a page the guest (or the
//    host) wrote is an anonymous page; every other page is still the base's.
// Both hold for KVM (guest writes go through the same host page tables) and
// for the emulator, and only this mapping is looked at, so Vms in one
// process never disturb each other (unlike clear_refs soft-dirty bits).
#ifndef THAW_BASE_PAGE_MAP_H_
#define THAW_BASE_PAGE_MAP_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "base/page_runs.h"

namespace thaw {

class PageMap {
 public:
  // The runs of pages in [base, base + size) that are private copies
  // (touched and anonymous), i.e. what a copy-on-write mapping changed.
  // Uses the PAGEMAP_SCAN ioctl (Linux 6.7+), which reports only matching
  // ranges and skips untouched page tables, and reads every entry of
  // /proc/self/pagemap where the kernel lacks it.
  static absl::StatusOr<PageRuns> PrivateRuns(const void* base, uint64_t size);

  // Reads the entries of [base, base + size); both page-aligned.
  static absl::StatusOr<PageMap> Read(const void* base, uint64_t size);
  // Opens /proc/self/pagemap now (it is opened once per process and kept),
  // for a process about to lose the right to open files.
  static absl::Status OpenOnce();

  uint64_t pages() const { return entries_.size(); }
  // Present in memory or swapped out: the page has been touched.
  bool touched(uint64_t page) const {
    return (entries_[page] & (kPresent | kSwapped)) != 0;
  }
  // Touched and anonymous (in a file mapping: a private, written copy).
  bool private_copy(uint64_t page) const {
    return touched(page) && (entries_[page] & kFileOrShared) == 0;
  }

 private:
  static constexpr uint64_t kPresent = 1ull << 63;
  static constexpr uint64_t kSwapped = 1ull << 62;
  static constexpr uint64_t kFileOrShared = 1ull << 61;
  std::vector<uint64_t> entries_;
};

}  // namespace thaw

#endif  // THAW_BASE_PAGE_MAP_H_
