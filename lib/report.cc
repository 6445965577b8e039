// PhaseReport::ToString (thaw/report.h).
#include "thaw/report.h"

#include "absl/strings/str_format.h"

namespace thaw {

std::string PhaseReport::ToString() const {
  auto ms = [](absl::Duration d) { return absl::ToDoubleMilliseconds(d); };
  std::string out = absl::StrFormat("backend: %s\ncreate: %.3f ms\n",
                                    BackendName(backend), ms(create));
  if (restore != absl::ZeroDuration()) {
    absl::StrAppendFormat(&out, "restore: %.3f ms\n", ms(restore));
  } else {
    absl::StrAppendFormat(&out, "load: %.3f ms\nboot+init: %.3f ms\n", ms(load),
                          ms(boot));
    if (kernel_to_init != absl::ZeroDuration()) {
      absl::StrAppendFormat(&out,
                            "  kernel entry to init: %.3f ms\n"
                            "  init to agent ready: %.3f ms\n",
                            ms(kernel_to_init), ms(init_to_agent));
    }
  }
  absl::StrAppendFormat(&out, "calls: %d (last %.3f ms, total %.3f ms)\n",
                        calls, ms(last_call), ms(total_calls));
  if (snapshot != absl::ZeroDuration()) {
    absl::StrAppendFormat(&out, "snapshot: %.3f ms\n", ms(snapshot));
  }
  if (reset != absl::ZeroDuration()) {
    absl::StrAppendFormat(&out, "reset: %.3f ms\n", ms(reset));
  }
  return out;
}

}  // namespace thaw
