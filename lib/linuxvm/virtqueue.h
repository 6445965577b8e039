// One split virtqueue in the legacy layout (virtio 1.0 spec, "Legacy
// Interfaces", 2.4.2): descriptor table, available ring and, on the next
// 4 KiB boundary, the used ring, all at the page frame the driver wrote.
// Every address the guest supplies is checked through GuestMemory; a
// descriptor outside guest memory, a chain longer than the queue (a loop)
// or an index that jumps past the queue size is an error for this queue,
// never a host crash.
//
// Thread safety: none; the owning device serializes access.
#ifndef THAW_LIB_LINUXVM_VIRTQUEUE_H_
#define THAW_LIB_LINUXVM_VIRTQUEUE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "lib/guest_memory.h"

namespace thaw::linuxvm {

class Virtqueue {
 public:
  static constexpr uint16_t kSize = 256;  // entries; fixed by the device

  // One buffer of a descriptor chain.
  struct Buffer {
    absl::Span<uint8_t> bytes;  // checked host view of guest memory
    bool device_writes;         // VIRTQ_DESC_F_WRITE
  };
  struct Chain {
    uint16_t head;
    std::vector<Buffer> buffers;
  };

  // The driver wrote the queue's page frame number (0 resets the queue).
  void SetPageFrame(uint32_t pfn) {
    pfn_ = pfn;
    next_avail_ = 0;
    next_used_ = 0;
  }
  uint32_t page_frame() const { return pfn_; }
  bool ready() const { return pfn_ != 0; }

  // Takes the next chain the driver made available into `chain`: true, or
  // false when there is none. DataLoss naming the fault for a broken ring.
  absl::StatusOr<bool> Pop(const GuestMemory& memory, Chain& chain);
  // Returns `head` to the driver with `written` bytes filled in.
  absl::Status Push(GuestMemory& memory, uint16_t head, uint32_t written);

  // What a snapshot keeps.
  struct State {
    uint32_t pfn = 0;
    uint16_t next_avail = 0, next_used = 0;
  };
  State Save() const { return {pfn_, next_avail_, next_used_}; }
  void Restore(const State& s) {
    pfn_ = s.pfn;
    next_avail_ = s.next_avail;
    next_used_ = s.next_used;
  }

 private:
  uint64_t desc_address() const { return uint64_t{pfn_} << 12; }
  uint64_t avail_address() const { return desc_address() + 16ull * kSize; }
  uint64_t used_address() const {
    return (avail_address() + 6 + 2ull * kSize + 4095) & ~4095ull;
  }

  uint32_t pfn_ = 0;
  uint16_t next_avail_ = 0;  // the next available-ring entry to take
  uint16_t next_used_ = 0;   // the used ring's index as last published
};

}  // namespace thaw::linuxvm

#endif  // THAW_LIB_LINUXVM_VIRTQUEUE_H_
