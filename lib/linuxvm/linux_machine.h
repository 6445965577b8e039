// LinuxMachine: a KVM virtual machine built the way Firecracker builds one
// for a Linux guest, beside the function-guest backend (which is one vCPU
// driven call by call). It owns guest memory, the VM with its in-kernel
// irqchip and PIT, one thread per vCPU running KVM_RUN, and the devices a
// stock kernel needs: the COM1 UART, an i8042 whose reset line ends the
// machine, PCI configuration space and the virtio console to the agent.
// The vCPU loop only dispatches port I/O to those devices.
//
// The machine stops, once, for the first of: the guest resets it (i8042 or
// KVM's reset event), a triple fault, a KVM error, a broken device, or
// RequestStop(); `stopped` is called then, on the thread that saw it.
//
// Thread safety: every public method may be called from any thread.
#ifndef THAW_LIB_LINUXVM_LINUX_MACHINE_H_
#define THAW_LIB_LINUXVM_LINUX_MACHINE_H_

#include <linux/kvm.h>
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lib/guest_memory.h"
#include "lib/linuxvm/boot_image.h"
#include "lib/linuxvm/pci_config.h"
#include "lib/linuxvm/serial_port.h"
#include "lib/linuxvm/virtio_console.h"
#include "snapshot/manifest.pb.h"

namespace thaw::linuxvm {

class LinuxMachine {
 public:
  struct Options {
    // Guest memory: the caller's mapping (a snapshot engine's, or fresh
    // anonymous memory), kept mapped for the machine's life.
    uint8_t* memory = nullptr;
    uint64_t memory_size = 0;
    int vcpus = 1;
  };
  // Where the machine's output and its end go. Each runs on a vCPU thread
  // (or the thread that sent host bytes) under a device lock: it must not
  // call back into the machine.
  struct Sinks {
    std::function<void(char)> serial_output;
    std::function<void(absl::string_view)> agent_output;
    std::function<void()> stopped;
  };
  enum class End {
    kRunning,
    kReset,  // the guest reset the machine (reboot, or panic=-1)
    kTripleFault,
    kError,  // KVM or a device failed
    kStoppedByHost,
  };

  // Unavailable without a usable /dev/kvm or a capability the machine
  // needs (named).
  static absl::StatusOr<std::unique_ptr<LinuxMachine>> Create(
      const Options& options, Sinks sinks);
  ~LinuxMachine();
  LinuxMachine(const LinuxMachine&) = delete;
  LinuxMachine& operator=(const LinuxMachine&) = delete;

  GuestMemory& memory() { return *memory_; }
  int vcpus() const { return static_cast<int>(vcpus_.size()); }

  // The boot vCPU's registers for the kernel's 64-bit entry. Before Start.
  absl::Status SetEntryState(const EntryState& entry);
  // Starts one thread per vCPU.
  absl::Status Start();

  // Stops every vCPU and holds it until Resume; returns when all are held,
  // each with its last exit completed (KVM finishes an I/O instruction only
  // when KVM_RUN is entered again, so a vCPU re-enters with immediate_exit
  // before it is held: no exit is in flight in a held machine).
  // Idempotent.
  void Pause();
  void Resume();
  bool paused() const;

  // The whole machine's state (every vCPU, the irqchip, PIT, clock and the
  // devices) into `out`. FailedPrecondition unless paused; tells the guest
  // it was stopped (KVM_KVMCLOCK_CTRL) so it reports no soft lockup.
  absl::Status SaveState(snapshot::proto::LinuxMachine& out);
  // Puts `state` back, before Start. DataLoss naming the field for a state
  // of the wrong shape; an error naming the ioctl where KVM refuses it.
  absl::Status RestoreState(const snapshot::proto::LinuxMachine& state);

  // Where each vCPU is ("vCPU 0 at RIP 0x..., halted"), for messages about
  // a guest that does not answer. Pauses the machine for the look.
  std::string DescribeVcpus();

  void RequestStop(absl::Status why);
  End end() const;
  // Why the machine stopped; OK while it runs.
  absl::Status end_status() const;

  // The host end of the agent's channel.
  VirtioConsole& agent_port() { return *agent_port_; }
  SerialPort& serial() { return *serial_; }

 private:
  struct Vcpu {
    int fd = -1;
    kvm_run* run = nullptr;
    size_t run_size = 0;
    pthread_t thread{};
    std::thread runner;
  };

  LinuxMachine(Sinks sinks) : sinks_(std::move(sinks)) {}
  absl::Status Build(const Options& options);
  absl::Status SetUpVcpu(int index);
  absl::Status SaveVcpu(int index, snapshot::proto::LinuxVcpu& out);
  absl::Status RestoreVcpu(int index, const snapshot::proto::LinuxVcpu& in);
  // The MSR indices KVM saves and restores (KVM_GET_MSR_INDEX_LIST).
  absl::StatusOr<std::vector<uint32_t>> MsrIndices();
  void RunVcpu(int index);
  void HandleIo(kvm_run& run);
  uint32_t PortRead(uint16_t port, uint32_t size);
  void PortWrite(uint16_t port, uint32_t size, uint32_t value);
  void PulseIrq(int irq);
  void Stop(End end, absl::Status why);
  void KickAll();

  Sinks sinks_;
  int kvm_fd_ = -1;
  int vm_fd_ = -1;
  uint8_t* memory_base_ = nullptr;  // the caller's
  uint64_t memory_size_ = 0;
  std::unique_ptr<GuestMemory> memory_;
  std::vector<Vcpu> vcpus_;
  std::unique_ptr<SerialPort> serial_;
  std::unique_ptr<PciConfig> pci_;
  std::unique_ptr<VirtioConsole> agent_port_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool started_ = false;
  bool pause_requested_ = false;
  int vcpus_held_ = 0;
  End end_ = End::kRunning;
  absl::Status end_status_;
};

}  // namespace thaw::linuxvm

#endif  // THAW_LIB_LINUXVM_LINUX_MACHINE_H_
