// GuestRuntime: the guest-kind seam. What differs between kinds of guest —
// how a program is loaded, how a request reaches it and its reply comes
// back, what of it a snapshot records, what a restore must refresh — lives
// behind this interface; the run loop (lib/vcpu_loop.h), the memory sources
// (snapshot/memory_source.h) and the snapshot format do not change with the
// kind. FunctionGuest (lib/function_guest.h) is the first kind; Linux
// programs and Linux kernels plug in beside it.
//
// Each run of the vCPU serves one request: the core calls Begin*() to set it
// up, runs the vCPU with handler() serving the guest's exits to the host,
// and, once the handler stopped the run, asks Finish() how it ended.
//
// Thread safety: FindSymbol and console from any thread; the rest on the
// thread that owns the Vm, while the vCPU is stopped.
#ifndef THAW_LIB_GUEST_RUNTIME_H_
#define THAW_LIB_GUEST_RUNTIME_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "base/page_map.h"
#include "lib/backend/backend.h"
#include "snapshot/manifest.pb.h"
#include "thaw/vm.h"

namespace thaw {

class GuestRuntime {
 public:
  virtual ~GuestRuntime() = default;

  // Serves the guest's exits to the host while the vCPU runs.
  virtual backend::HypercallHandler& handler() = 0;

  // Loads a program into guest memory and points the vCPU at its start.
  virtual absl::Status Load(absl::Span<const uint8_t> image,
                            absl::string_view name,
                            const ProgramOptions& options,
                            backend::Backend& backend) = 0;

  // Set up the next run: the guest's init, a call, the before-snapshot hook.
  virtual absl::Status BeginBoot() = 0;
  virtual absl::Status BeginCall(absl::string_view function,
                                 absl::string_view input) = 0;
  virtual absl::Status BeginBeforeSnapshot() = 0;

  // How the request ended, after a run the handler stopped.
  struct Outcome {
    absl::StatusOr<std::string> reply;  // the reply, or why there is none
    bool vm_usable = true;  // false: the guest cannot take another request
  };
  virtual Outcome Finish(absl::string_view what) = 0;

  // The runtime's part of a snapshot (the manifest's guest state), and
  // taking it back in a restored Vm whose memory is already in place.
  // Unimplemented where the kind cannot be snapshotted yet.
  virtual absl::Status Save(snapshot::proto::Manifest& manifest) const = 0;
  virtual absl::Status Restore(const snapshot::proto::Manifest& manifest,
                               absl::string_view path) = 0;
  // The vCPU state a snapshot records, from the live one: a kind may turn a
  // backend-specific stop into the form both backends resume.
  virtual VcpuState SnapshotState(const VcpuState& live) const { return live; }
  // The state to load to resume a snapshot's `saved` state; may write a
  // trampoline into guest memory.
  virtual absl::StatusOr<VcpuState> ResumeState(const VcpuState& saved) {
    return saved;
  }
  // After Reset put guest memory back: put the runtime's own state back to
  // the snapshot's too.
  virtual absl::Status Rewind() { return absl::OkStatus(); }
  // After a restore or a reset: tell the guest it is a new instance
  // (restore generation `generation`, fresh entropy).
  virtual absl::Status NewIdentity(uint64_t generation) = 0;
  // The generation the guest is in now.
  virtual uint64_t generation() const = 0;
  // Pages the host rewrites at every NewIdentity (a reset restores them
  // whatever the dirty log says).
  virtual PageRuns HostOwnedPages() const = 0;

  virtual void RegisterHostFunction(std::string name, HostFunction fn) = 0;
  virtual absl::StatusOr<uint64_t> FindSymbol(absl::string_view name) const = 0;
  virtual std::string console() const = 0;
  virtual ProgramStats program_stats() const { return {}; }
};

}  // namespace thaw

#endif  // THAW_LIB_GUEST_RUNTIME_H_
