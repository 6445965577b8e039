#include "lib/linuxvm/virtio_console.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace thaw::linuxvm {
namespace {

// Legacy virtio-PCI register offsets (no MSI-X, so the device-specific
// configuration starts at 20).
constexpr uint16_t kHostFeatures = 0;
constexpr uint16_t kGuestFeatures = 4;
constexpr uint16_t kQueuePfn = 8;
constexpr uint16_t kQueueSize = 12;
constexpr uint16_t kQueueSelect = 14;
constexpr uint16_t kQueueNotify = 16;
constexpr uint16_t kStatus = 18;
constexpr uint16_t kIsr = 19;
constexpr uint16_t kDeviceConfig = 20;
constexpr uint8_t kStatusDriverOk = 4;
constexpr uint8_t kStatusNeedsReset = 0x40;
constexpr uint16_t kReceiveQueue = 0;
constexpr uint16_t kTransmitQueue = 1;

}  // namespace

VirtioConsole::VirtioConsole(GuestMemory& memory,
                             std::function<void(absl::string_view)> output,
                             std::function<void()> pulse_irq,
                             std::function<void(const absl::Status&)> failed)
    : memory_(memory),
      output_(std::move(output)),
      pulse_irq_(std::move(pulse_irq)),
      failed_(std::move(failed)) {}

void VirtioConsole::FailLocked(const absl::Status& error) {
  if (status_ & kStatusNeedsReset) return;
  status_ |= kStatusNeedsReset;
  failed_(absl::Status(error.code(),
                       absl::StrCat("virtio console: ", error.message())));
}

void VirtioConsole::Write(uint16_t offset, uint32_t size, uint32_t value) {
  std::lock_guard<std::mutex> lock(mutex_);
  switch (offset) {
    case kGuestFeatures:
      if (size == 4) guest_features_ = value;
      return;
    case kQueuePfn:
      if (size == 4 && queue_select_ < 2) {
        queues_[queue_select_].SetPageFrame(value);
      }
      return;
    case kQueueSelect:
      if (size == 2) queue_select_ = static_cast<uint16_t>(value);
      return;
    case kQueueNotify:
      if (size != 2 || (status_ & kStatusNeedsReset)) return;
      if (value == kReceiveQueue) ServeReceiveLocked();
      if (value == kTransmitQueue) ServeTransmitLocked();
      return;
    case kStatus:
      if (size != 1) return;
      status_ = static_cast<uint8_t>(value);
      if (status_ == 0) {  // reset
        guest_features_ = 0;
        isr_ = 0;
        queues_[0].SetPageFrame(0);
        queues_[1].SetPageFrame(0);
      }
      return;
    default:
      return;
  }
}

uint32_t VirtioConsole::Read(uint16_t offset, uint32_t size) {
  std::lock_guard<std::mutex> lock(mutex_);
  switch (offset) {
    case kHostFeatures:
      return 0;
    case kGuestFeatures:
      return guest_features_;
    case kQueuePfn:
      return queue_select_ < 2 ? queues_[queue_select_].page_frame() : 0;
    case kQueueSize:
      return queue_select_ < 2 ? Virtqueue::kSize : 0;
    case kQueueSelect:
      return queue_select_;
    case kStatus:
      return status_;
    case kIsr: {
      // Reading the ISR acknowledges it.
      const uint8_t isr = isr_;
      isr_ = 0;
      return isr;
    }
    default:
      // Device configuration (cols, rows, max_nr_ports, emerg_wr): not
      // offered by any feature bit, so zeros.
      (void)size;
      return offset >= kDeviceConfig ? 0 : 0xffffffff;
  }
}

void VirtioConsole::ServeReceiveLocked() {
  Virtqueue& q = queues_[kReceiveQueue];
  bool used = false;
  while (!pending_.empty()) {
    Virtqueue::Chain chain;
    auto got = q.Pop(memory_, chain);
    if (!got.ok()) return FailLocked(got.status());
    if (!*got) break;
    uint32_t written = 0;
    for (const Virtqueue::Buffer& b : chain.buffers) {
      if (!b.device_writes) continue;
      const size_t n = std::min(b.bytes.size(), pending_.size() - written);
      std::memcpy(b.bytes.data(), pending_.data() + written, n);
      written += n;
      if (written == pending_.size()) break;
    }
    pending_.erase(0, written);
    if (absl::Status s = q.Push(memory_, chain.head, written); !s.ok()) {
      return FailLocked(s);
    }
    used = true;
  }
  if (used) {
    isr_ |= 1;
    pulse_irq_();
  }
}

void VirtioConsole::ServeTransmitLocked() {
  Virtqueue& q = queues_[kTransmitQueue];
  bool used = false;
  for (;;) {
    Virtqueue::Chain chain;
    auto got = q.Pop(memory_, chain);
    if (!got.ok()) return FailLocked(got.status());
    if (!*got) break;
    for (const Virtqueue::Buffer& b : chain.buffers) {
      if (b.device_writes) continue;
      output_(absl::string_view(reinterpret_cast<const char*>(b.bytes.data()),
                                b.bytes.size()));
    }
    if (absl::Status s = q.Push(memory_, chain.head, 0); !s.ok()) {
      return FailLocked(s);
    }
    used = true;
  }
  if (used) {
    isr_ |= 1;
    pulse_irq_();
  }
}

size_t VirtioConsole::Send(absl::string_view bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  const size_t room = kPendingLimit - std::min(kPendingLimit, pending_.size());
  const size_t taken = std::min(room, bytes.size());
  pending_.append(bytes.data(), taken);
  if ((status_ & kStatusDriverOk) && !(status_ & kStatusNeedsReset)) {
    ServeReceiveLocked();
  }
  return taken;
}

size_t VirtioConsole::pending() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pending_.size();
}

bool VirtioConsole::driver_ready() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return (status_ & kStatusDriverOk) && !(status_ & kStatusNeedsReset) &&
         queues_[kReceiveQueue].ready();
}

VirtioConsole::State VirtioConsole::Save() const {
  std::lock_guard<std::mutex> lock(mutex_);
  State s;
  s.guest_features = guest_features_;
  s.queue_select = queue_select_;
  s.status = status_;
  s.isr = isr_;
  s.queues[0] = queues_[0].Save();
  s.queues[1] = queues_[1].Save();
  s.pending = pending_;
  return s;
}

void VirtioConsole::Restore(const State& s) {
  std::lock_guard<std::mutex> lock(mutex_);
  guest_features_ = s.guest_features;
  queue_select_ = s.queue_select;
  status_ = s.status;
  isr_ = s.isr;
  queues_[0].Restore(s.queues[0]);
  queues_[1].Restore(s.queues[1]);
  pending_ = s.pending.substr(0, kPendingLimit);
}

}  // namespace thaw::linuxvm
