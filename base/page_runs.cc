#include "base/page_runs.h"

#include <algorithm>

namespace thaw {

void AppendRunsFromBitmap(const uint64_t* bitmap, uint64_t first_word,
                          uint64_t end_word, uint64_t page_limit,
                          PageRuns& runs) {
  for (uint64_t w = first_word; w < end_word; ++w) {
    for (uint64_t word = bitmap[w]; word != 0; word &= word - 1) {
      const uint64_t page = w * 64 + __builtin_ctzll(word);
      if (page >= page_limit) return;
      if (!runs.empty() && runs.back().second == page) {
        ++runs.back().second;
      } else {
        runs.emplace_back(page, page + 1);
      }
    }
  }
}

void NormalizeRuns(PageRuns& runs) {
  std::sort(runs.begin(), runs.end());
  size_t out = 0;
  for (size_t i = 0; i < runs.size(); ++i) {
    if (runs[i].first >= runs[i].second) continue;
    if (out > 0 && runs[i].first <= runs[out - 1].second) {
      runs[out - 1].second = std::max(runs[out - 1].second, runs[i].second);
    } else {
      runs[out++] = runs[i];
    }
  }
  runs.resize(out);
}

uint64_t CountPages(const PageRuns& runs) {
  uint64_t pages = 0;
  for (const auto& [first, end] : runs) pages += end - first;
  return pages;
}

}  // namespace thaw
