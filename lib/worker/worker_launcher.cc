#include "lib/worker/worker_launcher.h"

#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/errno_status.h"

extern char** environ;

namespace thaw::worker {

WorkerLauncher& WorkerLauncher::Get() {
  static WorkerLauncher* launcher = new WorkerLauncher;
  return *launcher;
}

// Where thaw-worker is: $THAW_WORKER, else the one built with this library,
// else where `make install` put it. Its environment: none of the host's
// variables (they may hold secrets), except the sanitizers' and thaw's own
// settings.
WorkerLauncher::Launch WorkerLauncher::Current() {
  Launch launch;
  if (const char* path = std::getenv("THAW_WORKER"); path && *path) {
    launch.path = path;
  } else if (access(THAW_WORKER_BUILD_PATH, X_OK) == 0) {
    launch.path = THAW_WORKER_BUILD_PATH;
  } else {
    launch.path = THAW_WORKER_INSTALL_PATH;
  }
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const absl::string_view var(*e);
    for (absl::string_view prefix :
         {"ASAN_", "UBSAN_", "LSAN_", "TSAN_", "THAW_"}) {
      if (absl::StartsWith(var, prefix)) launch.env.emplace_back(var);
    }
  }
  return launch;
}

absl::StatusOr<StartedWorker> WorkerLauncher::Spawn(const Launch& launch) {
  int sockets[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0) {
    return ErrnoStatus("worker: socketpair", errno);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // Descriptor 3 is the connection; nothing else of the host's is open.
  posix_spawn_file_actions_adddup2(&actions, sockets[1], 3);
  posix_spawn_file_actions_addclosefrom_np(&actions, 4);
  std::vector<std::string> env = launch.env;
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  char* argv[] = {const_cast<char*>("thaw-worker"), nullptr};
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, launch.path.c_str(), &actions, nullptr, argv,
                             envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(sockets[1]);
  if (rc != 0) {
    close(sockets[0]);
    return ErrnoStatus(absl::StrCat("start the worker process \"", launch.path,
                                    "\" (set THAW_WORKER to its path)"),
                       rc);
  }
  return StartedWorker{pid, sockets[0]};
}

void WorkerLauncher::Stop(const StartedWorker& worker) {
  close(worker.fd);  // it exits when its connection closes
  kill(worker.pid, SIGKILL);
  int status;
  waitpid(worker.pid, &status, 0);
}

absl::StatusOr<StartedWorker> WorkerLauncher::Take() {
  const Launch now = Current();
  std::optional<Spare> taken;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    taken.swap(spare_);
    want_ = now;
    if (!thread_started_) {
      thread_started_ = true;
      std::thread([this] { MakeSpares(); }).detach();
    }
  }
  wanted_.notify_one();
  if (taken.has_value()) {
    // A spare that died meanwhile shows itself at the first request, as
    // any worker's death does.
    if (taken->launch == now) return taken->worker;
    Stop(taken->worker);
  }
  return Spawn(now);
}

// Not a confined thaw thread (base/thread_confinement.h): it starts
// processes. It holds no guest data.
void WorkerLauncher::MakeSpares() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    wanted_.wait(lock, [this] { return want_.has_value() && !spare_; });
    const Launch launch = *std::move(want_);
    want_.reset();
    lock.unlock();
    absl::StatusOr<StartedWorker> worker = Spawn(launch);
    lock.lock();
    // A failed start is left for Take() to report when it starts its own.
    if (worker.ok()) {
      if (spare_.has_value()) {
        Stop(*worker);
      } else {
        spare_ = Spare{*worker, launch};
      }
    }
  }
}

}  // namespace thaw::worker
