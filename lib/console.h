// Console: what a guest wrote to its console (function guests' console
// hypercall; Linux programs' stdout and stderr), kept up to a limit (the
// most recent bytes) and passed on to the user's sink as it arrives.
//
// Thread safety: Write() on the vCPU thread; Contents() from any thread.
#ifndef THAW_LIB_CONSOLE_H_
#define THAW_LIB_CONSOLE_H_

#include <mutex>
#include <string>

#include "absl/strings/string_view.h"
#include "thaw/options.h"

namespace thaw {

class Console {
 public:
  // `settings` (console_limit, console_sink) outlives the console.
  explicit Console(const VmSettings& settings) : settings_(settings) {}

  void Write(absl::string_view text);
  std::string Contents() const;

 private:
  const VmSettings& settings_;
  mutable std::mutex mutex_;
  std::string text_;  // guarded by mutex_
};

}  // namespace thaw

#endif  // THAW_LIB_CONSOLE_H_
