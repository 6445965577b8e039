// PCI configuration space through configuration mechanism #1 (I/O ports
// 0xcf8 address, 0xcfc-0xcff data), for a bus 0 that holds a host bridge
// in slot 0 (Linux's PCI probe looks for one before it trusts the
// mechanism) and the virtio console in slot 1 with its I/O BAR. Without
// ACPI, Linux routes the device's INTA through the MP table's PCI entry.
// Debian's kernel is built without virtio-mmio command-line devices, so
// PCI is how a stock kernel finds a virtio device with no ACPI tables
// (doc/linux-vm.md).
//
// Thread safety: every method locks.
#ifndef THAW_LIB_LINUXVM_PCI_CONFIG_H_
#define THAW_LIB_LINUXVM_PCI_CONFIG_H_

#include <cstdint>
#include <mutex>

namespace thaw::linuxvm {

class PciConfig {
 public:
  static constexpr uint16_t kAddressPort = 0xcf8;
  static constexpr uint16_t kDataPort = 0xcfc;
  // Where the virtio console's I/O BAR is placed (the guest may move it).
  static constexpr uint16_t kVirtioIoBase = 0xc000;

  void Write(uint16_t port, uint32_t size, uint32_t value);
  uint32_t Read(uint16_t port, uint32_t size);

  // The virtio console's I/O BAR as the guest last programmed it.
  uint16_t virtio_io_base() const;

  struct State {
    uint32_t address = 0;
    uint32_t virtio_bar = kVirtioIoBase | 1;
    uint16_t virtio_command = 0;
    uint8_t virtio_interrupt_line = 0;
  };
  State Save() const;
  void Restore(const State& state);

 private:
  uint32_t ReadDword(int slot, int function, int reg) const;
  void WriteDword(int slot, int function, int reg, uint32_t value,
                  uint32_t mask);

  mutable std::mutex mutex_;
  State state_;
};

}  // namespace thaw::linuxvm

#endif  // THAW_LIB_LINUXVM_PCI_CONFIG_H_
