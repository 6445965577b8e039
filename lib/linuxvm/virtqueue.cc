#include "lib/linuxvm/virtqueue.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "base/little_endian.h"

namespace thaw::linuxvm {
namespace {

constexpr uint16_t kDescNext = 1;
constexpr uint16_t kDescWrite = 2;
constexpr uint16_t kDescIndirect = 4;

}  // namespace

absl::StatusOr<bool> Virtqueue::Pop(const GuestMemory& memory, Chain& chain) {
  if (!ready()) return false;
  auto avail = memory.Slice(avail_address(), 4 + 2ull * kSize, "avail ring");
  if (!avail.ok()) return avail.status();
  // Acquire: the ring entries are read only after the index that covers
  // them (the driver writes entries, then the index). Safe: the index is
  // 2-aligned inside the checked slice (the ring sits at a page frame plus
  // 16 bytes per descriptor), and x86 is little-endian like the ring.
  const uint16_t avail_idx = __atomic_load_n(
      reinterpret_cast<const uint16_t*>(avail->data() + 2), __ATOMIC_ACQUIRE);
  if (avail_idx == next_avail_) return false;
  if (static_cast<uint16_t>(avail_idx - next_avail_) > kSize) {
    return absl::DataLossError(absl::StrFormat(
        "the driver's available index moved by %u, more than the queue's %u "
        "entries",
        static_cast<uint16_t>(avail_idx - next_avail_), kSize));
  }
  const uint16_t head = LoadLe16(avail->data() + 4 + 2 * (next_avail_ % kSize));
  ++next_avail_;
  if (head >= kSize) {
    return absl::DataLossError(absl::StrFormat(
        "chain head %u is past the queue's %u entries", head, kSize));
  }
  auto table = memory.Slice(desc_address(), 16ull * kSize, "descriptor table");
  if (!table.ok()) return table.status();
  chain.head = head;
  chain.buffers.clear();
  uint16_t index = head;
  for (int steps = 0;; ++steps) {
    if (steps >= kSize) {
      return absl::DataLossError(absl::StrFormat(
          "descriptor chain from %u is longer than the queue (a loop)", head));
    }
    const uint8_t* d = table->data() + 16 * index;
    const uint64_t address = LoadLe64(d);
    const uint32_t length = LoadLe32(d + 8);
    const uint16_t flags = LoadLe16(d + 12);
    const uint16_t next = LoadLe16(d + 14);
    if (flags & kDescIndirect) {
      return absl::DataLossError(
          "an indirect descriptor, which this device did not offer");
    }
    auto bytes = memory.Slice(address, length, "virtqueue buffer");
    if (!bytes.ok()) {
      return absl::DataLossError(absl::StrFormat(
          "descriptor %u points outside guest memory (0x%x, %u bytes)", index,
          address, length));
    }
    chain.buffers.push_back({*bytes, (flags & kDescWrite) != 0});
    if (!(flags & kDescNext)) break;
    if (next >= kSize) {
      return absl::DataLossError(absl::StrFormat(
          "descriptor %u's next (%u) is past the queue", index, next));
    }
    index = next;
  }
  return true;
}

absl::Status Virtqueue::Push(GuestMemory& memory, uint16_t head,
                             uint32_t written) {
  auto used = memory.Slice(used_address(), 4 + 8ull * kSize, "used ring");
  if (!used.ok()) return used.status();
  uint8_t* entry = used->data() + 4 + 8 * (next_used_ % kSize);
  StoreLe(entry, head, 4);
  StoreLe(entry + 4, written, 4);
  ++next_used_;
  // Release: the entry is visible before the index that publishes it.
  // Safe: the used ring starts on a page boundary.
  __atomic_store_n(reinterpret_cast<uint16_t*>(used->data() + 2), next_used_,
                   __ATOMIC_RELEASE);
  return absl::OkStatus();
}

}  // namespace thaw::linuxvm
