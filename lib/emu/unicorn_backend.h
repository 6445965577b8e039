// The emulated backend: Debian's Unicorn 2.0.1 running the guest in-process.
//
// It exists so that thaw, its examples and its tests run on any x86-64 Linux,
// including machines without /dev/kvm. It runs function guests only. Facts it
// relies on (measured, see doc/platform-facts.md): paging is walked for faults
// but translation is identity; `out` is hooked synchronously; uc_emu_stop()
// takes effect at the end of the current translated block; the guest IDT is
// never used, so exceptions arrive through UC_HOOK_INTR.
#ifndef THAW_LIB_EMU_UNICORN_BACKEND_H_
#define THAW_LIB_EMU_UNICORN_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "lib/backend/backend.h"

namespace thaw::emu {

absl::StatusOr<std::unique_ptr<backend::Backend>> CreateUnicornBackend(
    GuestMemory& memory);

}  // namespace thaw::emu

#endif  // THAW_LIB_EMU_UNICORN_BACKEND_H_
