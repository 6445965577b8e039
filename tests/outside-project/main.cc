// The outside project's host program: boots its guest, calls it, snapshots
// it, restores it through a Snapshot handle and calls the clone. Prints
// both replies; exits non-zero with the error otherwise.
#include <cstdio>
#include <string>

#include "thaw/snapshot.h"
#include "thaw/vm.h"

int Fail(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "%s: %s\n", what, std::string(status.message()).c_str());
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: consumer GUEST.elf SNAPSHOT\n");
    return 2;
  }
  thaw::VmConfig config;
  config.backend = thaw::BackendKind::kEmulated;
  config.memory_size = 16ull << 20;
  auto vm = thaw::Vm::Create(config);
  if (!vm.ok()) return Fail("create", vm.status());
  if (auto s = (*vm)->LoadGuest(argv[1]); !s.ok()) return Fail("load", s);
  if (auto s = (*vm)->Boot(); !s.ok()) return Fail("boot", s);
  auto reply = (*vm)->Call("shout", "hello");
  if (!reply.ok()) return Fail("call", reply.status());
  if (auto s = (*vm)->Snapshot(argv[2]); !s.ok()) return Fail("snapshot", s);
  auto snapshot = thaw::Snapshot::Open(argv[2]);
  if (!snapshot.ok()) return Fail("open", snapshot.status());
  thaw::RestoreOptions options;
  options.backend = thaw::BackendKind::kEmulated;
  options.engine = thaw::RestoreEngine::kSharedBase;
  auto clone = snapshot->Restore(options);
  if (!clone.ok()) return Fail("restore", clone.status());
  auto again = (*clone)->Call("shout", "again");
  if (!again.ok()) return Fail("clone call", again.status());
  std::printf("%s %s\n", reply->c_str(), again->c_str());
  return 0;
}
