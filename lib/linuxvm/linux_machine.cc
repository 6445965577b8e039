#include "lib/linuxvm/linux_machine.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/errno_status.h"
#include "lib/kvm/kvm_uapi.h"

namespace thaw::linuxvm {
namespace {

using kvm::IoctlRetryingEintr;

// Addresses KVM needs for Intel's real-mode emulation, above guest memory
// and below the IOAPIC (Firecracker's choice).
constexpr uint64_t kTssAddress = 0xfffbd000;
constexpr uint64_t kIdentityMapAddress = 0xfffbc000;
constexpr uint16_t kI8042Data = 0x60;
constexpr uint16_t kI8042Command = 0x64;
constexpr uint8_t kI8042ResetCpu = 0xfe;
constexpr uint32_t kMsrMiscEnable = 0x1a0;

absl::Status KvmError(absl::string_view what) {
  return ErrnoStatus(absl::StrCat("Linux VM: ", what), errno);
}

// The CPUID a vCPU gets: what KVM supports, with this vCPU's APIC id, the
// hypervisor bit, and without what the machine cannot carry or the guest
// trips over (doc/linux-vm.md): XSAVE/AVX (not restorable everywhere
// thaw runs) and the paravirt features but the clock (with them the guest
// hangs in a spinlock wait on these hosts).
void AdjustCpuid(kvm::CpuidTable& table, int apic_id) {
  for (uint32_t i = 0; i < table.header.nent; ++i) {
    kvm_cpuid_entry2& e = table.entries[i];
    switch (e.function) {
      case 1:
        e.ebx = (e.ebx & 0x00ffffff) | (static_cast<uint32_t>(apic_id) << 24);
        e.ecx &= ~((1u << 26) | (1u << 27) | (1u << 28));  // XSAVE OSXSAVE AVX
        e.ecx |= 1u << 31;                                 // hypervisor
        break;
      case 7:
        if (e.index == 0) {
          // AVX2, AVX-512 F/DQ/CD/BW/VL: they need XSAVE state.
          e.ebx &= ~((1u << 5) | (1u << 16) | (1u << 17) | (1u << 28) |
                     (1u << 30) | (1u << 31));
        }
        break;
      case 0xb:
      case 0x1f:
        e.edx = static_cast<uint32_t>(apic_id);
        break;
      case 0xd:
        e.eax = e.ebx = e.ecx = e.edx = 0;
        break;
      case 0x40000001:
        // KVM_FEATURE_CLOCKSOURCE, CLOCKSOURCE2, CLOCKSOURCE_STABLE_BIT.
        e.eax &= (1u << 0) | (1u << 3) | (1u << 24);
        break;
      default:
        break;
    }
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<LinuxMachine>> LinuxMachine::Create(
    const Options& options, Sinks sinks) {
  std::unique_ptr<LinuxMachine> machine(new LinuxMachine(std::move(sinks)));
  if (absl::Status s = machine->Build(options); !s.ok()) return s;
  return machine;
}

absl::Status LinuxMachine::Build(const Options& options) {
  if (absl::Status s = CheckVcpuCount(options.vcpus); !s.ok()) return s;
  kvm_fd_ = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm_fd_ < 0) {
    return absl::UnavailableError(
        absl::StrCat("Linux VM: open /dev/kvm: ", std::strerror(errno),
                     " (Linux VMs run on KVM only)"));
  }
  struct Capability {
    int id;
    const char* name;
  };
  for (Capability c :
       {Capability{KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
        Capability{KVM_CAP_PIT2, "KVM_CAP_PIT2"},
        Capability{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
        Capability{KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
        Capability{KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
        Capability{KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"}}) {
    // Safe: KVM_CHECK_EXTENSION takes an integer and changes nothing.
    if (ioctl(kvm_fd_, KVM_CHECK_EXTENSION, c.id) <= 0) {
      return absl::UnavailableError(
          absl::StrCat("Linux VM: this KVM lacks ", c.name));
    }
  }
  vm_fd_ = IoctlRetryingEintr(kvm_fd_, KVM_CREATE_VM, 0);
  if (vm_fd_ < 0) return KvmError("KVM_CREATE_VM");
  // Firecracker's order: TSS and identity map, then the irqchip and PIT,
  // then memory, then the vCPUs (which need the irqchip to exist).
  if (IoctlRetryingEintr(vm_fd_, KVM_SET_TSS_ADDR, kTssAddress) < 0) {
    return KvmError("KVM_SET_TSS_ADDR");
  }
  uint64_t identity_map = kIdentityMapAddress;
  if (IoctlRetryingEintr(vm_fd_, KVM_SET_IDENTITY_MAP_ADDR, &identity_map) <
      0) {
    return KvmError("KVM_SET_IDENTITY_MAP_ADDR");
  }
  if (IoctlRetryingEintr(vm_fd_, KVM_CREATE_IRQCHIP, 0) < 0) {
    return KvmError("KVM_CREATE_IRQCHIP");
  }
  kvm_pit_config pit{};
  pit.flags = KVM_PIT_SPEAKER_DUMMY;
  if (IoctlRetryingEintr(vm_fd_, KVM_CREATE_PIT2, &pit) < 0) {
    return KvmError("KVM_CREATE_PIT2");
  }
  // Ticks the guest missed are dropped, not re-injected the moment it
  // acknowledges one: the guest keeps time by kvmclock, and a backlog of
  // PIT ticks (a slow or paused vCPU) would arrive inside its own timer
  // handler, which hangs it on a nested host (doc/linux-vm.md).
  kvm_reinject_control reinject{};
  reinject.pit_reinject = 0;
  if (IoctlRetryingEintr(vm_fd_, KVM_REINJECT_CONTROL, &reinject) < 0) {
    return KvmError("KVM_REINJECT_CONTROL");
  }
  if (options.memory == nullptr || options.memory_size == 0) {
    return absl::InvalidArgumentError("Linux VM: no guest memory");
  }
  memory_base_ = options.memory;
  memory_size_ = options.memory_size;
  memory_ = GuestMemory::View(memory_base_, memory_size_);
  kvm_userspace_memory_region region{};
  region.slot = 0;
  region.guest_phys_addr = 0;
  region.memory_size = memory_size_;
  region.userspace_addr = reinterpret_cast<uint64_t>(memory_base_);
  if (IoctlRetryingEintr(vm_fd_, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
    return KvmError("KVM_SET_USER_MEMORY_REGION");
  }

  serial_ =
      std::make_unique<SerialPort>([this](char c) { sinks_.serial_output(c); },
                                   [this] { PulseIrq(SerialPort::kIrq); });
  pci_ = std::make_unique<PciConfig>();
  agent_port_ = std::make_unique<VirtioConsole>(
      *memory_, [this](absl::string_view bytes) { sinks_.agent_output(bytes); },
      [this] { PulseIrq(kPciIrqPin); },
      [this](const absl::Status& error) { Stop(End::kError, error); });

  vcpus_.resize(options.vcpus);
  for (int i = 0; i < options.vcpus; ++i) {
    if (absl::Status s = SetUpVcpu(i); !s.ok()) return s;
  }
  kvm::InstallInterruptHandler();
  return absl::OkStatus();
}

absl::Status LinuxMachine::SetUpVcpu(int index) {
  Vcpu& v = vcpus_[index];
  v.fd = IoctlRetryingEintr(vm_fd_, KVM_CREATE_VCPU, index);
  if (v.fd < 0) return KvmError(absl::StrCat("KVM_CREATE_VCPU ", index));
  const int run_size = IoctlRetryingEintr(kvm_fd_, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (run_size < static_cast<int>(sizeof(kvm_run))) {
    return KvmError("KVM_GET_VCPU_MMAP_SIZE");
  }
  // Safe: the vCPU's shared run structure, sized by KVM; unmapped in the
  // destructor.
  void* run =
      mmap(nullptr, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v.fd, 0);
  if (run == MAP_FAILED) return KvmError("mmap kvm_run");
  v.run = static_cast<kvm_run*>(run);
  v.run_size = run_size;

  auto table = std::make_unique<kvm::CpuidTable>();
  table->header.nent = 256;
  if (IoctlRetryingEintr(kvm_fd_, kvm::kGetSupportedCpuid, table.get()) < 0) {
    return KvmError("KVM_GET_SUPPORTED_CPUID");
  }
  AdjustCpuid(*table, index);
  if (IoctlRetryingEintr(v.fd, kvm::kSetCpuid2, table.get()) < 0) {
    return KvmError("KVM_SET_CPUID2");
  }
  // LAPIC: LINT0 delivers the PIC's interrupts (ExtINT), LINT1 NMIs, as
  // the MP table says.
  kvm_lapic_state lapic;
  if (IoctlRetryingEintr(v.fd, KVM_GET_LAPIC, &lapic) < 0) {
    return KvmError("KVM_GET_LAPIC");
  }
  auto set_delivery_mode = [&lapic](int offset, uint32_t mode) {
    uint32_t value;
    std::memcpy(&value, lapic.regs + offset, 4);
    value = (value & ~0x700u) | (mode << 8);
    std::memcpy(lapic.regs + offset, &value, 4);
  };
  set_delivery_mode(0x350, 7);  // LVT0: ExtINT
  set_delivery_mode(0x360, 4);  // LVT1: NMI
  if (IoctlRetryingEintr(v.fd, KVM_SET_LAPIC, &lapic) < 0) {
    return KvmError("KVM_SET_LAPIC");
  }
  struct {
    kvm::MsrsHeader header;
    kvm_msr_entry entries[1];
  } msrs{};
  msrs.header.nmsrs = 1;
  msrs.entries[0].index = kMsrMiscEnable;
  msrs.entries[0].data = 1;  // fast strings
  if (IoctlRetryingEintr(v.fd, kvm::kSetMsrs, &msrs) != 1) {
    return KvmError("KVM_SET_MSRS (MISC_ENABLE)");
  }
  return absl::OkStatus();
}

absl::Status LinuxMachine::SetEntryState(const EntryState& e) {
  const int fd = vcpus_[0].fd;
  kvm_sregs s;
  if (IoctlRetryingEintr(fd, KVM_GET_SREGS, &s) < 0) {
    return KvmError("KVM_GET_SREGS");
  }
  kvm_segment code{};
  code.limit = 0xfffff;
  code.selector = e.code_selector;
  code.type = 0xb;
  code.present = 1;
  code.s = 1;
  code.l = 1;
  code.g = 1;
  kvm_segment data = code;
  data.selector = e.data_selector;
  data.type = 3;
  data.l = 0;
  data.db = 1;
  kvm_segment tss = code;
  tss.selector = e.tss_selector;
  tss.s = 0;
  tss.l = 0;
  s.cs = code;
  s.ds = s.es = s.fs = s.gs = s.ss = data;
  s.tr = tss;
  s.gdt.base = e.gdt_base;
  s.gdt.limit = e.gdt_limit;
  s.cr0 = e.cr0;
  s.cr3 = e.cr3;
  s.cr4 = e.cr4;
  s.efer = e.efer;
  if (IoctlRetryingEintr(fd, KVM_SET_SREGS, &s) < 0) {
    return KvmError("KVM_SET_SREGS");
  }
  kvm_regs r{};
  r.rflags = 2;
  r.rip = e.rip;
  r.rsp = e.rsp;
  r.rsi = e.rsi;
  if (IoctlRetryingEintr(fd, KVM_SET_REGS, &r) < 0) {
    return KvmError("KVM_SET_REGS");
  }
  return absl::OkStatus();
}

absl::Status LinuxMachine::Start() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (started_)
    return absl::FailedPreconditionError("Linux VM: already started");
  started_ = true;
  for (int i = 0; i < vcpus(); ++i) {
    vcpus_[i].runner = std::thread([this, i] { RunVcpu(i); });
  }
  return absl::OkStatus();
}

void LinuxMachine::RunVcpu(int index) {
  Vcpu& v = vcpus_[index];
  {
    std::lock_guard<std::mutex> lock(mutex_);
    v.thread = pthread_self();
  }
  // The kick signal must reach this thread even if the caller blocks it.
  sigset_t kick;
  sigemptyset(&kick);
  sigaddset(&kick, kvm::InterruptSignal());
  pthread_sigmask(SIG_UNBLOCK, &kick, nullptr);
  // Held only after a KVM_RUN that was kicked out (EINTR): that entry
  // completed the previous exit's I/O, so the state a snapshot reads is
  // whole. Before the first entry there is nothing to complete.
  bool may_hold = true;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (may_hold && pause_requested_ && end_ == End::kRunning) {
        ++vcpus_held_;
        changed_.notify_all();
        changed_.wait(
            lock, [&] { return !pause_requested_ || end_ != End::kRunning; });
        --vcpus_held_;
      }
      if (end_ != End::kRunning) return;
    }
    may_hold = false;
    // Safe: this vCPU's fd and its run structure, both alive until the
    // destructor has joined this thread.
    if (ioctl(v.fd, KVM_RUN, 0) < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        // A kick: clear it before looking at why (a kick after the look
        // leaves immediate_exit set, so the next KVM_RUN returns at once).
        __atomic_store_n(&v.run->immediate_exit, 0, __ATOMIC_RELEASE);
        may_hold = true;
        continue;
      }
      Stop(End::kError, KvmError(absl::StrCat("KVM_RUN on vCPU ", index)));
      return;
    }
    kvm_run& run = *v.run;
    switch (run.exit_reason) {
      case KVM_EXIT_IO:
        HandleIo(run);
        break;
      case KVM_EXIT_MMIO:
        // Nothing is mapped there: reads see all ones, writes are dropped.
        if (!run.mmio.is_write)
          std::memset(run.mmio.data, 0xff, sizeof run.mmio.data);
        break;
      case KVM_EXIT_HLT:
        break;  // the in-kernel irqchip handles HLT; not expected
      case KVM_EXIT_SHUTDOWN:
        Stop(End::kTripleFault,
             absl::AbortedError(
                 absl::StrCat("the guest triple-faulted (vCPU ", index, ")")));
        return;
      case KVM_EXIT_SYSTEM_EVENT:
        if (run.system_event.type == KVM_SYSTEM_EVENT_RESET ||
            run.system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN) {
          Stop(End::kReset, absl::AbortedError("the guest reset the machine"));
        } else {
          Stop(End::kError, absl::AbortedError(absl::StrCat(
                                "the guest reported a crash (system event ",
                                run.system_event.type, ")")));
        }
        return;
      case KVM_EXIT_FAIL_ENTRY:
        Stop(End::kError,
             absl::InternalError(absl::StrFormat(
                 "KVM could not enter vCPU %d (hardware reason 0x%x)", index,
                 run.fail_entry.hardware_entry_failure_reason)));
        return;
      case KVM_EXIT_INTERNAL_ERROR:
        Stop(End::kError, absl::InternalError(absl::StrFormat(
                              "KVM internal error on vCPU %d (suberror %u)",
                              index, run.internal.suberror)));
        return;
      default:
        Stop(End::kError,
             absl::InternalError(absl::StrFormat(
                 "unexpected KVM exit %u on vCPU %d", run.exit_reason, index)));
        return;
    }
  }
}

void LinuxMachine::HandleIo(kvm_run& run) {
  // Safe: KVM puts the data inside the run structure it sized, at
  // data_offset, count items of size bytes each.
  uint8_t* data = reinterpret_cast<uint8_t*>(&run) + run.io.data_offset;
  const uint32_t size = run.io.size;
  for (uint32_t i = 0; i < run.io.count; ++i, data += size) {
    if (run.io.direction == KVM_EXIT_IO_OUT) {
      uint32_t value = 0;
      std::memcpy(&value, data, size);
      PortWrite(run.io.port, size, value);
    } else {
      const uint32_t value = PortRead(run.io.port, size);
      std::memcpy(data, &value, size);
    }
  }
}

uint32_t LinuxMachine::PortRead(uint16_t port, uint32_t size) {
  if (port >= SerialPort::kBase &&
      port < SerialPort::kBase + SerialPort::kPorts) {
    return serial_->Read(port - SerialPort::kBase);
  }
  if (port >= PciConfig::kAddressPort && port < PciConfig::kDataPort + 4) {
    return pci_->Read(port, size);
  }
  const uint16_t virtio = pci_->virtio_io_base();
  if (port >= virtio && port < virtio + VirtioConsole::kRegisterBytes) {
    return agent_port_->Read(port - virtio, size);
  }
  // i8042: no data, nothing pending (its driver then finds no controller).
  if (port == kI8042Command || port == kI8042Data) return 0;
  return 0xffffffff;
}

void LinuxMachine::PortWrite(uint16_t port, uint32_t size, uint32_t value) {
  if (port >= SerialPort::kBase &&
      port < SerialPort::kBase + SerialPort::kPorts) {
    return serial_->Write(port - SerialPort::kBase,
                          static_cast<uint8_t>(value));
  }
  if (port >= PciConfig::kAddressPort && port < PciConfig::kDataPort + 4) {
    return pci_->Write(port, size, value);
  }
  const uint16_t virtio = pci_->virtio_io_base();
  if (port >= virtio && port < virtio + VirtioConsole::kRegisterBytes) {
    return agent_port_->Write(port - virtio, size, value);
  }
  if (port == kI8042Command && (value & 0xff) == kI8042ResetCpu) {
    Stop(End::kReset, absl::AbortedError("the guest reset the machine"));
  }
}

void LinuxMachine::PulseIrq(int irq) {
  kvm_irq_level level{};
  level.irq = irq;
  level.level = 1;
  // Safe: a VM ioctl on an irqchip created in Build; edge-triggered lines
  // take a rising edge, so raise and lower.
  IoctlRetryingEintr(vm_fd_, KVM_IRQ_LINE, &level);
  level.level = 0;
  IoctlRetryingEintr(vm_fd_, KVM_IRQ_LINE, &level);
}

void LinuxMachine::KickAll() {
  for (Vcpu& v : vcpus_) {
    if (v.run == nullptr) continue;
    __atomic_store_n(&v.run->immediate_exit, 1, __ATOMIC_RELEASE);
    if (v.thread != pthread_t{}) pthread_kill(v.thread, kvm::InterruptSignal());
  }
}

void LinuxMachine::Stop(End end, absl::Status why) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (end_ != End::kRunning) return;
    end_ = end;
    end_status_ = std::move(why);
    KickAll();
    changed_.notify_all();
  }
  if (sinks_.stopped) sinks_.stopped();
}

std::string LinuxMachine::DescribeVcpus() {
  const bool was_paused = paused();
  Pause();
  std::string out;
  for (int i = 0; i < vcpus(); ++i) {
    kvm_regs regs{};
    kvm_mp_state mp{};
    IoctlRetryingEintr(vcpus_[i].fd, KVM_GET_REGS, &regs);
    IoctlRetryingEintr(vcpus_[i].fd, KVM_GET_MP_STATE, &mp);
    absl::StrAppendFormat(
        &out, "%svCPU %d at RIP 0x%x%s", i ? ", " : "", i, regs.rip,
        mp.mp_state == KVM_MP_STATE_HALTED          ? " (halted)"
        : mp.mp_state == KVM_MP_STATE_UNINITIALIZED ? " (not started)"
                                                    : "");
  }
  if (!was_paused) Resume();
  return out;
}

void LinuxMachine::RequestStop(absl::Status why) {
  Stop(End::kStoppedByHost, std::move(why));
}

void LinuxMachine::Pause() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (pause_requested_) return;
  pause_requested_ = true;
  if (!started_) return;
  KickAll();
  changed_.wait(
      lock, [&] { return vcpus_held_ == vcpus() || end_ != End::kRunning; });
}

void LinuxMachine::Resume() {
  std::lock_guard<std::mutex> lock(mutex_);
  pause_requested_ = false;
  changed_.notify_all();
}

bool LinuxMachine::paused() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pause_requested_;
}

LinuxMachine::End LinuxMachine::end() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return end_;
}

absl::Status LinuxMachine::end_status() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return end_status_;
}

LinuxMachine::~LinuxMachine() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (end_ == End::kRunning) {
      end_ = End::kStoppedByHost;
      end_status_ = absl::CancelledError("Linux VM: destroyed");
    }
    KickAll();
    changed_.notify_all();
  }
  for (Vcpu& v : vcpus_) {
    // A kick may land between the thread's look at end_ and KVM_RUN;
    // immediate_exit covers that, but keep kicking until it has returned.
    while (v.runner.joinable()) {
      std::unique_lock<std::mutex> lock(mutex_);
      KickAll();
      lock.unlock();
      v.runner.join();
    }
  }
  for (Vcpu& v : vcpus_) {
    if (v.run != nullptr) munmap(v.run, v.run_size);
    if (v.fd >= 0) close(v.fd);
  }
  if (vm_fd_ >= 0) close(vm_fd_);
  if (kvm_fd_ >= 0) close(kvm_fd_);
}

}  // namespace thaw::linuxvm
