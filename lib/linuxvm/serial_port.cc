#include "lib/linuxvm/serial_port.h"

#include <string>

namespace thaw::linuxvm {
namespace {

// Register offsets and bits (the 16550 data sheet; Linux's serial_reg.h).
constexpr uint16_t kData = 0;  // RBR/THR, or DLL with DLAB
constexpr uint16_t kIer = 1;   // or DLM with DLAB
constexpr uint16_t kIir = 2;
constexpr uint16_t kLcr = 3;
constexpr uint16_t kMcr = 4;
constexpr uint16_t kLsr = 5;
constexpr uint16_t kMsr = 6;
constexpr uint16_t kScr = 7;
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kIerRdi = 0x01;   // received data available
constexpr uint8_t kIerThri = 0x02;  // transmitter holding register empty
constexpr uint8_t kIirNone = 0x01;
constexpr uint8_t kIirThri = 0x02;
constexpr uint8_t kIirRdi = 0x04;
constexpr uint8_t kIirFifoBits = 0xc0;
constexpr uint8_t kLsrDr = 0x01;
constexpr uint8_t kLsrThre = 0x20;
constexpr uint8_t kLsrTemt = 0x40;
constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kMsrDcdDsrCts = 0xb0;

}  // namespace

SerialPort::SerialPort(std::function<void(char)> output,
                       std::function<void()> pulse_irq)
    : output_(std::move(output)), pulse_irq_(std::move(pulse_irq)) {}

void SerialPort::UpdateIrqLocked() {
  const bool rx = (state_.ier & kIerRdi) && !input_.empty();
  const bool tx = (state_.ier & kIerThri) && state_.thr_empty_interrupt;
  if (rx || tx) pulse_irq_();
}

void SerialPort::Write(uint16_t offset, uint8_t value) {
  std::lock_guard<std::mutex> lock(mutex_);
  const bool dlab = state_.lcr & kLcrDlab;
  switch (offset) {
    case kData:
      if (dlab) {
        state_.dll = value;
        return;
      }
      if (state_.mcr & kMcrLoop) {
        if (input_.size() < kInputLimit)
          input_.push_back(static_cast<char>(value));
      } else {
        output_(static_cast<char>(value));
      }
      // The byte left at once: the holding register is empty again.
      state_.thr_empty_interrupt = true;
      UpdateIrqLocked();
      return;
    case kIer:
      if (dlab) {
        state_.dlm = value;
        return;
      }
      state_.ier = value & 0x0f;
      // Enabling THRI with an empty register interrupts at once (the
      // driver's start_tx relies on it).
      if (state_.ier & kIerThri) state_.thr_empty_interrupt = true;
      UpdateIrqLocked();
      return;
    case kLcr:
      state_.lcr = value;
      return;
    case kMcr:
      state_.mcr = value;
      return;
    case kScr:
      state_.scr = value;
      return;
    default:
      return;  // FCR and read-only registers
  }
}

uint8_t SerialPort::Read(uint16_t offset) {
  std::lock_guard<std::mutex> lock(mutex_);
  const bool dlab = state_.lcr & kLcrDlab;
  switch (offset) {
    case kData: {
      if (dlab) return state_.dll;
      if (input_.empty()) return 0;
      const uint8_t byte = static_cast<uint8_t>(input_.front());
      input_.pop_front();
      UpdateIrqLocked();
      return byte;
    }
    case kIer:
      return dlab ? state_.dlm : state_.ier;
    case kIir:
      // Received data outranks transmit-empty; reading IIR with THRI
      // pending acknowledges it.
      if ((state_.ier & kIerRdi) && !input_.empty()) {
        return kIirRdi | kIirFifoBits;
      }
      if ((state_.ier & kIerThri) && state_.thr_empty_interrupt) {
        state_.thr_empty_interrupt = false;
        return kIirThri | kIirFifoBits;
      }
      return kIirNone | kIirFifoBits;
    case kLcr:
      return state_.lcr;
    case kMcr:
      return state_.mcr;
    case kLsr:
      return kLsrThre | kLsrTemt | (input_.empty() ? 0 : kLsrDr);
    case kMsr:
      return (state_.mcr & kMcrLoop) ? 0 : kMsrDcdDsrCts;
    case kScr:
      return state_.scr;
    default:
      return 0xff;
  }
}

size_t SerialPort::QueueInput(absl::string_view bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  const size_t room = kInputLimit - std::min(kInputLimit, input_.size());
  const size_t taken = std::min(room, bytes.size());
  input_.insert(input_.end(), bytes.begin(), bytes.begin() + taken);
  if (taken > 0) UpdateIrqLocked();
  return taken;
}

SerialPort::State SerialPort::Save() const {
  std::lock_guard<std::mutex> lock(mutex_);
  State s = state_;
  s.input.assign(input_.begin(), input_.end());
  return s;
}

void SerialPort::Restore(const State& state) {
  std::lock_guard<std::mutex> lock(mutex_);
  state_ = state;
  state_.input.clear();
  const size_t n = std::min(kInputLimit, state.input.size());
  input_.assign(state.input.begin(), state.input.begin() + n);
}

}  // namespace thaw::linuxvm
