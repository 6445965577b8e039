// thaw/security.h over the base layer's thread confinement.
#include "thaw/security.h"

#include "base/thread_confinement.h"

namespace thaw {

void SetThreadConfinement(bool enabled) { SetConfineThreads(enabled); }
bool ThreadConfinement() { return ConfineThreads(); }
absl::Status ThreadConfinementStatus() { return ConfinementFilterStatus(); }

}  // namespace thaw
