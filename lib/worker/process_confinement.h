// The worker process confines itself before it reads its first request:
// new user (where needed), mount, network, IPC and UTS namespaces where the
// host allows them (no network interface, no view of the host's mounts
// changing), then a seccomp allow-list for the whole process (every
// thread, present and future): the calls an emulated Vm, its restore
// engines and its threads need; every other call (open, socket, connect,
// execve, fork, ptrace, mount, ...) fails with EPERM. A compromised
// worker (a TCG bug exploited by its guest) can then do nothing but what
// its Vm does, on the descriptors it was given.
#ifndef THAW_LIB_WORKER_PROCESS_CONFINEMENT_H_
#define THAW_LIB_WORKER_PROCESS_CONFINEMENT_H_

#include <string>

#include "absl/status/status.h"

namespace thaw::worker {

// Namespaces (best effort; what was done is described in *namespaces),
// then the filter (an error if it cannot be installed).
absl::Status ConfineWorkerProcess(std::string* namespaces);

}  // namespace thaw::worker

#endif  // THAW_LIB_WORKER_PROCESS_CONFINEMENT_H_
