// hello: create a micro-VM on the best available backend, boot a function
// guest, call it, and print the reply and where the time went.
//
//   hello [GUEST.elf]      (default: the checksum example guest)
#include <cstdio>
#include <string>

#include "thaw/vm.h"

int main(int argc, char** argv) {
  std::string guest = argc > 1 ? argv[1] : THAW_DEFAULT_GUEST;

  thaw::VmConfig config;  // 64 MiB, one vCPU, backend chosen automatically
  auto vm = thaw::Vm::Create(config);
  if (!vm.ok()) {
    std::fprintf(stderr, "hello: %s\n", std::string(vm.status().message()).c_str());
    return 1;
  }
  std::printf("backend: %s\n", std::string(thaw::BackendName((*vm)->backend())).c_str());
  if (absl::Status kvm = thaw::CheckKvm(); !kvm.ok()) {
    std::printf("  (KVM not used: %s)\n", std::string(kvm.message()).c_str());
  }

  if (auto s = (*vm)->LoadGuest(guest); !s.ok()) {
    std::fprintf(stderr, "hello: %s\n", s.ToString().c_str());
    return 1;
  }
  if (auto s = (*vm)->Boot(); !s.ok()) {
    std::fprintf(stderr, "hello: boot: %s\n", s.ToString().c_str());
    return 1;
  }
  const std::string input = "hello, thaw";
  auto reply = (*vm)->Call("crc32", input);
  if (!reply.ok()) {
    std::fprintf(stderr, "hello: %s\n", reply.status().ToString().c_str());
    return 1;
  }
  std::printf("console: %s", (*vm)->console().c_str());
  std::printf("crc32(\"%s\") = %s\n", input.c_str(), reply->c_str());
  std::printf("--- phase report ---\n%s", (*vm)->report().ToString().c_str());
  return 0;
}
