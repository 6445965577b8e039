// The <linux/kvm.h> structures that C++ cannot take from the header as they
// are. kvm_cpuid2 and kvm_msrs end in flexible array members that g++ lays
// out differently from C (entries at offset 16, not 8), which also changes
// the size encoded in their ioctl numbers: with the header's types the
// ioctls are the wrong ones and the entries shift by 4 bytes
// (doc/platform-facts.md). Both KVM monitors (the function-guest backend and
// the Linux machine) use these instead. Every other ioctl of <linux/kvm.h>
// thaw uses has the same number in C and C++ (checked by compiling the list
// both ways).
#ifndef THAW_LIB_KVM_KVM_UAPI_H_
#define THAW_LIB_KVM_KVM_UAPI_H_

#include <linux/kvm.h>
#include <signal.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstdint>
#include <mutex>

namespace thaw::kvm {

struct CpuidHeader {
  uint32_t nent;
  uint32_t padding;
};
struct MsrsHeader {
  uint32_t nmsrs;
  uint32_t pad;
};
static_assert(sizeof(kvm_cpuid_entry2) == 40 && sizeof(kvm_msr_entry) == 16);
constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
constexpr unsigned long kGetCpuid2 = _IOWR(KVMIO, 0x91, CpuidHeader);
constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, MsrsHeader);
constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
// kvm_msr_list and kvm_xsave end in flexible arrays too (g++: 8 and 4100
// bytes, C: 4 and 4096): their ioctls are declared here with C's sizes.
constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, uint32_t);
struct XsaveRegion {
  uint32_t region[1024];
};
constexpr unsigned long kGetXsave = _IOR(KVMIO, 0xa4, XsaveRegion);
constexpr unsigned long kSetXsave = _IOW(KVMIO, 0xa5, XsaveRegion);

// A CPUID table in the C layout, with room for every entry KVM reports.
struct CpuidTable {
  CpuidHeader header{};
  kvm_cpuid_entry2 entries[256];
};

// ioctl(), retried while a signal interrupts it: creating a VM waits in the
// kernel (it starts a worker thread), and a stray kick signal meant for
// another vCPU on this thread must not fail it. Every KVM ioctl but KVM_RUN
// goes through it; KVM_RUN's EINTR is how a kick arrives.
template <typename Arg>
int IoctlRetryingEintr(int fd, unsigned long request, Arg arg) {
  int rc;
  do {
    rc = ioctl(fd, request, arg);
  } while (rc < 0 && errno == EINTR);
  return rc;
}

// The signal that kicks a vCPU thread out of KVM_RUN (EINTR).
inline int InterruptSignal() { return SIGRTMIN + 5; }

// Installs a no-op handler for InterruptSignal() unless the host program
// has one: its only job is to make KVM_RUN return EINTR.
inline void InstallInterruptHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction current {};
    sigaction(InterruptSignal(), nullptr, &current);
    if (current.sa_handler != SIG_DFL) return;  // the host program owns it
    struct sigaction action {};
    action.sa_handler = [](int) {};
    sigemptyset(&action.sa_mask);
    sigaction(InterruptSignal(), &action, nullptr);
  });
}

}  // namespace thaw::kvm

#endif  // THAW_LIB_KVM_KVM_UAPI_H_
