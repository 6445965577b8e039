// WorkerLauncher: starts thaw-worker processes (VmSettings::worker_process)
// and keeps one started spare, so that the next Vm's worker is ready when
// it is asked for. A worker's start — exec, the emulator's one-time setup,
// namespaces, seccomp — takes longer than a restore (doc/security.md has
// the figures), so once a process has used a worker, the launcher starts
// the next one in the background after each one it hands out. A process
// that never asks for a worker starts none.
//
// A spare is handed out only if it was started with the environment a
// worker would get now (the THAW_* and sanitizer variables, the worker's
// path); otherwise it is stopped and a fresh one started.
//
// Thread safety: Take() may be called from any thread.
#ifndef THAW_LIB_WORKER_WORKER_LAUNCHER_H_
#define THAW_LIB_WORKER_WORKER_LAUNCHER_H_

#include <sys/types.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace thaw::worker {

struct StartedWorker {
  pid_t pid = -1;
  int fd = -1;  // the host's end of the worker's connection (descriptor 3)
};

class WorkerLauncher {
 public:
  // The process's launcher (never destroyed: spares outlive static
  // destruction and exit when the process's end closes their sockets).
  static WorkerLauncher& Get();

  // A started worker: the spare if it fits, else one started now. The
  // caller owns the process (waits for it) and the descriptor.
  absl::StatusOr<StartedWorker> Take();

 private:
  struct Launch {
    std::string path;
    std::vector<std::string> env;
    bool operator==(const Launch& other) const {
      return path == other.path && env == other.env;
    }
  };
  struct Spare {
    StartedWorker worker;
    Launch launch;
  };
  static Launch Current();
  static absl::StatusOr<StartedWorker> Spawn(const Launch& launch);
  static void Stop(const StartedWorker& worker);
  void MakeSpares();  // the background thread

  std::mutex mutex_;
  std::condition_variable wanted_;
  std::optional<Spare> spare_;
  std::optional<Launch> want_;  // start a spare like this
  bool thread_started_ = false;
};

}  // namespace thaw::worker

#endif  // THAW_LIB_WORKER_WORKER_LAUNCHER_H_
