// Reading an untrusted ELF file's bytes: the bounds check and the unaligned
// read both ELF loaders (function guests, Linux programs) use.
#ifndef THAW_LIB_ELF_BYTES_H_
#define THAW_LIB_ELF_BYTES_H_

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

}  // namespace thaw

#endif  // THAW_LIB_ELF_BYTES_H_
