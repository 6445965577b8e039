// The hypervisor seam: what the monitor needs from KVM or from the emulator.
//
// A Backend is one VM with one vCPU over one GuestMemory mapped at guest
// physical address 0. Run() executes the guest until something the monitor
// must see: it returns a normalized Exit, and devices and the monitor never
// see kvm_run or Unicorn types. Hypercalls (`out` to THAW_HYPERCALL_PORT) are
// handed to a HypercallHandler *inside* Run(): on the emulated backend an
// `out` hook must answer synchronously (doc/platform-facts.md, Unicorn), and
// doing the same on KVM keeps one code path and saves a return per hypercall.
//
// Thread safety: everything but Interrupt() runs on one thread at a time.
// Interrupt() may be called from any thread, at any moment.
#ifndef THAW_LIB_BACKEND_BACKEND_H_
#define THAW_LIB_BACKEND_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/page_runs.h"
#include "base/vcpu_state.h"
#include "lib/guest_memory.h"
#include "thaw/vm.h"

namespace thaw::backend {

struct Hypercall {
  uint64_t number;  // RAX
  uint64_t arg0;    // RDI
  uint64_t arg1;    // RSI
  uint64_t arg2;    // RCX
  uint64_t arg3;    // R8
};

struct HypercallResult {
  uint64_t value = 0;  // written to the guest's RAX
  bool stop = false;   // end Run() with Exit::kStopped after this hypercall
};

// A `syscall` instruction executed by a user-mode program (Linux x86-64
// convention: number in RAX, arguments in RDI, RSI, RDX, R10, R8, R9).
struct Syscall {
  uint64_t number;
  uint64_t args[6];
  uint64_t rip;  // of the instruction after the `syscall`
};

struct SyscallResult {
  uint64_t value = 0;  // written to RAX (a negative errno on failure)
  // End Run() with Exit::kStopped right after this syscall, with RAX not
  // yet written: the host provides it with Backend::SetReturnValue() before
  // the next Run() (a program parked in a read of its request channel).
  bool park = false;
  // End Run() with Exit::kStopped after writing RAX (the program exited).
  bool stop = false;
  // arch_prctl(ARCH_SET_FS): the new FS base, applied before the program
  // resumes.
  bool set_fs_base = false;
  uint64_t fs_base = 0;
};

// What the guest asks of the host while it runs: hypercalls (function
// guests) and system calls (Linux programs). Both are handled inside
// Backend::Run(), on the vCPU thread.
class HypercallHandler {
 public:
  virtual ~HypercallHandler() = default;
  virtual HypercallResult Handle(const Hypercall& call) = 0;
  // Function guests make no system calls: ENOSYS.
  virtual SyscallResult HandleSyscall(const Syscall& call) {
    (void)call;
    SyscallResult result;
    result.value = static_cast<uint64_t>(-38);  // -ENOSYS
    return result;
  }
};

struct Exit {
  enum class Reason {
    kStopped,         // the hypercall handler asked to stop
    kInterrupted,     // Interrupt() was called
    kException,       // a CPU exception: vector, error_code, rip, cr2
    kShutdown,        // triple fault
    kHalt,            // hlt with interrupts off: the guest can never resume
    kUnhandledIo,     // port I/O to a port nobody owns: address = port
    kUnmappedMemory,  // access outside guest memory: address
    kInternalError,   // the backend failed; detail says how
  };
  Reason reason = Reason::kInternalError;
  uint64_t rip = 0;
  // False when the backend cannot know the RIP (kShutdown on AMD KVM, which
  // resets the vCPU at a triple fault).
  bool rip_known = true;
  uint32_t vector = 0;
  bool has_error_code = false;
  uint64_t error_code = 0;
  uint64_t cr2 = 0;
  uint64_t address = 0;
  std::string detail;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual BackendKind kind() const = 0;

  virtual absl::StatusOr<VcpuState> GetState() = 0;
  virtual absl::Status SetState(const VcpuState& state) = 0;
  // Writes RAX: the result of a syscall the guest parked in.
  virtual absl::Status SetReturnValue(uint64_t value) = 0;

  // Runs the vCPU until an exit the caller must handle.
  virtual absl::StatusOr<Exit> Run(HypercallHandler& handler) = 0;

  // Makes the current or next Run() return kInterrupted promptly, until
  // ClearInterrupt(). Async-safe with respect to Run() on another thread.
  virtual void Interrupt() = 0;
  virtual void ClearInterrupt() = 0;

  // Dirty-page tracking of guest writes (KVM's dirty log; the emulator's
  // write hook), for Vm::Reset.
  // StartDirtyLog: Unimplemented where the backend has none;
  // TakeDirtyLog: the 4 KiB guest pages written since the previous take
  // (or the start), sorted; the log is then clear.
  virtual absl::Status StartDirtyLog() {
    return absl::UnimplementedError("no dirty log on this backend");
  }
  virtual absl::StatusOr<PageRuns> TakeDirtyLog() {
    return absl::UnimplementedError("no dirty log on this backend");
  }
  // Turns the log off (the guest runs at full speed again); idempotent.
  virtual void StopDirtyLog() {}

  // OK if the vCPU has nothing in flight that VcpuState does not hold (a
  // pending or injected exception, interrupt or NMI; a halted or
  // wait-for-SIPI state), so the state can be saved in a snapshot.
  virtual absl::Status CheckNothingPending() { return absl::OkStatus(); }

  // Guest memory in [address, address + size) was replaced behind the
  // vCPU's back (Vm::Reset): drop anything decoded from it. KVM reads
  // memory afresh and needs nothing.
  virtual void DiscardCachedCode(uint64_t address, uint64_t size) {
    (void)address;
    (void)size;
  }
};

// Creates a backend of `kind` over `memory`. kAuto tries KVM, then falls back
// to the emulator. Unavailable if the requested backend cannot run here.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(BackendKind kind,
                                                       GuestMemory& memory);

// OK if this process can run guests on /dev/kvm: creates a throwaway VM once
// and runs a few instructions (long mode, SSE, a hypercall exit) in it, so
// that kAuto never picks a /dev/kvm that opens but cannot run guests (as on
// some nested or paravirtualized hosts). The result is cached.
absl::Status KvmRunsGuests();

// Vectors for which the CPU pushes an error code.
bool ExceptionHasErrorCode(uint32_t vector);
// "#PF", "#UD", ...
const char* ExceptionName(uint32_t vector);

}  // namespace thaw::backend

#endif  // THAW_LIB_BACKEND_BACKEND_H_
