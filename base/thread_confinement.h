// Thread confinement: a seccomp allow-list for the threads thaw starts for
// itself (the lazy restore's fault server, prefetcher and verifier, and the
// call watchdog). They read snapshot data and serve guest page faults, so a
// bug in what they parse must not reach the rest of the system: under the
// filter they can wait, read and write descriptors they already hold, map
// memory, serve userfaultfd ioctls, run io_uring and signal threads of this
// process, and nothing else. Opening a file, creating a socket, starting a
// process or a thread, or any other call fails with EPERM (not a kill: the
// host process must survive; the thread's own error path reports it).
//
// The filter is compiled once per process (libseccomp) and installed with
// one seccomp(2) call per thread; it applies to the calling thread only,
// never to the caller's threads. On by default; the public switch is
// thaw::SetThreadConfinement (thaw/security.h), and
// THAW_THREAD_CONFINEMENT=off in the environment turns it off too (for
// strace, or a host whose sandbox already forbids seccomp).
#ifndef THAW_BASE_THREAD_CONFINEMENT_H_
#define THAW_BASE_THREAD_CONFINEMENT_H_

#include "absl/status/status.h"

namespace thaw {

// Installs the allow-list on the calling thread when confinement is on.
// Once installed it cannot be removed. Errors (a kernel without seccomp
// filters) leave the thread unconfined; callers log nothing and go on, and
// ThreadConfinementStatus() says why.
absl::Status ConfineThisThread();

// The first thing each of thaw's own threads does: names itself `name`
// (at most 15 characters; shown in /proc/self/task/*/comm and debuggers)
// and confines itself. A thread that cannot be confined runs on.
void EnterThawThread(const char* name);

// Whether the threads thaw starts from now on are confined.
void SetConfineThreads(bool enabled);
bool ConfineThreads();

// OK when the filter compiled (or confinement is off); else why it could
// not be built.
absl::Status ConfinementFilterStatus();

}  // namespace thaw

#endif  // THAW_BASE_THREAD_CONFINEMENT_H_
