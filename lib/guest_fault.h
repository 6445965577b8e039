// Attaching a guest exception's details to a status: the monitor's half of
// thaw/errors.h (GetGuestFault is the public half).
#ifndef THAW_LIB_GUEST_FAULT_H_
#define THAW_LIB_GUEST_FAULT_H_

#include "absl/status/status.h"
#include "thaw/errors.h"

namespace thaw {

// Attaches `fault` to `status` as the payload GetGuestFault reads.
void SetGuestFault(absl::Status& status, const GuestFault& fault);

}  // namespace thaw

#endif  // THAW_LIB_GUEST_FAULT_H_
