#include "lib/linuxvm/pci_config.h"

#include "lib/linuxvm/boot_image.h"
#include "lib/linuxvm/virtio_console.h"

namespace thaw::linuxvm {
namespace {

constexpr uint32_t kEnable = 0x80000000;
constexpr uint32_t kAbsent = 0xffffffff;
// The I/O BAR decodes kRegisterBytes; its low bit says "I/O space".
constexpr uint32_t kBarSizeMask = ~uint32_t{VirtioConsole::kRegisterBytes - 1};

}  // namespace

uint32_t PciConfig::ReadDword(int slot, int function, int reg) const {
  if (function != 0) return kAbsent;
  if (slot == 0) {  // host bridge: Intel 440FX ids, class 06 00 00
    switch (reg) {
      case 0x00:
        return 0x12378086;
      case 0x08:
        return 0x06000000;
      default:
        return 0;
    }
  }
  if (slot == kVirtioPciSlot) {  // virtio console, legacy ids
    switch (reg) {
      case 0x00:
        return 0x10031af4;  // device 0x1003, vendor 0x1af4
      case 0x04:
        return state_.virtio_command;
      case 0x08:
        return 0x07800000;  // class: communication, other
      case 0x10:
        return state_.virtio_bar;
      case 0x2c:
        return 0x00031af4;  // subsystem: virtio type 3
      case 0x3c:
        return 0x0100 | state_.virtio_interrupt_line;  // INTA
      default:
        return 0;
    }
  }
  return kAbsent;
}

void PciConfig::WriteDword(int slot, int function, int reg, uint32_t value,
                           uint32_t mask) {
  if (function != 0 || slot != kVirtioPciSlot) return;
  auto merge = [&](uint32_t old) { return (old & ~mask) | (value & mask); };
  switch (reg) {
    case 0x04:
      state_.virtio_command =
          static_cast<uint16_t>(merge(state_.virtio_command));
      return;
    case 0x10:
      // Writing all ones sizes the BAR: it then reads back its size mask.
      state_.virtio_bar =
          (merge(state_.virtio_bar) & kBarSizeMask & 0xffff) | 1;
      if ((value & mask) == mask) state_.virtio_bar = kBarSizeMask | 1;
      return;
    case 0x3c:
      state_.virtio_interrupt_line =
          static_cast<uint8_t>(merge(state_.virtio_interrupt_line));
      return;
    default:
      return;
  }
}

void PciConfig::Write(uint16_t port, uint32_t size, uint32_t value) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (port == kAddressPort) {
    // Only dword writes select an address: the byte at 0xcfb is another
    // register, which Linux's mechanism probe writes.
    if (size == 4) state_.address = value;
    return;
  }
  if (port < kDataPort || port >= kDataPort + 4 ||
      !(state_.address & kEnable)) {
    return;
  }
  const int bus = (state_.address >> 16) & 0xff;
  if (bus != 0) return;
  const int shift = 8 * (port - kDataPort);
  const uint32_t width = size == 4 ? 0xffffffff : (1u << (8 * size)) - 1;
  WriteDword((state_.address >> 11) & 0x1f, (state_.address >> 8) & 7,
             state_.address & 0xfc, value << shift, width << shift);
}

uint32_t PciConfig::Read(uint16_t port, uint32_t size) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (port == kAddressPort) return size == 4 ? state_.address : 0;
  if (port < kDataPort || port >= kDataPort + 4 ||
      !(state_.address & kEnable)) {
    return 0xffffffff;
  }
  const int bus = (state_.address >> 16) & 0xff;
  if (bus != 0) return 0xffffffff;
  const uint32_t dword =
      ReadDword((state_.address >> 11) & 0x1f, (state_.address >> 8) & 7,
                state_.address & 0xfc);
  return dword >> (8 * (port - kDataPort));
}

uint16_t PciConfig::virtio_io_base() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<uint16_t>(state_.virtio_bar & 0xfffc);
}

PciConfig::State PciConfig::Save() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_;
}

void PciConfig::Restore(const State& state) {
  std::lock_guard<std::mutex> lock(mutex_);
  state_ = state;
}

}  // namespace thaw::linuxvm
