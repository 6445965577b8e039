// Loads a function-guest ELF image into guest memory.
//
// Function guests are static x86-64 executables linked at THAW_IMAGE_BASE
// (guest/guest.ld). The file is untrusted: every offset, size and address
// in it is checked against the file and against the load window before use,
// and any violation is InvalidArgument naming the image and what is wrong.
#ifndef THAW_LIB_ELF_LOADER_H_
#define THAW_LIB_ELF_LOADER_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "lib/guest_memory.h"

namespace thaw {

struct LoadedImage {
  uint64_t entry = 0;
  uint64_t image_end = 0;  // one past the highest loaded byte
  absl::flat_hash_map<std::string, uint64_t> symbols;
};

// Copies the PT_LOAD segments of `elf` into `memory`, which they must fit
// inside [window_begin, window_end), and zero-fills their .bss.
absl::StatusOr<LoadedImage> LoadElf(absl::Span<const uint8_t> elf,
                                    absl::string_view name, GuestMemory& memory,
                                    uint64_t window_begin, uint64_t window_end);

}  // namespace thaw

#endif  // THAW_LIB_ELF_LOADER_H_
