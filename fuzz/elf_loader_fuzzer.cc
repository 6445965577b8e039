// Fuzz target: the ELF loaders, for function guests (LoadElf) and for Linux
// programs (LoadSpan, LoadProgram), with the input as the ELF file and a
// small guest memory as the target. A crash, a sanitizer report or a write
// outside the guest memory is a finding; an error status is expected.
#include <cstdint>
#include <memory>

#include "lib/elf_loader.h"
#include "lib/guest_memory.h"
#include "lib/linux/program_image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::unique_ptr<thaw::GuestMemory> memory = [] {
    auto m = thaw::GuestMemory::Create(8 << 20);
    return m.ok() ? *std::move(m) : nullptr;
  }();
  if (!memory) return 0;
  absl::Span<const uint8_t> elf(data, size);
  (void)thaw::LoadElf(elf, "fuzz", *memory, 0x200000, 6 << 20);
  (void)thaw::linux_abi::LoadSpan(elf, "fuzz");
  (void)thaw::linux_abi::LoadProgram(elf, "fuzz", *memory, 0x100000, 8 << 20);
  return 0;
}
