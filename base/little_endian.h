// Little-endian loads and stores for the fixed-layout snapshot header.
#ifndef THAW_BASE_LITTLE_ENDIAN_H_
#define THAW_BASE_LITTLE_ENDIAN_H_

#include <cstdint>

namespace thaw {

inline uint64_t LoadLe(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline uint16_t LoadLe16(const uint8_t* p) { return LoadLe(p, 2); }
inline uint32_t LoadLe32(const uint8_t* p) { return LoadLe(p, 4); }
inline uint64_t LoadLe64(const uint8_t* p) { return LoadLe(p, 8); }

inline void StoreLe(uint8_t* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace thaw

#endif  // THAW_BASE_LITTLE_ENDIAN_H_
