// Reading an untrusted ELF file's bytes: the bounds check and the unaligned
// read both ELF loaders (function guests, Linux programs) use.
#ifndef THAW_LIB_ELF_BYTES_H_
#define THAW_LIB_ELF_BYTES_H_

#include <elf.h>

#include <cstdint>
#include <cstring>

#include "absl/types/span.h"

namespace thaw {

// True if [offset, offset + size) lies inside a buffer of `total` bytes
// (written so that no sum can overflow).
inline bool InBounds(uint64_t offset, uint64_t size, uint64_t total) {
  return offset <= total && size <= total - offset;
}

// A T read from `bytes` at `offset`; the caller checked the bounds.
template <typename T>
T ReadAt(absl::Span<const uint8_t> bytes, uint64_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

// The ELF header of `elf` if it is a little-endian x86-64 ELF64 file, else
// the reason it is not (for the caller's error, which names the file).
inline const char* ReadElf64Header(absl::Span<const uint8_t> elf,
                                   Elf64_Ehdr* header) {
  if (elf.size() < sizeof(Elf64_Ehdr)) return "too short for an ELF header";
  *header = ReadAt<Elf64_Ehdr>(elf, 0);
  if (std::memcmp(header->e_ident, ELFMAG, SELFMAG) != 0) {
    return "not an ELF file (bad magic)";
  }
  if (header->e_ident[EI_CLASS] != ELFCLASS64 ||
      header->e_ident[EI_DATA] != ELFDATA2LSB ||
      header->e_machine != EM_X86_64) {
    return "not a little-endian x86-64 ELF64 file";
  }
  return nullptr;
}

}  // namespace thaw

#endif  // THAW_LIB_ELF_BYTES_H_
