// thaw-worker: one Vm in a process of its own (VmSettings::worker_process;
// lib/worker/worker_client.h starts it). Descriptor 3 is its connection to
// the host. It confines itself before it reads a request and exits when the
// host closes the connection.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/page_map.h"
#include "lib/worker/channel.h"
#include "lib/worker/process_confinement.h"
#include "lib/worker/worker_process.h"
#include "thaw/vm.h"

#if defined(__SANITIZE_ADDRESS__)
// LeakSanitizer checks at exit by stopping the process's threads with
// ptrace from a child process, both of which the worker's filter refuses:
// in a sanitizer build the worker's leaks go unchecked (the in-process
// suites check the same code).
extern "C" int __lsan_is_turned_off() { return 1; }
#endif

int main() {
  thaw::worker::Channel channel(3);
  // Work that reads host files (the emulator's one-time setup) happens
  // before the filter: one throwaway Vm.
  {
    thaw::VmConfig warm;
    warm.backend = thaw::BackendKind::kEmulated;
    warm.memory_size = 4ull << 20;
    warm.input_buffer_size = warm.output_buffer_size = 4096;
    warm.stack_size = 64 << 10;
    (void)thaw::Vm::Create(warm);
  }
  (void)thaw::PageMap::OpenOnce();  // what a snapshot's writer reads
  std::string namespaces;
  if (absl::Status s = thaw::worker::ConfineWorkerProcess(&namespaces);
      !s.ok()) {
    std::fprintf(stderr, "thaw-worker: cannot confine itself: %s\n",
                 std::string(s.message()).c_str());
    return 3;
  }
  // For the test that shows the confinement at work (tests/worker_test.cc):
  // what compromised code in the worker would try, and what it got.
  std::string self_test;
  if (std::getenv("THAW_WORKER_SELF_TEST") != nullptr) {
    auto result = [](const char* what, int rc) {
      return rc >= 0 ? std::string(what) + ": allowed; "
                     : std::string(what) + ": " + std::strerror(errno) + "; ";
    };
    self_test += result("open /etc/hostname", open("/etc/hostname", O_RDONLY));
    self_test +=
        result("open /proc/self/status", open("/proc/self/status", O_RDONLY));
    self_test += result("socket", socket(AF_INET, SOCK_STREAM, 0));
    self_test += result("unix socket", socket(AF_UNIX, SOCK_STREAM, 0));
    self_test += result("fork", static_cast<int>(fork()));
    self_test += "namespaces: " + namespaces;
  }
  return thaw::worker::WorkerProcess(channel, self_test).Serve();
}
