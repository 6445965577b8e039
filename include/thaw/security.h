// Process-wide security settings of the library.
//
// Thread confinement: the threads thaw starts for itself — a lazy
// restore's fault server ("thaw-faults"), prefetcher ("thaw-prefetch") and
// mapped-frame verifier ("thaw-verify"), and the call watchdog
// ("thaw-watchdog") — run under a seccomp allow-list (libseccomp): they may
// wait, use descriptors they hold, map memory, serve userfaultfd and
// io_uring, and signal this process's threads; opening files, sockets,
// processes and every other call fail with EPERM. The caller's own threads
// (the ones that call Vm methods) are never filtered. doc/security.md lists
// the calls and why each is there.
//
// Thread safety: any thread; a change applies to threads started after it.
#ifndef THAW_SECURITY_H_
#define THAW_SECURITY_H_

#include "absl/status/status.h"

namespace thaw {

// On by default (and off when the environment has
// THAW_THREAD_CONFINEMENT=off). Turning it off is for debugging (strace
// cannot follow a filtered thread's refused calls) or for a host that
// already confines the whole process.
void SetThreadConfinement(bool enabled);
bool ThreadConfinement();

// OK when confinement is off or its filter could be built; otherwise why
// not (thaw's threads then run unconfined).
absl::Status ThreadConfinementStatus();

}  // namespace thaw

#endif  // THAW_SECURITY_H_
