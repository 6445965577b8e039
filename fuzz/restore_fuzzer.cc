// Fuzz target: restoring a fuzzed snapshot file into a running Vm. The
// input is a snapshot file (its checksums made right first, as in
// snapshot_reader); the harness opens it and restores it through every
// engine on the emulated backend, and calls the guest once with a short
// timeout. This reaches what the reader alone does not: loading a fuzzed
// vCPU state and guest configuration into a backend, the runtimes'
// restore of their own state (function guests, and Linux programs with
// their descriptors, mounts and mappings), the engines' mapping and fault
// serving over fuzzed frame tables, and a guest running on what it got. A
// crash, a sanitizer report or a hang is a finding; errors are expected.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "fuzz/fix_checksums.h"
#include "thaw/snapshot.h"
#include "thaw/vm.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string file(reinterpret_cast<const char*>(data), size);
  thaw::fuzz::FixChecksums(file);
  int fd = memfd_create("thaw-fuzz-restore", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (write(fd, file.data(), file.size()) !=
      static_cast<ssize_t>(file.size())) {
    close(fd);
    return 0;
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  auto snapshot = thaw::Snapshot::Open(path);
  if (snapshot.ok() && snapshot->Info().memory_size <= (64ull << 20)) {
    for (thaw::RestoreEngine engine : thaw::kRestoreEngines) {
      thaw::RestoreOptions options;
      options.backend = thaw::BackendKind::kEmulated;
      options.engine = engine;
      options.call_timeout = absl::Milliseconds(20);
      options.console_limit = 4096;
      auto vm = snapshot->Restore(options);
      if (!vm.ok()) continue;
      (void)(*vm)->Call("echo", "fuzz");
    }
  }
  close(fd);
  return 0;
}
