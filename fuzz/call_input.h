// The input shape of the fuzz targets that drive a host-side call layer
// (hypercalls, Linux system calls): a count byte, that many fixed-size call
// records, then the start of guest memory. Shared so that both read it the
// same way.
#ifndef THAW_FUZZ_CALL_INPUT_H_
#define THAW_FUZZ_CALL_INPUT_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

#include "lib/guest_memory.h"

namespace thaw::fuzz {

struct CallInput {
  int count = 0;                   // 1 .. max_calls
  const uint8_t* calls = nullptr;  // the records, possibly cut short
  size_t calls_size = 0;
  const uint8_t* image = nullptr;  // the rest: the start of guest memory
  size_t image_size = 0;
};

inline CallInput SplitCallInput(const uint8_t* data, size_t size, int max_calls,
                                size_t record) {
  CallInput in;
  if (size == 0) return in;
  in.count = 1 + data[0] % max_calls;
  ++data;
  --size;
  in.calls = data;
  in.calls_size = std::min<size_t>(size, in.count * record);
  in.image = data + in.calls_size;
  in.image_size = size - in.calls_size;
  return in;
}

// The next 8 bytes of a record (zero-padded at the end of the input).
inline uint64_t Take(const uint8_t*& data, size_t& size) {
  uint64_t v = 0;
  const size_t n = std::min<size_t>(size, 8);
  std::memcpy(&v, data, n);
  data += n;
  size -= n;
  return v;
}

// Guest memory of `size` bytes, made once per process and zeroed for each
// input, with its first `max_image` bytes (at most) taken from `in`.
inline GuestMemory* FreshGuestMemory(uint64_t size, const CallInput& in,
                                     size_t max_image) {
  static std::unique_ptr<GuestMemory> memory = [size] {
    auto m = GuestMemory::Create(size);
    return m.ok() ? *std::move(m) : nullptr;
  }();
  if (!memory) return nullptr;
  auto all = memory->Slice(0, size, "fuzz");
  if (!all.ok()) return nullptr;
  std::memset(all->data(), 0, size);
  std::memcpy(all->data(), in.image, std::min(in.image_size, max_image));
  return memory.get();
}

}  // namespace thaw::fuzz

#endif  // THAW_FUZZ_CALL_INPUT_H_
