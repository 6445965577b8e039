// An 8250/16550 UART at COM1 (I/O ports 0x3f8-0x3ff, ISA IRQ 4), the
// minimum the kernel's 8250 driver needs for a console: transmit (each byte
// handed to the output callback at once, so nothing piles up here), receive
// from a bounded input queue, the divisor latch, and the transmit-empty and
// data-ready interrupts. No FIFO emulation beyond what the driver probes.
//
// Thread safety: every method locks; the callbacks run under that lock and
// must not call back into the port.
#ifndef THAW_LIB_LINUXVM_SERIAL_PORT_H_
#define THAW_LIB_LINUXVM_SERIAL_PORT_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>

#include "absl/strings/string_view.h"

namespace thaw::linuxvm {

class SerialPort {
 public:
  static constexpr uint16_t kBase = 0x3f8;
  static constexpr uint16_t kPorts = 8;
  static constexpr int kIrq = 4;
  // Input bytes held for the guest; more are refused.
  static constexpr size_t kInputLimit = 64 << 10;

  // `output` gets each byte the guest transmits; `pulse_irq` raises IRQ 4.
  SerialPort(std::function<void(char)> output, std::function<void()> pulse_irq);

  // `offset` is port - kBase.
  void Write(uint16_t offset, uint8_t value);
  uint8_t Read(uint16_t offset);

  // Queues bytes for the guest to read; returns how many were taken.
  size_t QueueInput(absl::string_view bytes);

  // The register state a snapshot keeps (the input queue included).
  struct State {
    uint8_t ier = 0, lcr = 0, mcr = 0, scr = 0, dll = 0x0c, dlm = 0;
    bool thr_empty_interrupt = false;
    std::string input;
  };
  State Save() const;
  void Restore(const State& state);

 private:
  void UpdateIrqLocked();

  std::function<void(char)> output_;
  std::function<void()> pulse_irq_;
  mutable std::mutex mutex_;
  State state_;
  std::deque<char> input_;
};

}  // namespace thaw::linuxvm

#endif  // THAW_LIB_LINUXVM_SERIAL_PORT_H_
