// PageRuns: the dirty bitmap a reset reads, and the merge of the guest's
// and the host's writes.
#include "base/page_runs.h"

#include <vector>

#include "gtest/gtest.h"

namespace thaw {
namespace {

using Runs = PageRuns;

TEST(PageRunsTest, BitmapBecomesRunsAcrossWordBoundaries) {
  std::vector<uint64_t> bitmap(4, 0);
  bitmap[0] = 0b1110;              // pages 1-3
  bitmap[0] |= uint64_t{1} << 63;  // page 63 ...
  bitmap[1] = 0b11;                // ... runs on into 64, 65
  bitmap[3] = uint64_t{1} << 10;   // page 202
  Runs runs;
  AppendRunsFromBitmap(bitmap.data(), 0, bitmap.size(), 1000, runs);
  EXPECT_EQ(runs, (Runs{{1, 4}, {63, 66}, {202, 203}}));
  EXPECT_EQ(CountPages(runs), 7u);
}

TEST(PageRunsTest, BitmapStopsAtThePageLimitAndReadsOnlyItsWords) {
  std::vector<uint64_t> bitmap(2, ~uint64_t{0});
  Runs runs;
  AppendRunsFromBitmap(bitmap.data(), 1, 2, 70, runs);
  EXPECT_EQ(runs, (Runs{{64, 70}}));
}

TEST(PageRunsTest, NormalizeSortsJoinsAndDropsEmptyRuns) {
  Runs runs = {{10, 12}, {1, 2}, {12, 15}, {5, 5}, {2, 3}, {11, 13}, {20, 21}};
  NormalizeRuns(runs);
  EXPECT_EQ(runs, (Runs{{1, 3}, {10, 15}, {20, 21}}));
}

}  // namespace
}  // namespace thaw
