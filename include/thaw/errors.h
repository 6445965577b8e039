// Structured details carried by thaw's error statuses.
//
// Every thaw error is an absl::Status whose message says what failed, on
// what, and why. A call that failed because the guest took a CPU exception
// also carries the exception's details as a status payload, so programs (and
// the Python binding) can react to them without parsing the message.
//
// Thread safety: pure functions.
#ifndef THAW_ERRORS_H_
#define THAW_ERRORS_H_

#include <cstdint>
#include <optional>

#include "absl/status/status.h"

namespace thaw {

struct GuestFault {
  uint32_t vector = 0;  // x86 exception vector (14 = #PF); 8 = triple fault
  uint64_t rip = 0;     // the faulting instruction
  uint64_t cr2 = 0;     // the faulting address, for #PF
  uint64_t error_code = 0;
  bool triple_fault = false;
};

// The fault details if `status` reports a guest exception, else nullopt.
std::optional<GuestFault> GetGuestFault(const absl::Status& status);

}  // namespace thaw

#endif  // THAW_ERRORS_H_
