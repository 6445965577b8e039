// PageRuns: sets of guest pages as sorted runs [first, end) of page indices,
// and the two ways thaw builds them: from a dirty bitmap (one bit per page,
// as KVM's dirty log and the emulator's write hook keep it) and by merging
// runs from several sources (the guest's writes, the host's own).
#ifndef THAW_BASE_PAGE_RUNS_H_
#define THAW_BASE_PAGE_RUNS_H_

#include <cstdint>
#include <utility>
#include <vector>

namespace thaw {

// Runs of pages [first, end), as page indices from a mapping's start.
using PageRuns = std::vector<std::pair<uint64_t, uint64_t>>;

// Appends the pages set in words [first_word, end_word) of `bitmap` (page p
// is bit p % 64 of word p / 64, least significant first) below `page_limit`
// to `runs`, in order. Zero words cost one test each, so a sparse bitmap is
// read in one quick pass.
void AppendRunsFromBitmap(const uint64_t* bitmap, uint64_t first_word,
                          uint64_t end_word, uint64_t page_limit,
                          PageRuns& runs);

// Sorts `runs` and joins runs that overlap or touch.
void NormalizeRuns(PageRuns& runs);

// The number of pages in `runs` (normalized or not; overlaps count twice).
uint64_t CountPages(const PageRuns& runs);

}  // namespace thaw

#endif  // THAW_BASE_PAGE_RUNS_H_
