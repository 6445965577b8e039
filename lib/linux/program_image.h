// Loading a Linux x86-64 program into guest memory, per the System V ABI:
// its PT_LOAD segments at their addresses (static executables) or at a
// load bias (static-PIE), and the initial stack the kernel would build
// (argc, argv, envp, auxv with AT_PHDR, AT_PHENT, AT_PHNUM, AT_ENTRY,
// AT_BASE, AT_PAGESZ, AT_RANDOM, AT_HWCAP, AT_CLKTCK, AT_SECURE...).
//
// Guest memory is identity-mapped, so a program's virtual addresses are
// guest-physical ones: every segment must lie inside [window_begin,
// window_end) (above thaw's host-owned first 2 MiB). The file is untrusted:
// every offset, size and address is checked, and any violation is
// InvalidArgument naming the program and what is wrong.
#ifndef THAW_LIB_LINUX_PROGRAM_IMAGE_H_
#define THAW_LIB_LINUX_PROGRAM_IMAGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "lib/guest_memory.h"

namespace thaw::linux_abi {

struct ProgramImage {
  uint64_t entry = 0;  // where the program starts (bias applied)
  uint64_t bias = 0;   // 0 for ET_EXEC
  uint64_t phdr = 0;   // address of the program headers in memory
  uint16_t phent = 0, phnum = 0;
  uint64_t image_begin = 0, image_end = 0;  // page-aligned
  // PT_INTERP: the dynamic loader this program needs ("" if static).
  std::string interpreter;
};

// The page-aligned span [lowest, highest) of `elf`'s PT_LOAD segments, for
// placing an ET_DYN object (the interpreter) before loading it.
absl::StatusOr<uint64_t> LoadSpan(absl::Span<const uint8_t> elf,
                                  absl::string_view name);

// Where a static-PIE program is placed (its first segment's address).
inline constexpr uint64_t kPieBase = 0x400000;

// An ET_DYN object's first segment goes to `dyn_base`.
absl::StatusOr<ProgramImage> LoadProgram(
    absl::Span<const uint8_t> elf, absl::string_view name, GuestMemory& memory,
    uint64_t window_begin, uint64_t window_end, uint64_t dyn_base = kPieBase);

// Builds the initial stack below `stack_top` and returns the program's
// initial RSP (16-byte aligned, pointing at argc). `random` (16 bytes)
// becomes AT_RANDOM's bytes; `interpreter_base` is AT_BASE (0 for a static
// program). Fails if it does not fit above `stack_limit`.
absl::StatusOr<uint64_t> BuildInitialStack(
    GuestMemory& memory, uint64_t stack_top, uint64_t stack_limit,
    const ProgramImage& image, uint64_t interpreter_base,
    const std::vector<std::string>& argv, const std::vector<std::string>& envp,
    absl::Span<const uint8_t> random);

}  // namespace thaw::linux_abi

#endif  // THAW_LIB_LINUX_PROGRAM_IMAGE_H_
