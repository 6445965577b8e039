// thaw::Vm — one micro-VM running one guest: a function guest or a Linux
// program (VmConfig::guest_kind).
//
// A Vm owns its guest memory, one vCPU on a hypervisor backend (KVM or the
// emulated backend) and its guest's state. The life of a Vm: Create ->
// LoadGuest -> Boot (the guest runs its init and parks) -> any number of
// Call()s; or Snapshot::Restore (thaw/snapshot.h) -> Call()s, with Reset()
// between them for a Vm restored with RestoreEngine::kSharedBase.
//
// Errors: every fallible method returns absl::Status / absl::StatusOr. A guest
// can never crash the host process: a guest exception, an abort, a bad
// hypercall argument or a timeout ends the current call with an error naming
// what happened (vector, RIP and CR2 for exceptions), and the Vm then refuses
// further calls with FailedPrecondition carrying that first error.
//
// Thread safety, enforced by the Vm itself (each method below is marked
// [operation] or [any thread]):
//  - the operations (LoadGuest, Boot, Call, Snapshot, Reset, WriteWorkingSet,
//    RegisterHostFunction) run one at a time: a second
//    thread's operation waits until the first is done. A host function that
//    calls an operation of its own Vm gets FailedPrecondition (it would wait
//    for itself);
//  - Pause, Resume, paused, WriteConsole, console, report, restore_stats,
//  FindGuestSymbol,
//    ReadGuestMemory, backend and config may be called from any thread at
//    any time, also while an operation runs (ReadGuestMemory then sees
//    bytes the running guest may be changing);
//  - distinct Vms are independent and may run in parallel.
//
// Timeouts on the KVM backend interrupt the vCPU thread with the real-time
// signal SIGRTMIN + 5; thaw installs a no-op handler for it if the process
// has none.
#ifndef THAW_VM_H_
#define THAW_VM_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "thaw/kinds.h"
#include "thaw/options.h"
#include "thaw/report.h"
#include "thaw/snapshot.h"

namespace thaw {

namespace internal {
struct VmAccess;  // lib/vm_internal.h: thaw's own tools, not the public API
class VmImpl;     // lib/vm_impl.h: where a Vm lives
}  // namespace internal

// OK if this process can run guests on KVM, which is what kAuto picks then;
// otherwise why not (no /dev/kvm, no permission, or a /dev/kvm that cannot
// run a long-mode guest). Probed once per process, then cached.
absl::Status CheckKvm();

// A function the guest can call by name (thaw_host_call in the guest SDK).
// It runs on the thread that runs the guest, while the guest waits. An error
// status reaches the guest as THAW_ERR_HOST; it does not fail the Vm.
using HostFunction =
    std::function<absl::StatusOr<std::string>(absl::string_view input)>;

class Vm {
 public:
  // Creates guest memory and a vCPU on the configured backend. Fails with
  // InvalidArgument for a bad config and Unavailable for a backend that
  // cannot run here (kKvm without a usable /dev/kvm).
  static absl::StatusOr<std::unique_ptr<Vm>> Create(const VmConfig& config);

  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  // The backend in use (never kAuto). [any thread]
  BackendKind backend() const;
  // For a restored Vm, the layout comes from the snapshot. [any thread]
  const VmConfig& config() const;

  // Loads a function-guest ELF (x86-64, statically linked at
  // THAW_IMAGE_BASE). Once per Vm, before Boot(). [operation]
  absl::Status LoadGuest(const std::string& path);
  absl::Status LoadGuestImage(absl::Span<const uint8_t> elf,
                              absl::string_view name = "<memory>");

  // Loads a static (or static-PIE) Linux x86-64 program into a Vm created
  // with GuestKind::kLinuxProgram, with its argv, environment and auxiliary
  // vector on its stack. Once per Vm, before Boot(). Boot() then runs it
  // until it first reads its request channel (include/thaw/program.h).
  // Unimplemented for a dynamically linked program. [operation]
  absl::Status LoadProgram(const std::string& path,
                           const ProgramOptions& options = {});

  // Loads a Linux kernel (a bzImage with boot protocol 2.12 or later, or an
  // x86-64 vmlinux ELF) and an initramfs (a cpio archive whose /init is
  // thaw's agent, guest/linux-agent) into a Vm created with
  // GuestKind::kLinuxVm. Once per Vm, before Boot(), which then boots the
  // kernel until the agent is ready. A malformed image, or one that does
  // not fit in the Vm's memory, is refused here with InvalidArgument naming
  // the file and what is wrong; nothing has run yet. [operation]
  absl::Status LoadKernel(const std::string& kernel_path,
                          const std::string& initrd_path,
                          const LinuxBootOptions& options = {});

  // Runs the guest's init until it parks waiting for its first call (for a
  // Linux VM: boots the kernel until the agent is ready). [operation]
  absl::Status Boot();

  // Calls the guest function `function` with `input` and returns its reply.
  //   InvalidArgument    input larger than input_buffer_size, a bad name, or
  //                      a hypercall with an address outside guest memory;
  //   NotFound           the guest has no such function;
  //   ResourceExhausted  the reply exceeds output_buffer_size;
  //   Aborted            the function returned an error, or the guest
  //                      called abort or took an exception (vector/RIP/CR2);
  //   DeadlineExceeded   the call ran past call_timeout;
  //   FailedPrecondition the Vm is not booted, or failed in an earlier call.
  // After NotFound, ResourceExhausted or a function error the Vm stays usable.
  // [operation]
  absl::StatusOr<std::string> Call(absl::string_view function,
                                   absl::string_view input);

  // Snapshot::Open(path), then Restore(options) on that handle; the handle
  // is dropped after, so a kSharedBase image is not kept for the next call.
  // Any thread (it makes a new Vm).
  static absl::StatusOr<std::unique_ptr<Vm>> Restore(
      const std::string& path, const RestoreOptions& options = {});

  // Writes a snapshot of this parked Vm to `path` (atomically: a crash or a
  // full disk never leaves a partial file there). The guest's before-snapshot
  // hook runs first, so it can drop secrets from memory. [operation]
  absl::Status Snapshot(const std::string& path,
                        const SnapshotOptions& options = {});

  // Returns a Vm restored with RestoreEngine::kSharedBase to its snapshot:
  // only the pages written since are restored, plus the vCPU state, and the
  // guest sees a new restore generation and fresh entropy. Works on a Vm
  // whose call failed, too. For a Linux VM the whole machine is rebuilt
  // from the snapshot's state (every vCPU, irqchip, clock, devices) and its
  // agent reseeds before the next call; one whose kernel panicked or
  // rebooted comes back too. FailedPrecondition for other Vms. [operation]
  absl::Status Reset();

  // For a Vm restored with record_working_set: writes the chunks the restore
  // and the first call touched into the snapshot it came from (rewriting it
  // atomically, working set first), for later kLazyPrefetch restores.
  // A signed snapshot is signed again with `key` (it must be given: the
  // rewrite would otherwise drop the signature; FailedPrecondition).
  // [operation]
  absl::Status WriteWorkingSet();
  absl::Status WriteWorkingSet(const SigningKey& key);

  // OK while the Vm accepts calls; otherwise the error that stopped it (a
  // guest exception, an abort, a timeout, a damaged chunk), as its failed
  // call returned it. Reset() clears it. [operation]
  absl::Status failure() const;
  // What the restore did, counted so far. [any thread]
  RestoreStats restore_stats() const;

  // For a Linux program: its system calls counted so far (zero for a
  // function guest). [operation]
  ProgramStats program_stats() const;

  // Makes `fn` callable by the guest as `name`. Replaces an earlier one.
  // [operation]
  absl::Status RegisterHostFunction(std::string name, HostFunction fn);

  // Stops the guest at its next instruction boundary and holds it until
  // Resume(). A Call() in progress blocks meanwhile; paused time is not
  // counted against its timeout. Idempotent. [any thread]
  void Pause();
  void Resume();
  bool paused() const;

  // Queues `bytes` for a Linux VM's console (ttyS0), which the guest reads
  // like a serial line; returns how many were taken (the UART holds 64 KiB;
  // the rest is for the caller to send again once the guest has read).
  // FailedPrecondition once the machine has stopped; Unimplemented for
  // function guests and Linux programs, which have no console input.
  // [any thread]
  absl::StatusOr<size_t> WriteConsole(absl::string_view bytes);

  // Console output captured so far (at most config().console_limit bytes,
  // the most recent ones). [any thread]
  std::string console() const;

  // Where the time went so far. [any thread]
  PhaseReport report() const;

  // Copies guest memory [address, address + size) out, for inspection.
  // OutOfRange if the range is not inside guest memory. Guest memory stays
  // mapped for the Vm's life, so this is safe while a call runs.
  // [any thread]
  absl::StatusOr<std::string> ReadGuestMemory(uint64_t address,
                                              uint64_t size) const;

  // Address of a symbol in the loaded guest's ELF symbol table. [any thread]
  absl::StatusOr<uint64_t> FindGuestSymbol(absl::string_view name) const;

 private:
  friend class Snapshot;
  friend struct internal::VmAccess;
  explicit Vm(std::unique_ptr<internal::VmImpl> impl);
  // In this process, in a worker process, or a whole Linux machine.
  std::unique_ptr<internal::VmImpl> impl_;
};

}  // namespace thaw

#endif  // THAW_VM_H_
