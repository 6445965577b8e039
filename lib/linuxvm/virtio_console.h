// A virtio console (device type 3) behind the legacy virtio-PCI transport
// (an I/O BAR, virtio 1.0 spec 4.1.4.8), with one port and no feature bits:
// the guest's virtio_console driver makes it /dev/hvc0. It is the byte pipe
// between the host and the agent in the guest: receiveq (0) carries host
// bytes in, transmitq (1) carries guest bytes out.
//
// Bounded: at most kPendingLimit host bytes wait for guest buffers (Send
// takes what fits); guest bytes are handed to the output callback as each
// chain arrives, and the callback bounds what it keeps. A broken ring (a
// descriptor outside memory, a loop) marks the device failed (status bit
// DEVICE_NEEDS_RESET) and stops it; the machine reports the error.
//
// Thread safety: every method locks; the callbacks run under that lock.
#ifndef THAW_LIB_LINUXVM_VIRTIO_CONSOLE_H_
#define THAW_LIB_LINUXVM_VIRTIO_CONSOLE_H_

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "lib/guest_memory.h"
#include "lib/linuxvm/virtqueue.h"

namespace thaw::linuxvm {

class VirtioConsole {
 public:
  static constexpr uint16_t kRegisterBytes = 0x40;  // the I/O BAR's size
  static constexpr size_t kPendingLimit = 4 << 20;

  // `output` gets the guest's bytes; `pulse_irq` raises the device's
  // interrupt; `failed` is told once when the device breaks.
  VirtioConsole(GuestMemory& memory,
                std::function<void(absl::string_view)> output,
                std::function<void()> pulse_irq,
                std::function<void(const absl::Status&)> failed);

  // Accesses to the I/O BAR at `offset` of `size` bytes (1, 2 or 4).
  void Write(uint16_t offset, uint32_t size, uint32_t value);
  uint32_t Read(uint16_t offset, uint32_t size);

  // Queues host bytes for the guest; returns how many were taken (fewer
  // than given when kPendingLimit is reached).
  size_t Send(absl::string_view bytes);
  // Host bytes not yet taken by the guest.
  size_t pending() const;
  // The driver is up (DRIVER_OK) and has given receive buffers.
  bool driver_ready() const;

  struct State {
    uint32_t guest_features = 0;
    uint16_t queue_select = 0;
    uint8_t status = 0, isr = 0;
    Virtqueue::State queues[2];
    std::string pending;
  };
  State Save() const;
  void Restore(const State& state);

 private:
  void ServeReceiveLocked();
  void ServeTransmitLocked();
  void FailLocked(const absl::Status& error);

  GuestMemory& memory_;
  std::function<void(absl::string_view)> output_;
  std::function<void()> pulse_irq_;
  std::function<void(const absl::Status&)> failed_;
  mutable std::mutex mutex_;
  uint32_t guest_features_ = 0;
  uint16_t queue_select_ = 0;
  uint8_t status_ = 0;
  uint8_t isr_ = 0;
  Virtqueue queues_[2];
  std::string pending_;  // host bytes waiting for receive buffers
};

}  // namespace thaw::linuxvm

#endif  // THAW_LIB_LINUXVM_VIRTIO_CONSOLE_H_
