// The kinds thaw's settings choose between: which hypervisor backend runs a
// Vm, and which restore engine brings a snapshot back. Every other public
// header names these; this one names nothing else.
//
// Thread safety: pure functions.
#ifndef THAW_KINDS_H_
#define THAW_KINDS_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace thaw {

enum class BackendKind {
  kAuto,      // KVM when /dev/kvm can run a VM, else emulated
  kKvm,       // /dev/kvm; fails with Unavailable where it cannot
  kEmulated,  // in-process x86-64 emulation (Unicorn); works everywhere
};

// "auto", "kvm" or "emulated".
absl::string_view BackendName(BackendKind kind);
// Parses BackendName's output; InvalidArgument for anything else.
absl::StatusOr<BackendKind> ParseBackendName(absl::string_view name);

// What a Vm runs (VmConfig::guest_kind).
enum class GuestKind {
  // A freestanding function guest built against thaw's SDK
  // (include/thaw/guest.h), loaded with Vm::LoadGuest.
  kFunction,
  // An unmodified static Linux x86-64 program, run in user mode with its
  // system calls served by the host; loaded with Vm::LoadProgram and served
  // through include/thaw/program.h.
  kLinuxProgram,
  // A Linux kernel with an initramfs, booted as a whole micro-VM on KVM
  // (several vCPUs, in-kernel irqchip, a UART and a virtio console): loaded
  // with Vm::LoadKernel; Call() reaches the agent in its initramfs
  // (include/thaw/linux_agent.h, doc/linux-vm.md). KVM only: the emulated
  // backend refuses it.
  kLinuxVm,
};

enum class RestoreEngine {
  // Read and decompress the whole image before the guest runs.
  kEager,
  // Guest memory is filled on first touch (userfaultfd); chunks the guest
  // never touches are never read.
  kLazy,
  // Lazy, plus the snapshot's recorded working set brought in first: mapped
  // straight from the file where Vm::WriteWorkingSet stored it raw (checked
  // in the background once per file version and process, before any result
  // is returned), else streamed in while the guest already runs. Without a
  // recorded working set it is kLazy. Like Firecracker's memory file, a
  // snapshot file must not be truncated in place while Vms restored from it
  // this way run (thaw itself only ever replaces files by rename).
  kLazyPrefetch,
  // The image is decompressed once per Snapshot handle into shared memory
  // that every Vm restored through that handle maps copy-on-write; supports
  // Vm::Reset().
  kSharedBase,
};

// Every engine, in the order above (for code that tries each one).
inline constexpr RestoreEngine kRestoreEngines[] = {
    RestoreEngine::kEager, RestoreEngine::kLazy, RestoreEngine::kLazyPrefetch,
    RestoreEngine::kSharedBase};

// "eager", "lazy", "prefetch", "shared".
absl::string_view RestoreEngineName(RestoreEngine engine);
// Parses RestoreEngineName's output; InvalidArgument for anything else.
absl::StatusOr<RestoreEngine> ParseRestoreEngine(absl::string_view name);

}  // namespace thaw

#endif  // THAW_KINDS_H_
