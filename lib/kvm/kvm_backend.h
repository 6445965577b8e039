// The KVM backend: one VM and one vCPU through /dev/kvm ioctls.
//
// The production backend. The guest runs natively; every exception enters a
// host-built IDT stub that exits to us through THAW_EXCEPTION_PORT, and
// hypercalls exit as KVM_EXIT_IO. On the hot path registers travel through
// KVM_SYNC_X86_REGS in the shared kvm_run page instead of extra ioctls.
// Interrupt() sets kvm_run.immediate_exit and signals the vCPU thread with
// a real-time signal (SIGRTMIN + 5), the documented race-free way to kick a
// vCPU.
#ifndef THAW_LIB_KVM_KVM_BACKEND_H_
#define THAW_LIB_KVM_KVM_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "lib/backend/backend.h"

namespace thaw::kvm {

// Unavailable when /dev/kvm is missing or cannot create and run a VM.
absl::StatusOr<std::unique_ptr<backend::Backend>> CreateKvmBackend(
    GuestMemory& memory);

}  // namespace thaw::kvm

#endif  // THAW_LIB_KVM_KVM_BACKEND_H_
