// A progress bar on stderr for work that takes more than a second: nothing
// for quick work, a redrawn bar on a terminal, a line per 10% otherwise.
// THAW_PROGRESS_DELAY_MS overrides the one-second delay (the CLI tests use 0).
#ifndef THAW_EXAMPLES_CLI_PROGRESS_H_
#define THAW_EXAMPLES_CLI_PROGRESS_H_

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/time/clock.h"

namespace thaw::cli {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label)
      : label_(std::move(label)),
        start_(absl::Now()),
        tty_(isatty(STDERR_FILENO) == 1) {
    if (const char* delay = std::getenv("THAW_PROGRESS_DELAY_MS")) {
      delay_ = absl::Milliseconds(std::atoi(delay));
    }
  }
  ~ProgressBar() {
    if (shown_ && tty_) std::fputc('\n', stderr);
  }

  void Update(uint64_t done, uint64_t total) {
    if (total == 0 || absl::Now() - start_ < delay_) return;
    const int percent = static_cast<int>(done * 100 / total);
    if (tty_) {
      const int filled = percent * 30 / 100;
      std::fprintf(stderr, "\r%s [%s%s] %3d%%", label_.c_str(),
                   std::string(filled, '#').c_str(),
                   std::string(30 - filled, ' ').c_str(), percent);
    } else if (percent / 10 != last_decile_) {
      std::fprintf(stderr, "%s: %d%%\n", label_.c_str(), percent);
    }
    last_decile_ = percent / 10;
    shown_ = true;
  }

 private:
  std::string label_;
  absl::Time start_;
  absl::Duration delay_ = absl::Seconds(1);
  bool tty_;
  bool shown_ = false;
  int last_decile_ = -1;
};

}  // namespace thaw::cli

#endif  // THAW_EXAMPLES_CLI_PROGRESS_H_
