#include "lib/emu/unicorn_backend.h"

#include <unicorn/unicorn.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/x86/boot_state.h"
#include "lib/x86/page_walk.h"
#include "thaw/abi.h"

namespace thaw::emu {
namespace {

using backend::Exit;

constexpr uint32_t kMsrEfer = 0xC0000080;
constexpr uint64_t kPage = 4096;
// A host-owned, mapped address in the boot-info page past the structure,
// where no guest code runs: the `until` address of every run, used to stop
// exactly at a parking hypercall (see Park()).
static_assert(sizeof(thaw_boot_info) < 0xFF0);
// Non-canonical: no page fault ever leaves it in CR2.
constexpr uint64_t kNoFaultCr2 = 0xDEAD000000000000ull;

absl::Status UcStatus(absl::string_view what, uc_err err) {
  return absl::InternalError(
      absl::StrCat("unicorn ", what, ": ", uc_strerror(err)));
}

// In 64-bit mode Unicorn loads FS and GS (the other selectors it only
// stores) when they are written: it reads their GDT descriptors through
// the guest's page tables and sets a clear accessed bit in memory. That
// happens outside a run, where a fault unwinds into a stale frame and
// takes the process down (found by fuzz/restore_fuzzer.cc), so each access
// it will make is walked here first. A descriptor it can read but would
// refuse (not present, not a data segment) comes back from the register
// write as an error, which SetState words.
absl::Status CheckSelectorLoad(const GuestMemory& memory, const VcpuState& s,
                               const char* name, uint16_t selector) {
  if ((selector & 0xFFFC) == 0) return absl::OkStatus();  // null: no read
  auto refuse = [&](const std::string& why) {
    return absl::FailedPreconditionError(
        absl::StrFormat("vCPU state: %s selector 0x%x cannot be loaded: %s",
                        name, selector, why));
  };
  if ((selector & 4) != 0) {
    return refuse("it names the LDT, which thaw does not restore");
  }
  const uint64_t index = selector & ~7u;
  if (index + 7 > s.gdt.limit) {
    return refuse(
        absl::StrFormat("it lies past the GDT's limit 0x%x", s.gdt.limit));
  }
  // Byte by byte: a descriptor may straddle two pages.
  uint8_t descriptor[8];
  for (int i = 0; i < 8; ++i) {
    auto physical = x86::TranslateForSupervisor(
        memory, s, s.gdt.base + index + i, /*write=*/false);
    if (!physical.ok()) return refuse(std::string(physical.status().message()));
    if (absl::Status read = memory.Read(
            *physical, absl::Span<uint8_t>(&descriptor[i], 1), "GDT");
        !read.ok()) {
      return refuse(std::string(read.message()));
    }
  }
  constexpr uint8_t kAccessed = 1;  // bit 40 of the descriptor
  if ((descriptor[5] & kAccessed) != 0) return absl::OkStatus();
  for (int i = 4; i < 8; ++i) {
    auto physical = x86::TranslateForSupervisor(
        memory, s, s.gdt.base + index + i, /*write=*/true);
    if (!physical.ok()) return refuse(std::string(physical.status().message()));
  }
  return absl::OkStatus();
}

class UnicornBackend final : public backend::Backend {
 public:
  UnicornBackend(GuestMemory& memory, uc_engine* uc)
      : memory_(memory), uc_(uc) {}
  ~UnicornBackend() override {
    if (initial_ != nullptr) uc_context_free(initial_);
    uc_close(uc_);
  }

  absl::Status Init() {
    // Safe: the host mapping outlives the engine (the Vm destroys the backend
    // first), and its size is a multiple of the 4 KiB page Unicorn requires.
    if (uc_err err = uc_mem_map_ptr(uc_, 0, memory_.size(), UC_PROT_ALL,
                                    memory_.host_base());
        err != UC_ERR_OK) {
      return UcStatus("map guest memory", err);
    }
    uc_hook hook;
    uc_err err =
        uc_hook_add(uc_, &hook, UC_HOOK_INSN, reinterpret_cast<void*>(&OnOut),
                    this, 1, 0, UC_X86_INS_OUT);
    if (err == UC_ERR_OK) {
      err =
          uc_hook_add(uc_, &hook, UC_HOOK_INSN, reinterpret_cast<void*>(&OnIn),
                      this, 1, 0, UC_X86_INS_IN);
    }
    if (err == UC_ERR_OK) {
      // A user-mode program's `syscall` (Linux programs). Unicorn runs the
      // hook whatever EFER.SCE says and then steps past the instruction
      // (doc/platform-facts.md).
      err = uc_hook_add(uc_, &hook, UC_HOOK_INSN,
                        reinterpret_cast<void*>(&OnSyscall), this, 1, 0,
                        UC_X86_INS_SYSCALL);
    }
    if (err == UC_ERR_OK) {
      err = uc_hook_add(uc_, &hook, UC_HOOK_INSN,
                        reinterpret_cast<void*>(&OnCpuid), this, 1, 0,
                        UC_X86_INS_CPUID);
    }
    if (err == UC_ERR_OK) {
      err = uc_hook_add(uc_, &hook, UC_HOOK_INTR,
                        reinterpret_cast<void*>(&OnInterrupt), this, 1, 0);
    }
    if (err == UC_ERR_OK) {
      err = uc_hook_add(uc_, &hook, UC_HOOK_MEM_UNMAPPED,
                        reinterpret_cast<void*>(&OnUnmapped), this, 1, 0);
    }
    if (err != UC_ERR_OK) return UcStatus("add hooks", err);
    // The CPU as created, in ring 0: SetState starts from it, because
    // register writes cannot lower the privilege level of a CPU that is in
    // ring 3 (a Linux program being reset).
    if (err = uc_context_alloc(uc_, &initial_); err != UC_ERR_OK) {
      return UcStatus("allocate a context", err);
    }
    if (err = uc_context_save(uc_, initial_); err != UC_ERR_OK) {
      return UcStatus("save the initial context", err);
    }
    return absl::OkStatus();
  }

  BackendKind kind() const override { return BackendKind::kEmulated; }

  absl::StatusOr<VcpuState> GetState() override;
  absl::Status SetState(const VcpuState& state) override;
  absl::Status SetReturnValue(uint64_t value) override {
    if (uc_err err = uc_reg_write(uc_, UC_X86_REG_RAX, &value);
        err != UC_ERR_OK) {
      return UcStatus("write RAX", err);
    }
    return absl::OkStatus();
  }
  absl::StatusOr<Exit> Run(backend::HypercallHandler& handler) override;

  void Interrupt() override {
    interrupted_.store(true, std::memory_order_release);
    // Safe from any thread: this is how Unicorn's own timeout thread stops a
    // running emulation. A stop that lands between runs is caught by the
    // flag check at the start of Run().
    uc_emu_stop(uc_);
  }
  void ClearInterrupt() override {
    interrupted_.store(false, std::memory_order_release);
  }
  // The emulator's dirty log: a write hook over guest memory records the
  // pages the guest stores to. Unicorn calls it for every store the guest
  // makes, so it is installed only for a Vm that will be reset.
  absl::Status StartDirtyLog() override {
    if (dirty_hook_ != 0) return absl::OkStatus();
    dirty_.assign((memory_.size() / kPage + 63) / 64, 0);
    if (uc_err err = uc_hook_add(uc_, &dirty_hook_, UC_HOOK_MEM_WRITE,
                                 reinterpret_cast<void*>(&OnWrite), this, 0,
                                 memory_.size() - 1);
        err != UC_ERR_OK) {
      dirty_hook_ = 0;
      return UcStatus("add the write hook (dirty log)", err);
    }
    return absl::OkStatus();
  }
  void StopDirtyLog() override {
    if (dirty_hook_ == 0) return;
    uc_hook_del(uc_, dirty_hook_);
    dirty_hook_ = 0;
    dirty_.clear();
    dirty_words_.clear();
  }
  absl::StatusOr<PageRuns> TakeDirtyLog() override {
    if (dirty_hook_ == 0) {
      return absl::FailedPreconditionError("the dirty log is not on");
    }
    // Only the words the hook set are read and cleared: the cost follows
    // what the guest wrote, not the size of its memory. Sorted (each word
    // is listed once), they give the runs in order, joined across words.
    std::sort(dirty_words_.begin(), dirty_words_.end());
    PageRuns runs;
    for (uint64_t w : dirty_words_) {
      AppendRunsFromBitmap(dirty_.data(), w, w + 1, memory_.size() / kPage,
                           runs);
      dirty_[w] = 0;
    }
    dirty_words_.clear();
    return runs;
  }
  void DiscardCachedCode(uint64_t address, uint64_t size) override {
    // Unicorn notices guest writes to translated code, but not memory the
    // host replaced; drop translations of the range. (Finding them walks the
    // guest page tables, whose accessed bits are preset: nothing is written.)
    uc_ctl_remove_cache(uc_, address, address + size);
  }

 private:
  uint64_t Reg(int id) {
    uint64_t value = 0;
    uc_reg_read(uc_, id, &value);
    return value;
  }
  void Park();
  void StopForUnhandledIo(uint32_t port) {
    Exit exit;
    exit.reason = Exit::Reason::kUnhandledIo;
    exit.address = port;
    exit.rip = Reg(UC_X86_REG_RIP);
    Stop(std::move(exit));
  }
  Exit ExceptionExit(uint32_t vector);
  enum class Delivery { kOk, kBadGate, kNotPresent, kBadStack, kUnmapped };
  Delivery CanDeliver(uint32_t vector);
  void Stop(Exit exit) {
    if (!pending_exit_) pending_exit_ = std::move(exit);
    uc_emu_stop(uc_);
  }

  static void OnOut(uc_engine*, uint32_t port, int size, uint32_t value,
                    void* self);
  static uint32_t OnIn(uc_engine*, uint32_t port, int size, void* self);
  static void OnSyscall(uc_engine*, void* self);
  static int OnCpuid(uc_engine*, void* self);
  static void OnInterrupt(uc_engine*, uint32_t vector, void* self);
  static bool OnUnmapped(uc_engine*, uc_mem_type type, uint64_t address,
                         int size, int64_t value, void* self);
  static void OnWrite(uc_engine*, uc_mem_type, uint64_t address, int size,
                      int64_t, void* opaque) {
    auto* self = static_cast<UnicornBackend*>(opaque);
    // A store of up to 16 bytes may straddle two pages.
    const uint64_t first = address / kPage;
    const uint64_t last = (address + size - 1) / kPage;
    for (uint64_t p = first; p <= last && p / 64 < self->dirty_.size(); ++p) {
      uint64_t& word = self->dirty_[p / 64];
      if (word == 0) self->dirty_words_.push_back(p / 64);
      word |= uint64_t{1} << (p % 64);
    }
  }

  GuestMemory& memory_;
  uc_engine* uc_;
  std::atomic<bool> interrupted_{false};
  backend::HypercallHandler* handler_ = nullptr;  // valid during Run()
  std::optional<Exit> pending_exit_;
  uint64_t resume_rip_ = 0;
  bool user_mode_ = false;  // the current Run() started in ring 3
  uc_context* initial_ = nullptr;
  // Set by Park(): the stack pointer once the parking `ret` is done.
  uint64_t park_rsp_ = 0;
  bool parked_ = false;
  uc_hook dirty_hook_ = 0;
  std::vector<uint64_t> dirty_;        // one bit per page written (dirty log)
  std::vector<uint64_t> dirty_words_;  // indices of dirty_'s non-zero words
};

void UnicornBackend::OnOut(uc_engine*, uint32_t port, int size, uint32_t value,
                           void* opaque) {
  auto* self = static_cast<UnicornBackend*>(opaque);
  if (port != THAW_HYPERCALL_PORT || size != 4) {
    self->StopForUnhandledIo(port);
    return;
  }
  backend::Hypercall call{value, self->Reg(UC_X86_REG_RDI),
                          self->Reg(UC_X86_REG_RSI), self->Reg(UC_X86_REG_RCX),
                          self->Reg(UC_X86_REG_R8)};
  backend::HypercallResult result = self->handler_->Handle(call);
  uc_reg_write(self->uc_, UC_X86_REG_RAX, &result.value);
  if (result.stop) self->Park();
}

void UnicornBackend::Park() {
  // uc_emu_stop() inside this hook ends the run with RIP rolled back to the
  // start of the translated block (measured); the instructions before `out`
  // have run and are not run again. Run() then completes the `ret` that the
  // ABI puts right after a parking `out` (doc/guest-abi.md): RIP to the
  // return address, RSP past it.
  uint64_t rsp = Reg(UC_X86_REG_RSP);
  uint64_t return_address = 0;
  if (!memory_
           .Read(rsp,
                 absl::Span<uint8_t>(
                     reinterpret_cast<uint8_t*>(&return_address), 8),
                 "hypercall return address")
           .ok()) {
    Exit exit;
    exit.reason = Exit::Reason::kUnmappedMemory;
    exit.address = rsp;
    Stop(std::move(exit));
    return;
  }
  resume_rip_ = return_address;
  park_rsp_ = rsp + 8;
  parked_ = true;
  Exit exit;
  exit.reason = Exit::Reason::kStopped;
  exit.rip = return_address;
  pending_exit_ = std::move(exit);
  uc_emu_stop(uc_);
}

void UnicornBackend::OnSyscall(uc_engine*, void* opaque) {
  auto* self = static_cast<UnicornBackend*>(opaque);
  // RIP is on the `syscall` instruction (2 bytes); Unicorn steps past it
  // after this hook. Like Linux, leave the return address in RCX and the
  // flags in R11, which Unicorn does not do.
  const uint64_t next = self->Reg(UC_X86_REG_RIP) + 2;
  const uint64_t flags = self->Reg(UC_X86_REG_RFLAGS);
  backend::Syscall call{self->Reg(UC_X86_REG_RAX),
                        {self->Reg(UC_X86_REG_RDI), self->Reg(UC_X86_REG_RSI),
                         self->Reg(UC_X86_REG_RDX), self->Reg(UC_X86_REG_R10),
                         self->Reg(UC_X86_REG_R8), self->Reg(UC_X86_REG_R9)},
                        next};
  uc_reg_write(self->uc_, UC_X86_REG_RCX, &next);
  uc_reg_write(self->uc_, UC_X86_REG_R11, &flags);
  backend::SyscallResult result = self->handler_->HandleSyscall(call);
  if (result.set_fs_base) {
    uc_reg_write(self->uc_, UC_X86_REG_FS_BASE, &result.fs_base);
  }
  if (!result.park) uc_reg_write(self->uc_, UC_X86_REG_RAX, &result.value);
  if (result.park || result.stop) {
    // uc_emu_stop() in this hook stops right after the instruction. (The
    // `until` trick of Park() cannot serve ring 3: Unicorn fetches from the
    // stop address before it checks it, and the host's page faults.)
    self->resume_rip_ = next;
    Exit exit;
    exit.reason = Exit::Reason::kStopped;
    exit.rip = next;
    self->Stop(std::move(exit));
  }
}

int UnicornBackend::OnCpuid(uc_engine*, void* opaque) {
  auto* self = static_cast<UnicornBackend*>(opaque);
  // Unicorn's own CPUID leaves out features it emulates (leaf 1 EDX lacks
  // FPU, TSC and MMX; 0x80000001 lacks SYSCALL and NX), and glibc refuses
  // to start on it ("CPU ISA level is lower than required";
  // doc/platform-facts.md). Report what the emulator runs: baseline x86-64
  // with SSE up to 4.2, no AVX and no XSAVE.
  const uint32_t leaf = static_cast<uint32_t>(self->Reg(UC_X86_REG_RAX));
  uint64_t a = 0, b = 0, c = 0, d = 0;
  switch (leaf) {
    case 0:
      a = 7;
      b = 0x756E6547, d = 0x49656E69, c = 0x6C65746E;  // "GenuineIntel"
      break;
    case 1:
      a = 0x000306A9;  // family 6
      b = 0x00010800;  // one logical processor, 64-byte CLFLUSH
      // SSE3 PCLMULQDQ SSSE3 CX16 SSE4.1 SSE4.2 POPCNT
      c = (1u << 0) | (1u << 1) | (1u << 9) | (1u << 13) | (1u << 19) |
          (1u << 20) | (1u << 23);
      // FPU VME DE PSE TSC MSR PAE MCE CX8 SEP MTRR PGE MCA CMOV PAT PSE36
      // CLFSH MMX FXSR SSE SSE2
      d = 0x078BF9FF;
      break;
    case 0x80000000:
      a = 0x80000008;
      break;
    case 0x80000001:
      c = 1u << 0;                               // LAHF/SAHF in 64-bit
      d = (1u << 11) | (1u << 20) | (1u << 29);  // SYSCALL NX LM
      break;
    case 0x80000008:
      a = 0x3028;  // 40 physical, 48 virtual address bits
      break;
    default:
      break;  // everything else (AVX, XSAVE, ...) absent
  }
  uc_reg_write(self->uc_, UC_X86_REG_RAX, &a);
  uc_reg_write(self->uc_, UC_X86_REG_RBX, &b);
  uc_reg_write(self->uc_, UC_X86_REG_RCX, &c);
  uc_reg_write(self->uc_, UC_X86_REG_RDX, &d);
  return 1;  // replaces the instruction
}

uint32_t UnicornBackend::OnIn(uc_engine*, uint32_t port, int, void* opaque) {
  static_cast<UnicornBackend*>(opaque)->StopForUnhandledIo(port);
  return 0xFFFFFFFF;
}

void UnicornBackend::OnInterrupt(uc_engine*, uint32_t vector, void* opaque) {
  auto* self = static_cast<UnicornBackend*>(opaque);
  self->Stop(self->ExceptionExit(vector));
}

// Whether the CPU could deliver exception `vector` through the guest's own
// tables: Unicorn never reads them (its hook sees the exception first), so
// a guest that wrecked them would otherwise get an answer no CPU gives.
// Checked: the IDT limit and the gate's present bit, the gate's code
// segment descriptor in the GDT, and the IST1 stack in the TSS (the stack
// every thaw gate uses) lying in mapped guest memory; and that the page
// tables still map the first GiB, where the tables themselves are.
UnicornBackend::Delivery UnicornBackend::CanDeliver(uint32_t vector) {
  uc_x86_mmr idtr{}, gdtr{}, tr{};
  uc_reg_read(uc_, UC_X86_REG_IDTR, &idtr);
  uc_reg_read(uc_, UC_X86_REG_GDTR, &gdtr);
  uc_reg_read(uc_, UC_X86_REG_TR, &tr);
  auto read64 = [&](uint64_t address, uint64_t& value) {
    return uc_mem_read(uc_, address, &value, sizeof(value)) == UC_ERR_OK;
  };
  uint64_t pml4e = 0;
  if (!read64(Reg(UC_X86_REG_CR3) & ~0xFFFull, pml4e) || !(pml4e & 1)) {
    return Delivery::kUnmapped;
  }
  if (idtr.limit < vector * 16 + 15) return Delivery::kBadGate;
  uint64_t gate = 0;
  if (!read64(idtr.base + 16 * vector, gate) || !(gate >> 47 & 1)) {
    return Delivery::kNotPresent;
  }
  const uint16_t selector = static_cast<uint16_t>(gate >> 16);
  uint64_t descriptor = 0;
  if ((selector & ~7u) + 7 > gdtr.limit ||
      !read64(gdtr.base + (selector & ~7u), descriptor) ||
      !(descriptor >> 47 & 1)) {
    return Delivery::kNotPresent;
  }
  const uint32_t ist = gate >> 32 & 7;
  if (ist != 0) {
    uint64_t stack = 0;
    if (!read64(tr.base + 0x24 + 8 * (ist - 1), stack) || stack < 0x1000 + 48 ||
        stack > memory_.size()) {
      return Delivery::kBadStack;
    }
  }
  return Delivery::kOk;
}

Exit UnicornBackend::ExceptionExit(uint32_t vector) {
  Exit exit;
  exit.rip = Reg(UC_X86_REG_RIP);
  // What a CPU does when delivery fails: the failure is itself an
  // exception (#GP for a gate past the limit, #NP for one not present, #PF
  // for an unusable stack); a second failure, or one while delivering a
  // contributory exception, is a double fault (#DF); and a failure while
  // delivering #DF is a triple fault.
  uint32_t delivered = vector;
  if (Delivery d = CanDeliver(vector); d != Delivery::kOk) {
    const uint32_t fault = d == Delivery::kBadGate      ? 13
                           : d == Delivery::kNotPresent ? 11
                                                        : 14;
    const bool contributory = vector == 0 || (vector >= 10 && vector <= 14);
    if (vector != 8 && !contributory && CanDeliver(fault) == Delivery::kOk) {
      delivered = fault;
    } else if (vector != 8 && CanDeliver(8) == Delivery::kOk) {
      delivered = 8;
    } else {
      exit.reason = Exit::Reason::kShutdown;
      return exit;
    }
  }
  exit.reason = Exit::Reason::kException;
  exit.vector = delivered;
  // Unicorn does not report the error code; has_error_code stays false.
  exit.cr2 = Reg(UC_X86_REG_CR2);
  if (vector == 8 && user_mode_ && exit.cr2 != kNoFaultCr2) exit.vector = 14;
  if (exit.cr2 == kNoFaultCr2) exit.cr2 = 0;
  return exit;
}

bool UnicornBackend::OnUnmapped(uc_engine*, uc_mem_type, uint64_t address, int,
                                int64_t, void* opaque) {
  auto* self = static_cast<UnicornBackend*>(opaque);
  // The host's page tables map exactly guest memory, so on a real CPU (and
  // on KVM) this access is a not-present #PF at `address`. Unicorn checks
  // its own memory map first; report what the hardware would.
  Exit exit;
  exit.reason = Exit::Reason::kException;
  exit.vector = 14;
  exit.cr2 = address;
  exit.rip = self->Reg(UC_X86_REG_RIP);
  if (!self->pending_exit_) self->pending_exit_ = std::move(exit);
  return false;  // Unicorn ends the run with UC_ERR_*_UNMAPPED
}

absl::StatusOr<Exit> UnicornBackend::Run(backend::HypercallHandler& handler) {
  Exit exit;
  if (interrupted_.load(std::memory_order_acquire)) {
    exit.reason = Exit::Reason::kInterrupted;
    exit.rip = Reg(UC_X86_REG_RIP);
    return exit;
  }
  handler_ = &handler;
  pending_exit_.reset();
  uint64_t rip = Reg(UC_X86_REG_RIP);
  // Unicorn never delivers an exception (the INTR hook ends the run), so
  // the emulated CPU's memory of the last one is never cleared, and after a
  // user-mode program was stopped and resumed it reports the program's next
  // page fault as a double fault, with RIP and CR2 right (measured). CR2 is
  // set to a value no fault can produce, so a double fault in ring 3 that
  // changed it is known to be the page fault it was.
  user_mode_ = (Reg(UC_X86_REG_CS) & 3) == 3;
  const uint64_t cr2 = Reg(UC_X86_REG_CR2);
  if (user_mode_) uc_reg_write(uc_, UC_X86_REG_CR2, &kNoFaultCr2);
  // No `until` address (0 is none to Unicorn 2.0.1): after a run that
  // reached its `until`, Unicorn drops the translation there, so every
  // call translated a block again, whose memory (code-buffer space and a
  // tree node, ~300 bytes) came back only when the whole translation cache
  // was flushed: a long-lived Vm grew without bound. Runs end in hooks
  // instead (Park, Stop).
  parked_ = false;
  uc_err err = uc_emu_start(uc_, rip, 0, 0, 0);
  if (user_mode_ && Reg(UC_X86_REG_CR2) == kNoFaultCr2) {
    uc_reg_write(uc_, UC_X86_REG_CR2, &cr2);
  }
  handler_ = nullptr;
  exit.rip = Reg(UC_X86_REG_RIP);
  if (pending_exit_) {
    if (pending_exit_->reason == Exit::Reason::kStopped) {
      uc_reg_write(uc_, UC_X86_REG_RIP, &resume_rip_);
      if (parked_) uc_reg_write(uc_, UC_X86_REG_RSP, &park_rsp_);
    }
    return *std::move(pending_exit_);
  }
  if (exit.rip == 0 && err == UC_ERR_OK && !interrupted_.load()) {
    // Address 0 is Unicorn's "no until": a guest that jumps there ends the
    // run. The CPU would take a page fault fetching from it (as on KVM).
    Exit fault = ExceptionExit(14);
    fault.cr2 = 0;
    return fault;
  }
  if (interrupted_.load(std::memory_order_acquire)) {
    exit.reason = Exit::Reason::kInterrupted;
    return exit;
  }
  switch (err) {
    case UC_ERR_OK:
      // The only other way a run ends cleanly is `hlt` (RIP is past it).
      exit.reason = Exit::Reason::kHalt;
      return exit;
    case UC_ERR_INSN_INVALID:
      return ExceptionExit(6);  // #UD, e.g. ud2 or an AVX instruction
    default:
      exit.reason = Exit::Reason::kInternalError;
      exit.detail = absl::StrCat("unicorn: ", uc_strerror(err));
      return exit;
  }
}

absl::StatusOr<VcpuState> UnicornBackend::GetState() {
  VcpuState s;
  const std::pair<int, uint64_t*> gprs[] = {
      {UC_X86_REG_RAX, &s.rax}, {UC_X86_REG_RBX, &s.rbx},
      {UC_X86_REG_RCX, &s.rcx}, {UC_X86_REG_RDX, &s.rdx},
      {UC_X86_REG_RSI, &s.rsi}, {UC_X86_REG_RDI, &s.rdi},
      {UC_X86_REG_RSP, &s.rsp}, {UC_X86_REG_RBP, &s.rbp},
      {UC_X86_REG_R8, &s.r8},   {UC_X86_REG_R9, &s.r9},
      {UC_X86_REG_R10, &s.r10}, {UC_X86_REG_R11, &s.r11},
      {UC_X86_REG_R12, &s.r12}, {UC_X86_REG_R13, &s.r13},
      {UC_X86_REG_R14, &s.r14}, {UC_X86_REG_R15, &s.r15},
      {UC_X86_REG_RIP, &s.rip}, {UC_X86_REG_RFLAGS, &s.rflags},
      {UC_X86_REG_CR0, &s.cr0}, {UC_X86_REG_CR2, &s.cr2},
      {UC_X86_REG_CR3, &s.cr3}, {UC_X86_REG_CR4, &s.cr4},
  };
  for (auto [id, out] : gprs) *out = Reg(id);
  uc_x86_mmr gdtr{}, idtr{}, tr{};
  uc_reg_read(uc_, UC_X86_REG_GDTR, &gdtr);
  uc_reg_read(uc_, UC_X86_REG_IDTR, &idtr);
  uc_reg_read(uc_, UC_X86_REG_TR, &tr);
  s.gdt = {gdtr.base, static_cast<uint16_t>(gdtr.limit)};
  s.idt = {idtr.base, static_cast<uint16_t>(idtr.limit)};
  // Unicorn reports selectors only; attributes come from the guest's GDT.
  const std::pair<int, Segment*> segments[] = {
      {UC_X86_REG_CS, &s.cs}, {UC_X86_REG_DS, &s.ds}, {UC_X86_REG_ES, &s.es},
      {UC_X86_REG_FS, &s.fs}, {UC_X86_REG_GS, &s.gs}, {UC_X86_REG_SS, &s.ss},
  };
  for (auto [id, out] : segments) {
    *out = x86::DecodeSegment(memory_, s.gdt.base, s.gdt.limit,
                              static_cast<uint16_t>(Reg(id)));
  }
  s.fs.base = Reg(UC_X86_REG_FS_BASE);
  s.gs.base = Reg(UC_X86_REG_GS_BASE);
  s.tr = x86::DecodeSegment(memory_, s.gdt.base, s.gdt.limit, tr.selector);
  s.tr.base = tr.base;
  s.tr.limit = tr.limit;
  s.ldt.type = 0x2;
  s.ldt.present = true;
  s.ldt.unusable = true;
  uc_x86_msr msr{kMsrEfer, 0};
  uc_reg_read(uc_, UC_X86_REG_MSR, &msr);
  s.efer = msr.value;
  for (size_t i = 0; i < kPortableMsrCount; ++i) {
    msr = {kPortableMsrs[i].index, 0};
    uc_reg_read(uc_, UC_X86_REG_MSR, &msr);
    s.msrs[i] = msr.value;
  }
  s.fpu.fcw = static_cast<uint16_t>(Reg(UC_X86_REG_FPCW));
  s.fpu.fsw = static_cast<uint16_t>(Reg(UC_X86_REG_FPSW));
  s.fpu.ftw = static_cast<uint8_t>(Reg(UC_X86_REG_FPTAG));
  s.fpu.mxcsr = static_cast<uint32_t>(Reg(UC_X86_REG_MXCSR));
  for (int i = 0; i < 16; ++i) {
    uc_reg_read(uc_, UC_X86_REG_XMM0 + i, s.fpu.xmm[i].data());
  }
  for (int i = 0; i < 8; ++i) {
    uc_reg_read(uc_, UC_X86_REG_ST0 + i, s.fpu.st[i].data());
  }
  return s;
}

absl::Status UnicornBackend::SetState(const VcpuState& s) {
  // The order matters (doc/platform-facts.md): descriptor tables, then CR4,
  // EFER, CR3, CR0, then selectors (which Unicorn loads through the GDT), then
  // FS/GS bases, MSRs, general registers and the FPU.
  uc_x86_mmr gdtr{0, s.gdt.base, s.gdt.limit, 0};
  uc_x86_mmr idtr{0, s.idt.base, s.idt.limit, 0};
  uc_err err = uc_context_restore(uc_, initial_);
  if (err == UC_ERR_OK) err = uc_reg_write(uc_, UC_X86_REG_GDTR, &gdtr);
  auto write = [&](int id, uint64_t value) {
    if (err == UC_ERR_OK) err = uc_reg_write(uc_, id, &value);
  };
  if (err == UC_ERR_OK) err = uc_reg_write(uc_, UC_X86_REG_IDTR, &idtr);
  write(UC_X86_REG_CR4, s.cr4);
  if (err == UC_ERR_OK) {
    uc_x86_msr efer{kMsrEfer, s.efer};
    err = uc_reg_write(uc_, UC_X86_REG_MSR, &efer);
  }
  write(UC_X86_REG_CR3, s.cr3);
  write(UC_X86_REG_CR0, s.cr0);
  write(UC_X86_REG_SS, s.ss.selector);
  write(UC_X86_REG_DS, s.ds.selector);
  write(UC_X86_REG_ES, s.es.selector);
  write(UC_X86_REG_CS, s.cs.selector);
  if (err != UC_ERR_OK) return UcStatus("set vCPU state", err);
  for (auto [name, id, selector] :
       {std::tuple{"FS", UC_X86_REG_FS, s.fs.selector},
        std::tuple{"GS", UC_X86_REG_GS, s.gs.selector}}) {
    if (absl::Status check = CheckSelectorLoad(memory_, s, name, selector);
        !check.ok()) {
      return check;
    }
    uint64_t value = selector;
    if (uc_reg_write(uc_, id, &value) != UC_ERR_OK) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "vCPU state: %s selector 0x%x cannot be loaded: its GDT descriptor "
          "is not a present data or readable code segment ring 0 may use",
          name, selector));
    }
  }
  write(UC_X86_REG_FS_BASE, s.fs.base);
  write(UC_X86_REG_GS_BASE, s.gs.base);
  if (err == UC_ERR_OK) {
    uc_x86_mmr tr{s.tr.selector, s.tr.base, s.tr.limit, 0};
    err = uc_reg_write(uc_, UC_X86_REG_TR, &tr);
  }
  for (size_t i = 0; i < kPortableMsrCount && err == UC_ERR_OK; ++i) {
    uc_x86_msr msr{kPortableMsrs[i].index, s.msrs[i]};
    err = uc_reg_write(uc_, UC_X86_REG_MSR, &msr);
  }
  write(UC_X86_REG_CR2, s.cr2);
  write(UC_X86_REG_RAX, s.rax);
  write(UC_X86_REG_RBX, s.rbx);
  write(UC_X86_REG_RCX, s.rcx);
  write(UC_X86_REG_RDX, s.rdx);
  write(UC_X86_REG_RSI, s.rsi);
  write(UC_X86_REG_RDI, s.rdi);
  write(UC_X86_REG_RSP, s.rsp);
  write(UC_X86_REG_RBP, s.rbp);
  write(UC_X86_REG_R8, s.r8);
  write(UC_X86_REG_R9, s.r9);
  write(UC_X86_REG_R10, s.r10);
  write(UC_X86_REG_R11, s.r11);
  write(UC_X86_REG_R12, s.r12);
  write(UC_X86_REG_R13, s.r13);
  write(UC_X86_REG_R14, s.r14);
  write(UC_X86_REG_R15, s.r15);
  write(UC_X86_REG_RFLAGS, s.rflags);
  write(UC_X86_REG_RIP, s.rip);
  write(UC_X86_REG_FPCW, s.fpu.fcw);
  write(UC_X86_REG_FPSW, s.fpu.fsw);
  write(UC_X86_REG_FPTAG, s.fpu.ftw);
  write(UC_X86_REG_MXCSR, s.fpu.mxcsr);
  for (int i = 0; i < 16 && err == UC_ERR_OK; ++i) {
    err = uc_reg_write(uc_, UC_X86_REG_XMM0 + i, s.fpu.xmm[i].data());
  }
  for (int i = 0; i < 8 && err == UC_ERR_OK; ++i) {
    err = uc_reg_write(uc_, UC_X86_REG_ST0 + i, s.fpu.st[i].data());
  }
  if (err != UC_ERR_OK) return UcStatus("set vCPU state", err);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<backend::Backend>> CreateUnicornBackend(
    GuestMemory& memory) {
  uc_engine* uc = nullptr;
  if (uc_err err = uc_open(UC_ARCH_X86, UC_MODE_64, &uc); err != UC_ERR_OK) {
    return absl::UnavailableError(absl::StrCat(
        "unicorn: cannot open an x86-64 engine: ", uc_strerror(err)));
  }
  auto backend = std::make_unique<UnicornBackend>(memory, uc);
  if (absl::Status s = backend->Init(); !s.ok()) return s;
  return backend;
}

}  // namespace thaw::emu
