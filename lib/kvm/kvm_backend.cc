#include "lib/kvm/kvm_backend.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/errno_status.h"
#include "lib/kvm/kvm_uapi.h"
#include "lib/x86/user_mode.h"
#include "thaw/abi.h"

namespace thaw::kvm {
namespace {

using backend::Exit;

constexpr uint64_t kTssAddressForIntel = 0xFFFBD000;  // out of guest range

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Fd& operator=(Fd&&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Segment FromKvm(const kvm_segment& k) {
  Segment s;
  s.base = k.base;
  s.limit = k.limit;
  s.selector = k.selector;
  s.type = k.type;
  s.present = k.present;
  s.dpl = k.dpl;
  s.db = k.db;
  s.s = k.s;
  s.l = k.l;
  s.g = k.g;
  s.avl = k.avl;
  s.unusable = k.unusable;
  return s;
}

kvm_segment ToKvm(const Segment& s) {
  kvm_segment k{};
  k.base = s.base;
  k.limit = s.limit;
  k.selector = s.selector;
  k.type = s.type;
  k.present = s.present;
  k.dpl = s.dpl;
  k.db = s.db;
  k.s = s.s;
  k.l = s.l;
  k.g = s.g;
  k.avl = s.avl;
  k.unusable = s.unusable;
  return k;
}

class KvmBackend final : public backend::Backend {
 public:
  KvmBackend(GuestMemory& memory, Fd kvm, Fd vm, Fd vcpu, kvm_run* run,
             size_t run_size, bool sync_regs)
      : memory_(memory),
        kvm_(std::move(kvm)),
        vm_(std::move(vm)),
        vcpu_(std::move(vcpu)),
        run_(run),
        run_size_(run_size),
        sync_regs_(sync_regs) {}
  ~KvmBackend() override { munmap(run_, run_size_); }

  BackendKind kind() const override { return BackendKind::kKvm; }
  absl::StatusOr<VcpuState> GetState() override;
  absl::Status SetState(const VcpuState& state) override;
  absl::Status SetReturnValue(uint64_t value) override {
    return WriteRax(value);
  }
  absl::Status CheckNothingPending() override {
    kvm_vcpu_events events{};
    if (absl::Status s = Ioctl(KVM_GET_VCPU_EVENTS, &events, "GET_VCPU_EVENTS");
        !s.ok()) {
      return s;
    }
    kvm_mp_state mp{};
    if (absl::Status s = Ioctl(KVM_GET_MP_STATE, &mp, "GET_MP_STATE");
        !s.ok()) {
      return s;
    }
    if (events.exception.injected || events.exception.pending ||
        events.interrupt.injected || events.nmi.injected ||
        events.nmi.pending || mp.mp_state != KVM_MP_STATE_RUNNABLE) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "the vCPU has an event in flight (exception %d/%d, interrupt %d, "
          "NMI %d/%d, MP state %d); a snapshot would lose it",
          events.exception.injected, events.exception.pending,
          events.interrupt.injected, events.nmi.injected, events.nmi.pending,
          mp.mp_state));
    }
    return absl::OkStatus();
  }
  absl::StatusOr<Exit> Run(backend::HypercallHandler& handler) override;

  // The dirty log protects a page again when it is taken, so a page a
  // request writes every time takes a write-protection exit every time.
  // With manual protection (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, Linux 5.3+)
  // thaw protects only pages written for the first time; a page written in
  // two takes in a row stays writable and logged ("hot"): every take
  // returns it (so every reset copies it back) and the guest writes it
  // with no exit. Every kRelearnTakes takes, all are protected again, so a
  // page that went cold stops being copied.
  absl::Status StartDirtyLog() override {
    kvm_enable_cap cap{};
    cap.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
    cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
    manual_protect_ =
        IoctlRetryingEintr(vm_.get(), KVM_CHECK_EXTENSION,
                           KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) > 0 &&
        IoctlRetryingEintr(vm_.get(), KVM_ENABLE_CAP, &cap) == 0;
    previous_.assign((memory_.size() / 4096 + 63) / 64, 0);
    takes_ = 0;
    return SetDirtyLogging(true);
  }
  void StopDirtyLog() override { (void)SetDirtyLogging(false); }
  absl::Status SetDirtyLogging(bool on) {
    kvm_userspace_memory_region region{};
    region.slot = 0;
    region.flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0;
    region.guest_phys_addr = 0;
    region.memory_size = memory_.size();
    region.userspace_addr = reinterpret_cast<uint64_t>(memory_.host_base());
    // Safe: the same slot over the same mapping, now with dirty logging.
    if (IoctlRetryingEintr(vm_.get(), KVM_SET_USER_MEMORY_REGION, &region) <
        0) {
      return ErrnoStatus(absl::StrCat("KVM_SET_USER_MEMORY_REGION with dirty "
                                      "logging ",
                                      on ? "on" : "off"),
                         errno);
    }
    return absl::OkStatus();
  }
  absl::StatusOr<PageRuns> TakeDirtyLog() override {
    const uint64_t pages = memory_.size() / 4096;
    std::vector<uint64_t> bitmap((pages + 63) / 64, 0);
    kvm_dirty_log log{};
    log.slot = 0;
    log.dirty_bitmap = bitmap.data();
    // Safe: the bitmap holds one bit per page of slot 0, rounded up to 64.
    if (IoctlRetryingEintr(vm_.get(), KVM_GET_DIRTY_LOG, &log) < 0) {
      return ErrnoStatus("KVM_GET_DIRTY_LOG", errno);
    }
    if (manual_protect_) {
      const bool relearn = ++takes_ % kRelearnTakes == 0;
      for (uint64_t w = 0; w < bitmap.size(); ++w) {
        uint64_t protect = relearn ? bitmap[w] : bitmap[w] & ~previous_[w];
        previous_[w] = bitmap[w];
        if (protect == 0) continue;
        kvm_clear_dirty_log clear{};
        clear.slot = 0;
        clear.first_page = w * 64;
        clear.num_pages =
            static_cast<uint32_t>(std::min<uint64_t>(64, pages - w * 64));
        clear.dirty_bitmap = &protect;
        // Safe: one 64-page word of slot 0, 64-aligned as KVM requires.
        if (IoctlRetryingEintr(vm_.get(), KVM_CLEAR_DIRTY_LOG, &clear) < 0) {
          return ErrnoStatus("KVM_CLEAR_DIRTY_LOG", errno);
        }
      }
    }
    PageRuns runs;
    AppendRunsFromBitmap(bitmap.data(), 0, bitmap.size(), pages, runs);
    return runs;
  }

  void Interrupt() override {
    interrupted_.store(true, std::memory_order_release);
    // immediate_exit covers a signal that arrives before KVM_RUN is entered.
    __atomic_store_n(&run_->immediate_exit, 1, __ATOMIC_RELEASE);
    std::lock_guard<std::mutex> lock(thread_mutex_);
    // Safe: the vCPU thread cannot leave Run() without this mutex, so it is
    // alive while we signal it.
    if (vcpu_thread_running_) pthread_kill(vcpu_thread_, InterruptSignal());
  }
  void ClearInterrupt() override {
    interrupted_.store(false, std::memory_order_release);
    __atomic_store_n(&run_->immediate_exit, 0, __ATOMIC_RELEASE);
  }

 private:
  absl::Status Ioctl(unsigned long request, void* arg, const char* what) {
    // Safe: each caller passes the argument type the KVM API documents for
    // `request` on the vCPU fd.
    if (IoctlRetryingEintr(vcpu_.get(), request, arg) < 0) {
      return ErrnoStatus(absl::StrCat("KVM ", what), errno);
    }
    return absl::OkStatus();
  }
  // Reads (kGetMsrs) or writes (kSetMsrs) one MSR.
  absl::Status AccessMsr(unsigned long request, uint32_t index,
                         uint64_t& value) {
    struct {
      MsrsHeader header;
      kvm_msr_entry entry;
    } msrs{};
    msrs.header.nmsrs = 1;
    msrs.entry.index = index;
    msrs.entry.data = value;
    // Safe: the C layout of kvm_msrs with its one entry.
    int rc = IoctlRetryingEintr(vcpu_.get(), request, &msrs);
    if (rc < 0) {
      return ErrnoStatus(absl::StrFormat("KVM MSR 0x%x access", index), errno);
    }
    if (rc != 1) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "KVM refused %s MSR 0x%x (value 0x%x)",
          request == kSetMsrs ? "to set" : "to read", index, value));
    }
    value = msrs.entry.data;
    return absl::OkStatus();
  }
  absl::StatusOr<kvm_regs> ReadRegs();
  absl::Status WriteRax(uint64_t value);
  // Finishes the `out` KVM just exited on (RAX written, RIP past it) without
  // running the guest, so that the state read next is a consistent one.
  absl::Status CompletePendingIo();
  Exit ExceptionExit(uint32_t vector);
  absl::StatusOr<Exit> HandleSyscall(backend::HypercallHandler& handler,
                                     bool& resume);
  absl::StatusOr<Exit> HandleIo(backend::HypercallHandler& handler,
                                bool& resume);

  GuestMemory& memory_;
  Fd kvm_, vm_, vcpu_;
  kvm_run* run_;
  size_t run_size_;
  bool sync_regs_;
  std::atomic<bool> interrupted_{false};
  std::mutex thread_mutex_;
  // Dirty log with manual protection (see StartDirtyLog).
  static constexpr uint64_t kRelearnTakes = 64;
  bool manual_protect_ = false;
  std::vector<uint64_t> previous_;  // the last take's bitmap
  uint64_t takes_ = 0;
  bool vcpu_thread_running_ = false;
  pthread_t vcpu_thread_{};
};

absl::StatusOr<kvm_regs> KvmBackend::ReadRegs() {
  if (sync_regs_) return run_->s.regs.regs;
  kvm_regs regs{};
  if (absl::Status s = Ioctl(KVM_GET_REGS, &regs, "GET_REGS"); !s.ok())
    return s;
  return regs;
}

absl::Status KvmBackend::CompletePendingIo() {
  // KVM finishes an exit's I/O only on the next KVM_RUN, before it checks
  // immediate_exit (Documentation/virt/kvm/api.rst, "immediate_exit"): with
  // it set, KVM_RUN completes the `out` and returns EINTR without entering
  // the guest. Until then GET_REGS would show RIP still at the `out`, and a
  // snapshot of that state would run the hypercall again after a restore.
  const uint8_t previous =
      __atomic_exchange_n(&run_->immediate_exit, 1, __ATOMIC_ACQ_REL);
  if (sync_regs_) run_->kvm_valid_regs = KVM_SYNC_X86_REGS;
  // Safe: KVM_RUN takes no argument; results land in the mapped run_.
  int rc = ioctl(vcpu_.get(), KVM_RUN, 0);
  const int error = errno;
  if (sync_regs_) run_->kvm_dirty_regs = 0;
  if (previous == 0 && !interrupted_.load(std::memory_order_acquire)) {
    __atomic_store_n(&run_->immediate_exit, 0, __ATOMIC_RELEASE);
  }
  if (rc == 0 || error != EINTR) {
    return rc == 0 ? absl::InternalError(
                         "KVM_RUN with immediate_exit entered the guest")
                   : ErrnoStatus("KVM_RUN to complete a hypercall", error);
  }
  return absl::OkStatus();
}

absl::Status KvmBackend::WriteRax(uint64_t value) {
  if (sync_regs_) {
    run_->s.regs.regs.rax = value;
    run_->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
    return absl::OkStatus();
  }
  auto regs = ReadRegs();
  if (!regs.ok()) return regs.status();
  regs->rax = value;
  return Ioctl(KVM_SET_REGS, &*regs, "SET_REGS");
}

Exit KvmBackend::ExceptionExit(uint32_t vector) {
  Exit exit;
  exit.reason = Exit::Reason::kException;
  exit.vector = vector;
  exit.has_error_code = backend::ExceptionHasErrorCode(vector);
  // The stub runs on the IST stack with the CPU's frame on top:
  // [error code,] RIP, CS, RFLAGS, RSP, SS.
  auto regs = ReadRegs();
  if (regs.ok()) {
    uint64_t frame[2] = {0, 0};
    if (memory_
            .Read(regs->rsp,
                  absl::Span<uint8_t>(reinterpret_cast<uint8_t*>(frame),
                                      sizeof(frame)),
                  "exception frame")
            .ok()) {
      exit.error_code = exit.has_error_code ? frame[0] : 0;
      exit.rip = exit.has_error_code ? frame[1] : frame[0];
    }
  }
  kvm_sregs sregs{};
  if (Ioctl(KVM_GET_SREGS, &sregs, "GET_SREGS").ok()) exit.cr2 = sregs.cr2;
  return exit;
}

absl::StatusOr<Exit> KvmBackend::HandleIo(backend::HypercallHandler& handler,
                                          bool& resume) {
  resume = false;
  const auto& io = run_->io;
  uint32_t value = 0;
  if (io.direction == KVM_EXIT_IO_OUT && io.size == 4 && io.count == 1 &&
      io.data_offset + 4 <= run_size_) {
    // Safe: data_offset points into the kvm_run mapping (checked above).
    std::memcpy(&value, reinterpret_cast<uint8_t*>(run_) + io.data_offset, 4);
  }
  if (io.port == THAW_EXCEPTION_PORT && io.direction == KVM_EXIT_IO_OUT) {
    return ExceptionExit(value);
  }
  if (io.port == x86::kSyscallPort && io.direction == KVM_EXIT_IO_OUT) {
    return HandleSyscall(handler, resume);
  }
  if (io.port != THAW_HYPERCALL_PORT || io.direction != KVM_EXIT_IO_OUT ||
      io.size != 4 || io.count != 1) {
    Exit exit;
    exit.reason = Exit::Reason::kUnhandledIo;
    exit.address = io.port;
    if (auto regs = ReadRegs(); regs.ok()) exit.rip = regs->rip;
    return exit;
  }
  auto regs = ReadRegs();
  if (!regs.ok()) return regs.status();
  backend::Hypercall call{value, regs->rdi, regs->rsi, regs->rcx, regs->r8};
  backend::HypercallResult result = handler.Handle(call);
  if (absl::Status s = WriteRax(result.value); !s.ok()) return s;
  if (result.stop) {
    if (absl::Status s = CompletePendingIo(); !s.ok()) return s;
    Exit exit;
    exit.reason = Exit::Reason::kStopped;
    exit.rip = regs->rip;
    return exit;
  }
  resume = true;
  return Exit{};
}

absl::StatusOr<Exit> KvmBackend::HandleSyscall(
    backend::HypercallHandler& handler, bool& resume) {
  // The program's `syscall` entered the LSTAR stub (lib/x86/user_mode.h),
  // which stopped at its `out`: the registers are the program's, RCX its
  // return address.
  auto regs = ReadRegs();
  if (!regs.ok()) return regs.status();
  backend::Syscall call{
      regs->rax,
      {regs->rdi, regs->rsi, regs->rdx, regs->r10, regs->r8, regs->r9},
      regs->rcx};
  backend::SyscallResult result = handler.HandleSyscall(call);
  if (result.set_fs_base) {
    kvm_sregs sregs{};
    if (absl::Status s = Ioctl(KVM_GET_SREGS, &sregs, "GET_SREGS"); !s.ok()) {
      return s;
    }
    sregs.fs.base = result.fs_base;
    if (absl::Status s = Ioctl(KVM_SET_SREGS, &sregs, "SET_SREGS"); !s.ok()) {
      return s;
    }
  }
  if (!result.park) {
    if (absl::Status s = WriteRax(result.value); !s.ok()) return s;
  }
  if (result.park || result.stop) {
    // RIP moves past the `out` to the stub's sysretq, which returns to the
    // program when it is resumed (with RAX set by SetReturnValue if parked).
    if (absl::Status s = CompletePendingIo(); !s.ok()) return s;
    Exit exit;
    exit.reason = Exit::Reason::kStopped;
    exit.rip = regs->rcx;
    return exit;
  }
  resume = true;
  return Exit{};
}

absl::StatusOr<Exit> KvmBackend::Run(backend::HypercallHandler& handler) {
  {
    std::lock_guard<std::mutex> lock(thread_mutex_);
    vcpu_thread_ = pthread_self();
    vcpu_thread_running_ = true;
  }
  // The kick signal must reach this thread even if the caller blocks it.
  sigset_t kick, previous;
  sigemptyset(&kick);
  sigaddset(&kick, InterruptSignal());
  pthread_sigmask(SIG_UNBLOCK, &kick, &previous);

  absl::StatusOr<Exit> result;
  while (true) {
    if (interrupted_.load(std::memory_order_acquire)) {
      Exit exit;
      exit.reason = Exit::Reason::kInterrupted;
      result = exit;
      break;
    }
    if (sync_regs_) run_->kvm_valid_regs = KVM_SYNC_X86_REGS;
    // Safe: KVM_RUN takes no argument; results land in the mapped run_.
    int rc = ioctl(vcpu_.get(), KVM_RUN, 0);
    if (rc < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;  // flag checked above
      result = ErrnoStatus("KVM_RUN", errno);
      break;
    }
    if (sync_regs_) run_->kvm_dirty_regs = 0;  // consumed by this KVM_RUN
    Exit exit;
    switch (run_->exit_reason) {
      case KVM_EXIT_IO: {
        bool resume = false;
        result = HandleIo(handler, resume);
        if (result.ok() && resume) continue;
        break;
      }
      case KVM_EXIT_INTR:
        continue;
      case KVM_EXIT_HLT:
        exit.reason = Exit::Reason::kHalt;
        result = exit;
        break;
      case KVM_EXIT_SHUTDOWN: {
        exit.reason = Exit::Reason::kShutdown;
        // On AMD (SVM) KVM answers the shutdown by resetting the vCPU: the
        // registers then hold the reset state (CS base 0xFFFF0000, RIP
        // 0xFFF0), not the faulting instruction, which is lost. Intel
        // (VMX) keeps them.
        kvm_sregs sregs{};
        auto regs = ReadRegs();
        if (regs.ok() && ioctl(vcpu_.get(), KVM_GET_SREGS, &sregs) == 0) {
          exit.rip = regs->rip;
          exit.rip_known =
              !(sregs.cs.base == 0xFFFF0000ull && regs->rip == 0xFFF0);
        }
        result = exit;
        break;
      }
      case KVM_EXIT_MMIO:
        exit.reason = Exit::Reason::kUnmappedMemory;
        exit.address = run_->mmio.phys_addr;
        result = exit;
        break;
      case KVM_EXIT_FAIL_ENTRY:
        exit.reason = Exit::Reason::kInternalError;
        exit.detail =
            absl::StrFormat("KVM_EXIT_FAIL_ENTRY, hardware reason 0x%x",
                            run_->fail_entry.hardware_entry_failure_reason);
        result = exit;
        break;
      case KVM_EXIT_INTERNAL_ERROR:
        exit.reason = Exit::Reason::kInternalError;
        exit.detail = absl::StrCat("KVM_EXIT_INTERNAL_ERROR, suberror ",
                                   run_->internal.suberror);
        result = exit;
        break;
      default:
        exit.reason = Exit::Reason::kInternalError;
        exit.detail =
            absl::StrCat("unexpected KVM exit reason ", run_->exit_reason);
        result = exit;
        break;
    }
    break;
  }
  if (result.ok() && result->rip == 0 &&
      result->reason != Exit::Reason::kException) {
    if (auto regs = ReadRegs(); regs.ok()) result->rip = regs->rip;
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  std::lock_guard<std::mutex> lock(thread_mutex_);
  vcpu_thread_running_ = false;
  return result;
}

absl::StatusOr<VcpuState> KvmBackend::GetState() {
  // A register write still pending in the sync area (a hypercall result)
  // is newer than what KVM_GET_REGS would report.
  kvm_regs fresh{};
  const bool pending_write =
      sync_regs_ && (run_->kvm_dirty_regs & KVM_SYNC_X86_REGS);
  if (pending_write) {
    fresh = run_->s.regs.regs;
  } else if (absl::Status s = Ioctl(KVM_GET_REGS, &fresh, "GET_REGS");
             !s.ok()) {
    return s;
  }
  const kvm_regs* regs = &fresh;
  kvm_sregs sregs{};
  if (absl::Status s = Ioctl(KVM_GET_SREGS, &sregs, "GET_SREGS"); !s.ok()) {
    return s;
  }
  kvm_fpu fpu{};
  if (absl::Status s = Ioctl(KVM_GET_FPU, &fpu, "GET_FPU"); !s.ok()) return s;
  std::array<uint64_t, kPortableMsrCount> msrs{};
  for (size_t i = 0; i < kPortableMsrCount; ++i) {
    if (absl::Status st = AccessMsr(kGetMsrs, kPortableMsrs[i].index, msrs[i]);
        !st.ok()) {
      return st;
    }
  }

  VcpuState s;
  s.rax = regs->rax, s.rbx = regs->rbx, s.rcx = regs->rcx, s.rdx = regs->rdx;
  s.rsi = regs->rsi, s.rdi = regs->rdi, s.rsp = regs->rsp, s.rbp = regs->rbp;
  s.r8 = regs->r8, s.r9 = regs->r9, s.r10 = regs->r10, s.r11 = regs->r11;
  s.r12 = regs->r12, s.r13 = regs->r13, s.r14 = regs->r14, s.r15 = regs->r15;
  s.rip = regs->rip, s.rflags = regs->rflags;
  s.cs = FromKvm(sregs.cs), s.ds = FromKvm(sregs.ds), s.es = FromKvm(sregs.es);
  s.fs = FromKvm(sregs.fs), s.gs = FromKvm(sregs.gs), s.ss = FromKvm(sregs.ss);
  s.tr = FromKvm(sregs.tr), s.ldt = FromKvm(sregs.ldt);
  s.gdt = {sregs.gdt.base, sregs.gdt.limit};
  s.idt = {sregs.idt.base, sregs.idt.limit};
  s.cr0 = sregs.cr0, s.cr2 = sregs.cr2, s.cr3 = sregs.cr3, s.cr4 = sregs.cr4;
  s.efer = sregs.efer;
  s.msrs = msrs;
  s.fpu.fcw = fpu.fcw;
  s.fpu.fsw = fpu.fsw;
  s.fpu.ftw = fpu.ftwx;
  s.fpu.mxcsr = fpu.mxcsr;
  for (int i = 0; i < 8; ++i) std::memcpy(s.fpu.st[i].data(), fpu.fpr[i], 16);
  for (int i = 0; i < 16; ++i) std::memcpy(s.fpu.xmm[i].data(), fpu.xmm[i], 16);
  return s;
}

absl::Status KvmBackend::SetState(const VcpuState& s) {
  kvm_sregs sregs{};
  // Start from KVM's own values so fields we do not model (APIC base,
  // pending interrupt bitmap) keep their defaults.
  if (absl::Status st = Ioctl(KVM_GET_SREGS, &sregs, "GET_SREGS"); !st.ok()) {
    return st;
  }
  sregs.cs = ToKvm(s.cs), sregs.ds = ToKvm(s.ds), sregs.es = ToKvm(s.es);
  sregs.fs = ToKvm(s.fs), sregs.gs = ToKvm(s.gs), sregs.ss = ToKvm(s.ss);
  sregs.tr = ToKvm(s.tr), sregs.ldt = ToKvm(s.ldt);
  sregs.gdt.base = s.gdt.base, sregs.gdt.limit = s.gdt.limit;
  sregs.idt.base = s.idt.base, sregs.idt.limit = s.idt.limit;
  sregs.cr0 = s.cr0, sregs.cr2 = s.cr2, sregs.cr3 = s.cr3, sregs.cr4 = s.cr4;
  sregs.efer = s.efer;
  if (absl::Status st = Ioctl(KVM_SET_SREGS, &sregs, "SET_SREGS"); !st.ok()) {
    return st;
  }
  kvm_regs regs{};
  regs.rax = s.rax, regs.rbx = s.rbx, regs.rcx = s.rcx, regs.rdx = s.rdx;
  regs.rsi = s.rsi, regs.rdi = s.rdi, regs.rsp = s.rsp, regs.rbp = s.rbp;
  regs.r8 = s.r8, regs.r9 = s.r9, regs.r10 = s.r10, regs.r11 = s.r11;
  regs.r12 = s.r12, regs.r13 = s.r13, regs.r14 = s.r14, regs.r15 = s.r15;
  regs.rip = s.rip, regs.rflags = s.rflags;
  if (absl::Status st = Ioctl(KVM_SET_REGS, &regs, "SET_REGS"); !st.ok()) {
    return st;
  }
  if (sync_regs_) {
    // KVM_SET_REGS is authoritative; the sync area, which ReadRegs and
    // WriteRax use until the next exit refreshes it, must say the same
    // (a program parked in a read gets its RAX before the vCPU ever ran).
    run_->s.regs.regs = regs;
    run_->kvm_dirty_regs = 0;
  }
  kvm_fpu fpu{};
  fpu.fcw = s.fpu.fcw;
  fpu.fsw = s.fpu.fsw;
  fpu.ftwx = s.fpu.ftw;
  fpu.mxcsr = s.fpu.mxcsr;
  for (int i = 0; i < 8; ++i) std::memcpy(fpu.fpr[i], s.fpu.st[i].data(), 16);
  for (int i = 0; i < 16; ++i) std::memcpy(fpu.xmm[i], s.fpu.xmm[i].data(), 16);
  if (absl::Status st = Ioctl(KVM_SET_FPU, &fpu, "SET_FPU"); !st.ok())
    return st;
  for (size_t i = 0; i < kPortableMsrCount; ++i) {
    uint64_t value = s.msrs[i];
    if (absl::Status st = AccessMsr(kSetMsrs, kPortableMsrs[i].index, value);
        !st.ok()) {
      return st;
    }
  }
  return absl::OkStatus();
}

// Guests get the host's supported CPUID minus XSAVE and AVX: function guests
// are built without them, the emulated backend lacks them, and under nested
// SVM in QEMU the XCR0 round trip is broken (doc/platform-facts.md).
absl::Status SetCpuid(int kvm_fd, int vcpu_fd) {
  constexpr uint32_t kMaxEntries = 256;
  struct {
    CpuidHeader header;
    kvm_cpuid_entry2 entries[kMaxEntries];
  } cpuid{};
  cpuid.header.nent = kMaxEntries;
  // Safe: the C layout of kvm_cpuid2 with room for nent entries.
  if (IoctlRetryingEintr(kvm_fd, kGetSupportedCpuid, &cpuid) < 0) {
    return ErrnoStatus("KVM_GET_SUPPORTED_CPUID", errno);
  }
  for (uint32_t i = 0; i < cpuid.header.nent && i < kMaxEntries; ++i) {
    kvm_cpuid_entry2& e = cpuid.entries[i];
    if (e.function == 1) {
      e.ecx &= ~((1u << 26) | (1u << 27) | (1u << 28));  // XSAVE, OSXSAVE, AVX
    } else if (e.function == 7 && e.index == 0) {
      e.ebx &= ~((1u << 5) | (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) |
                 (1u << 31));  // AVX2, AVX-512 subsets
    } else if (e.function == 0xD) {
      e.eax = e.ebx = e.ecx = e.edx = 0;  // no XSAVE state components
    }
  }
  if (IoctlRetryingEintr(vcpu_fd, kSetCpuid2, &cpuid) < 0) {
    return ErrnoStatus("KVM_SET_CPUID2", errno);
  }
  return absl::OkStatus();
}

absl::Status Unavailable(absl::string_view what, int error_number) {
  return absl::UnavailableError(
      ErrnoStatus(absl::StrCat("KVM backend unavailable: ", what), error_number)
          .message());
}

}  // namespace

absl::StatusOr<std::unique_ptr<backend::Backend>> CreateKvmBackend(
    GuestMemory& memory) {
  Fd kvm(open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (kvm.get() < 0) return Unavailable("open /dev/kvm", errno);
  // Safe: these ioctls take an integer argument or none.
  int version = IoctlRetryingEintr(kvm.get(), KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) {
    return absl::UnavailableError(
        absl::StrCat("KVM backend unavailable: /dev/kvm API version ", version,
                     ", need ", KVM_API_VERSION));
  }
  Fd vm(IoctlRetryingEintr(kvm.get(), KVM_CREATE_VM, 0));
  if (vm.get() < 0) return Unavailable("KVM_CREATE_VM", errno);
  // Intel VMX needs three pages for a real-mode TSS; harmless elsewhere.
  IoctlRetryingEintr(vm.get(), KVM_SET_TSS_ADDR, kTssAddressForIntel);
  kvm_userspace_memory_region region{};
  region.slot = 0;
  region.guest_phys_addr = 0;
  region.memory_size = memory.size();
  region.userspace_addr = reinterpret_cast<uint64_t>(memory.host_base());
  // Safe: the mapping outlives the VM (the Vm destroys the backend first).
  if (IoctlRetryingEintr(vm.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0) {
    return ErrnoStatus("KVM_SET_USER_MEMORY_REGION", errno);
  }
  Fd vcpu(IoctlRetryingEintr(vm.get(), KVM_CREATE_VCPU, 0));
  if (vcpu.get() < 0) return Unavailable("KVM_CREATE_VCPU", errno);
  int run_size = IoctlRetryingEintr(kvm.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (run_size < static_cast<int>(sizeof(kvm_run))) {
    return Unavailable("KVM_GET_VCPU_MMAP_SIZE", errno);
  }
  if (absl::Status s = SetCpuid(kvm.get(), vcpu.get()); !s.ok()) return s;
  void* run = mmap(nullptr, run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   vcpu.get(), 0);
  if (run == MAP_FAILED) return ErrnoStatus("mmap kvm_run", errno);
  int sync =
      IoctlRetryingEintr(kvm.get(), KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
  bool sync_regs = sync > 0 && (sync & KVM_SYNC_X86_REGS);
  InstallInterruptHandler();
  return std::make_unique<KvmBackend>(
      memory, std::move(kvm), std::move(vm), std::move(vcpu),
      static_cast<kvm_run*>(run), run_size, sync_regs);
}

}  // namespace thaw::kvm
