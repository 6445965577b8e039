// LinuxMachine's Save and Restore (Firecracker's persist beside its
// component): every vCPU's registers and the VM-wide KVM state as the
// kernel's uapi structures, and the devices' registers.
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/errno_status.h"
#include "lib/kvm/kvm_uapi.h"
#include "lib/linuxvm/linux_machine.h"

namespace thaw::linuxvm {
namespace {

using kvm::IoctlRetryingEintr;
namespace proto = snapshot::proto;

absl::Status KvmError(absl::string_view what) {
  return ErrnoStatus(absl::StrCat("Linux VM: ", what), errno);
}

template <typename T>
std::string Bytes(const T& value) {
  return std::string(reinterpret_cast<const char*>(&value), sizeof value);
}

// Copies `bytes` into `out`, which must be exactly its size (a snapshot of
// another shape is refused, never half-applied).
template <typename T>
absl::Status FromBytes(const std::string& bytes, absl::string_view field,
                       T& out) {
  if (bytes.size() != sizeof(T)) {
    return absl::DataLossError(absl::StrFormat(
        "Linux VM state: %s is %u bytes; this build's struct is %u", field,
        bytes.size(), sizeof(T)));
  }
  std::memcpy(&out, bytes.data(), sizeof(T));
  return absl::OkStatus();
}

// Runs `ioctl(fd, request, &value)` and names it on failure.
template <typename T>
absl::Status Get(int fd, unsigned long request, T& value,
                 absl::string_view name) {
  if (IoctlRetryingEintr(fd, request, &value) < 0) return KvmError(name);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<uint32_t>> LinuxMachine::MsrIndices() {
  struct {
    uint32_t nmsrs;
    uint32_t indices[1024];
  } list{};
  list.nmsrs = 1024;
  if (IoctlRetryingEintr(kvm_fd_, kvm::kGetMsrIndexList, &list) < 0) {
    return KvmError("KVM_GET_MSR_INDEX_LIST");
  }
  return std::vector<uint32_t>(list.indices,
                               list.indices + std::min(list.nmsrs, 1024u));
}

absl::Status LinuxMachine::SaveVcpu(int index, proto::LinuxVcpu& out) {
  const int fd = vcpus_[index].fd;
  auto cpuid = std::make_unique<kvm::CpuidTable>();
  cpuid->header.nent = 256;
  if (IoctlRetryingEintr(fd, kvm::kGetCpuid2, cpuid.get()) < 0) {
    return KvmError("KVM_GET_CPUID2");
  }
  out.set_cpuid(std::string(reinterpret_cast<const char*>(cpuid->entries),
                            cpuid->header.nent * sizeof(kvm_cpuid_entry2)));
  kvm_mp_state mp{};
  kvm_regs regs{};
  kvm_sregs sregs{};
  kvm_lapic_state lapic{};
  kvm_vcpu_events events{};
  kvm_debugregs debugregs{};
  if (absl::Status s = Get(fd, KVM_GET_MP_STATE, mp, "KVM_GET_MP_STATE");
      !s.ok())
    return s;
  if (absl::Status s = Get(fd, KVM_GET_REGS, regs, "KVM_GET_REGS"); !s.ok())
    return s;
  if (absl::Status s = Get(fd, KVM_GET_SREGS, sregs, "KVM_GET_SREGS"); !s.ok())
    return s;
  // The guest's CPUID has no XSAVE (AdjustCpuid), so its XCR0 is x87|SSE
  // and the FXSAVE image KVM_GET_FPU gives is its whole FPU state.
  kvm_fpu fpu{};
  if (absl::Status s = Get(fd, KVM_GET_FPU, fpu, "KVM_GET_FPU"); !s.ok())
    return s;
  out.set_fpu(Bytes(fpu));
  if (absl::Status s =
          Get(fd, KVM_GET_DEBUGREGS, debugregs, "KVM_GET_DEBUGREGS");
      !s.ok())
    return s;
  if (absl::Status s = Get(fd, KVM_GET_LAPIC, lapic, "KVM_GET_LAPIC"); !s.ok())
    return s;
  if (absl::Status s =
          Get(fd, KVM_GET_VCPU_EVENTS, events, "KVM_GET_VCPU_EVENTS");
      !s.ok())
    return s;
  out.set_mp_state(Bytes(mp));
  out.set_regs(Bytes(regs));
  out.set_sregs(Bytes(sregs));
  out.set_debugregs(Bytes(debugregs));
  out.set_lapic(Bytes(lapic));
  out.set_events(Bytes(events));

  // Every MSR KVM saves, in its order. KVM_GET_MSRS stops at the first
  // index it cannot read (one this CPU lacks): that one is dropped and the
  // rest read again.
  auto indices = MsrIndices();
  if (!indices.ok()) return indices.status();
  std::vector<uint32_t> wanted = *std::move(indices);
  struct Msrs {
    kvm::MsrsHeader header;
    kvm_msr_entry entries[1024];
  };
  auto msrs = std::make_unique<Msrs>();
  size_t done = 0;
  while (done < wanted.size()) {
    const size_t n = std::min<size_t>(wanted.size() - done, 1024);
    msrs->header.nmsrs = n;
    for (size_t i = 0; i < n; ++i) {
      msrs->entries[i] = {};
      msrs->entries[i].index = wanted[done + i];
    }
    const int got = IoctlRetryingEintr(fd, kvm::kGetMsrs, msrs.get());
    if (got < 0) return KvmError("KVM_GET_MSRS");
    for (int i = 0; i < got; ++i) {
      proto::Msr* msr = out.add_msrs();
      msr->set_index(msrs->entries[i].index);
      msr->set_value(msrs->entries[i].data);
    }
    done += got;
    if (static_cast<size_t>(got) < n) ++done;  // skip the unreadable one
  }
  return absl::OkStatus();
}

absl::Status LinuxMachine::SaveState(proto::LinuxMachine& out) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (started_ && vcpus_held_ != vcpus()) {
      return absl::FailedPreconditionError(
          "Linux VM: a snapshot needs every vCPU paused");
    }
    if (end_ != End::kRunning) {
      return absl::FailedPreconditionError(absl::StrCat(
          "Linux VM: the machine has stopped: ", end_status_.message()));
    }
  }
  for (int i = 0; i < vcpus(); ++i) {
    // The guest learns it was stopped, so its watchdogs do not report the
    // pause as a soft lockup. EINVAL: it has not set up kvmclock yet.
    if (ioctl(vcpus_[i].fd, KVM_KVMCLOCK_CTRL, 0) < 0 && errno != EINVAL) {
      return KvmError("KVM_KVMCLOCK_CTRL");
    }
    if (absl::Status s = SaveVcpu(i, *out.add_vcpus()); !s.ok()) return s;
  }
  kvm_irqchip chip{};
  for (int id = 0; id < 3; ++id) {
    chip = {};
    chip.chip_id = id;
    if (absl::Status s = Get(vm_fd_, KVM_GET_IRQCHIP, chip, "KVM_GET_IRQCHIP");
        !s.ok())
      return s;
    (id == 0   ? *out.mutable_pic_master()
     : id == 1 ? *out.mutable_pic_slave()
               : *out.mutable_ioapic()) = Bytes(chip);
  }
  kvm_pit_state2 pit{};
  if (absl::Status s = Get(vm_fd_, KVM_GET_PIT2, pit, "KVM_GET_PIT2"); !s.ok())
    return s;
  out.set_pit(Bytes(pit));
  kvm_clock_data clock{};
  if (absl::Status s = Get(vm_fd_, KVM_GET_CLOCK, clock, "KVM_GET_CLOCK");
      !s.ok())
    return s;
  if (!(clock.flags & KVM_CLOCK_REALTIME)) {
    // KVM pairs the clock with the wall time only on a TSC-clocked host;
    // elsewhere the pairing is taken here, microseconds apart.
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    clock.realtime = now.tv_sec * 1000000000ull + now.tv_nsec;
    clock.flags |= KVM_CLOCK_REALTIME;
  }
  out.set_clock(Bytes(clock));

  const SerialPort::State uart = serial_->Save();
  proto::LinuxUart& u = *out.mutable_uart();
  u.set_ier(uart.ier);
  u.set_lcr(uart.lcr);
  u.set_mcr(uart.mcr);
  u.set_scr(uart.scr);
  u.set_dll(uart.dll);
  u.set_dlm(uart.dlm);
  u.set_thr_empty_interrupt(uart.thr_empty_interrupt);
  u.set_input(uart.input);
  const PciConfig::State pci = pci_->Save();
  proto::LinuxPci& p = *out.mutable_pci();
  p.set_address(pci.address);
  p.set_virtio_bar(pci.virtio_bar);
  p.set_virtio_command(pci.virtio_command);
  p.set_virtio_interrupt_line(pci.virtio_interrupt_line);
  const VirtioConsole::State console = agent_port_->Save();
  proto::LinuxVirtioConsole& c = *out.mutable_console();
  c.set_guest_features(console.guest_features);
  c.set_queue_select(console.queue_select);
  c.set_status(console.status);
  c.set_isr(console.isr);
  for (const Virtqueue::State& q : console.queues) {
    proto::LinuxVirtqueue& pq = *c.add_queues();
    pq.set_page_frame(q.pfn);
    pq.set_next_avail(q.next_avail);
    pq.set_next_used(q.next_used);
  }
  c.set_pending(console.pending);
  return absl::OkStatus();
}

absl::Status LinuxMachine::RestoreVcpu(int index, const proto::LinuxVcpu& in) {
  const int fd = vcpus_[index].fd;
  // CPUID first: the guest must see the CPU it was snapshotted on, and KVM
  // takes CPUID only before the vCPU first runs.
  if (in.cpuid().empty() || in.cpuid().size() % sizeof(kvm_cpuid_entry2) != 0 ||
      in.cpuid().size() / sizeof(kvm_cpuid_entry2) > 256) {
    return absl::DataLossError(absl::StrFormat(
        "Linux VM state: vCPU %d's CPUID is %u bytes, not a whole number of "
        "entries (at most 256)",
        index, in.cpuid().size()));
  }
  auto cpuid = std::make_unique<kvm::CpuidTable>();
  cpuid->header.nent = in.cpuid().size() / sizeof(kvm_cpuid_entry2);
  std::memcpy(cpuid->entries, in.cpuid().data(), in.cpuid().size());
  if (IoctlRetryingEintr(fd, kvm::kSetCpuid2, cpuid.get()) < 0) {
    return KvmError(absl::StrCat("KVM_SET_CPUID2 on vCPU ", index));
  }
  kvm_mp_state mp;
  kvm_regs regs;
  kvm_sregs sregs;
  kvm_lapic_state lapic;
  kvm_vcpu_events events;
  kvm_debugregs debugregs;
  for (absl::Status s : {FromBytes(in.mp_state(), "mp_state", mp),
                         FromBytes(in.regs(), "regs", regs),
                         FromBytes(in.sregs(), "sregs", sregs),
                         FromBytes(in.lapic(), "lapic", lapic),
                         FromBytes(in.events(), "events", events),
                         FromBytes(in.debugregs(), "debugregs", debugregs)}) {
    if (!s.ok()) return s;
  }
  // Firecracker's order: MP state, registers, FPU, debug registers, LAPIC,
  // MSRs, then the pending events.
  if (absl::Status s = Get(fd, KVM_SET_MP_STATE, mp, "KVM_SET_MP_STATE");
      !s.ok())
    return s;
  if (absl::Status s = Get(fd, KVM_SET_REGS, regs, "KVM_SET_REGS"); !s.ok())
    return s;
  if (absl::Status s = Get(fd, KVM_SET_SREGS, sregs, "KVM_SET_SREGS"); !s.ok())
    return s;
  if (!in.xsave().empty() || !in.xcrs().empty()) {
    return absl::DataLossError(absl::StrFormat(
        "Linux VM state: vCPU %d carries XSAVE state, which this build's "
        "guests do not have",
        index));
  }
  kvm_fpu fpu;
  if (absl::Status s = FromBytes(in.fpu(), "fpu", fpu); !s.ok()) return s;
  if (absl::Status s = Get(fd, KVM_SET_FPU, fpu, "KVM_SET_FPU"); !s.ok())
    return s;
  if (absl::Status s =
          Get(fd, KVM_SET_DEBUGREGS, debugregs, "KVM_SET_DEBUGREGS");
      !s.ok())
    return s;
  if (absl::Status s = Get(fd, KVM_SET_LAPIC, lapic, "KVM_SET_LAPIC"); !s.ok())
    return s;
  struct Msrs {
    kvm::MsrsHeader header;
    kvm_msr_entry entries[1024];
  };
  if (in.msrs_size() > 1024) {
    return absl::DataLossError(
        absl::StrFormat("Linux VM state: vCPU %d has %d MSRs (at most 1024)",
                        index, in.msrs_size()));
  }
  auto msrs = std::make_unique<Msrs>();
  msrs->header.nmsrs = in.msrs_size();
  for (int i = 0; i < in.msrs_size(); ++i) {
    msrs->entries[i] = {};
    msrs->entries[i].index = in.msrs(i).index();
    msrs->entries[i].data = in.msrs(i).value();
  }
  const int set = IoctlRetryingEintr(fd, kvm::kSetMsrs, msrs.get());
  if (set < 0) return KvmError("KVM_SET_MSRS");
  if (set < in.msrs_size()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "Linux VM: KVM refused MSR 0x%x of vCPU %d (a snapshot from another "
        "CPU?)",
        in.msrs(set).index(), index));
  }
  if (absl::Status s =
          Get(fd, KVM_SET_VCPU_EVENTS, events, "KVM_SET_VCPU_EVENTS");
      !s.ok())
    return s;
  return absl::OkStatus();
}

absl::Status LinuxMachine::RestoreState(const proto::LinuxMachine& in) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (started_) {
      return absl::FailedPreconditionError(
          "Linux VM: state is restored before the machine starts");
    }
  }
  if (in.vcpus_size() != vcpus()) {
    return absl::DataLossError(
        absl::StrFormat("Linux VM state: %d vCPUs saved, the machine has %d",
                        in.vcpus_size(), vcpus()));
  }
  // The VM-wide state first (Firecracker's order): the PIT, the clock,
  // the irqchip; the LAPICs then come with their vCPUs.
  kvm_pit_state2 pit;
  if (absl::Status s = FromBytes(in.pit(), "pit", pit); !s.ok()) return s;
  if (absl::Status s = Get(vm_fd_, KVM_SET_PIT2, pit, "KVM_SET_PIT2"); !s.ok())
    return s;
  kvm_clock_data clock;
  if (absl::Status s = FromBytes(in.clock(), "clock", clock); !s.ok()) return s;
  // With the wall time recorded (KVM_CLOCK_REALTIME), KVM moves the clock
  // on by the time since: the guest's clock is not behind the host's.
  clock.flags &= KVM_CLOCK_REALTIME;
  if (absl::Status s = Get(vm_fd_, KVM_SET_CLOCK, clock, "KVM_SET_CLOCK");
      !s.ok())
    return s;
  const std::string* chips[] = {&in.pic_master(), &in.pic_slave(),
                                &in.ioapic()};
  for (int id = 0; id < 3; ++id) {
    kvm_irqchip chip;
    if (absl::Status s = FromBytes(*chips[id], "irqchip", chip); !s.ok())
      return s;
    if (chip.chip_id != static_cast<uint32_t>(id)) {
      return absl::DataLossError("Linux VM state: irqchips out of order");
    }
    if (absl::Status s = Get(vm_fd_, KVM_SET_IRQCHIP, chip, "KVM_SET_IRQCHIP");
        !s.ok())
      return s;
  }
  for (int i = 0; i < vcpus(); ++i) {
    if (absl::Status s = RestoreVcpu(i, in.vcpus(i)); !s.ok()) return s;
  }

  SerialPort::State uart;
  const proto::LinuxUart& u = in.uart();
  uart.ier = u.ier();
  uart.lcr = u.lcr();
  uart.mcr = u.mcr();
  uart.scr = u.scr();
  uart.dll = u.dll();
  uart.dlm = u.dlm();
  uart.thr_empty_interrupt = u.thr_empty_interrupt();
  uart.input = u.input();
  serial_->Restore(uart);
  PciConfig::State pci;
  pci.address = in.pci().address();
  pci.virtio_bar = in.pci().virtio_bar();
  pci.virtio_command = in.pci().virtio_command();
  pci.virtio_interrupt_line = in.pci().virtio_interrupt_line();
  pci_->Restore(pci);
  const proto::LinuxVirtioConsole& c = in.console();
  if (c.queues_size() != 2) {
    return absl::DataLossError(absl::StrFormat(
        "Linux VM state: the virtio console has %d queues, not 2",
        c.queues_size()));
  }
  VirtioConsole::State console;
  console.guest_features = c.guest_features();
  console.queue_select = c.queue_select();
  console.status = c.status();
  console.isr = c.isr();
  for (int i = 0; i < 2; ++i) {
    console.queues[i].pfn = c.queues(i).page_frame();
    console.queues[i].next_avail = c.queues(i).next_avail();
    console.queues[i].next_used = c.queues(i).next_used();
  }
  console.pending = c.pending();
  agent_port_->Restore(console);
  return absl::OkStatus();
}

}  // namespace thaw::linuxvm
