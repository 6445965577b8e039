// What a Vm reports about itself: where its time went (PhaseReport, like
// Lambda's INIT_REPORT and Restore Duration) and what its restore did
// (RestoreStats).
//
// Thread safety: plain values, returned by copy.
#ifndef THAW_REPORT_H_
#define THAW_REPORT_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/time/time.h"
#include "thaw/kinds.h"

namespace thaw {

struct PhaseReport {
  BackendKind backend = BackendKind::kAuto;  // the backend actually used
  absl::Duration create;                     // memory, backend and vCPU set-up
  absl::Duration load;       // ELF parsing and copy into guest memory
  absl::Duration boot;       // from first instruction to the park point
  // A Linux VM's boot, split (both within `boot`): from the kernel's entry
  // until its init (the agent) starts, and from there until the agent
  // serves calls (virtio modules loaded, channel open).
  absl::Duration kernel_to_init;
  absl::Duration init_to_agent;
  absl::Duration restore;    // the restore, for a restored Vm
  absl::Duration snapshot;   // the most recent Snapshot()
  absl::Duration reset;      // the most recent Reset()
  uint64_t calls = 0;        // completed Call()s, successful or not
  absl::Duration last_call;  // the most recent Call()
  absl::Duration total_calls;

  // One line per phase, for humans.
  std::string ToString() const;
};

// What a restore did, counted.
struct RestoreStats {
  RestoreEngine engine = RestoreEngine::kEager;
  // Page faults the lazy engines served by reading (or zero-filling) the
  // chunk on the spot.
  uint64_t faults = 0;
  // Page faults on a chunk the prefetcher was already installing: the
  // guest waited for it, but nothing extra was read.
  uint64_t prefetch_waits = 0;
  uint64_t chunks_read = 0;  // chunks read from the file and decompressed
  uint64_t bytes_read = 0;   // compressed bytes read
  uint64_t zero_chunks = 0;  // all-zero chunks installed lazily
  uint64_t prefetched = 0;   // chunks installed by prefetch
  // Working-set chunks mapped straight from the file (stored raw by
  // Vm::WriteWorkingSet), checked in the background.
  uint64_t mapped = 0;
  // Pages of those chunks whose page-table entries were filled in bulk
  // before the guest touched them, and pages the recorded first call wrote
  // that were made private up front (so the guest takes no fault on them).
  uint64_t populated_pages = 0;
  uint64_t pages_made_private = 0;
  // Reads done with plain pread because io_uring is unavailable here (a
  // seccomp filter, kernel.io_uring_disabled): restores still work.
  uint64_t reads_without_io_uring = 0;
  // The pages behind guest memory: "4 KiB", "2 MiB reserved (hugetlbfs)"
  // or "2 MiB transparent" (VmSettings::huge_pages).
  std::string memory_pages = "4 KiB";
  uint64_t resets = 0;       // Vm::Reset() calls
  uint64_t pages_reset = 0;  // pages the last Reset() restored
  // This restore decompressed the Snapshot handle's shared base (the first
  // kSharedBase restore through a handle does; later ones map it).
  bool shared_base_built = false;
  // Reset finds what changed from the backend's dirty log (KVM's; the
  // emulator's write hook), plus the host's own writes, instead of walking
  // the page tables (/proc/self/pagemap).
  bool reset_uses_dirty_log = false;
};

// What a Linux program guest asked of the host (GuestKind::kLinuxProgram).
struct ProgramStats {
  uint64_t syscalls = 0;  // system calls served, all kinds
  // System calls answered ENOSYS (no handler, or threads and processes,
  // which thaw does not support), by name ("syscall_N" when unknown).
  std::map<std::string, uint64_t> unsupported;
  // Paths refused because they would have left the file view.
  uint64_t path_escapes = 0;
};

}  // namespace thaw

#endif  // THAW_REPORT_H_
