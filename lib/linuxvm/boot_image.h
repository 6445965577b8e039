// A Linux kernel and initramfs placed in guest memory the way the x86 boot
// protocol (Documentation/x86/boot.rst) and Firecracker lay them out, ready
// for the 64-bit entry: the kernel, the zero page (boot_params) with the
// e820 map, the command line, the initramfs, identity-mapped page tables, a
// GDT and an Intel MP table naming the vCPUs, the IOAPIC and the interrupt
// routing. The guest-physical map is in doc/linux-vm.md.
//
// Everything here is a pure function of its inputs and guest memory: a
// malformed image is refused before any vCPU exists.
#ifndef THAW_LIB_LINUXVM_BOOT_IMAGE_H_
#define THAW_LIB_LINUXVM_BOOT_IMAGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace thaw::linuxvm {

// Fixed guest-physical addresses.
inline constexpr uint64_t kGdtAddress = 0x500;
inline constexpr uint64_t kZeroPageAddress = 0x7000;
inline constexpr uint64_t kBootStackTop = 0x8ff0;
inline constexpr uint64_t kPml4Address = 0x9000;
inline constexpr uint64_t kCmdlineAddress = 0x20000;
inline constexpr uint64_t kCmdlineMax = 0x10000;
inline constexpr uint64_t kMpTableAddress = 0x9fc00;  // the EBDA
inline constexpr uint64_t kLowMemoryEnd = 0x9fc00;
inline constexpr uint64_t kHighMemoryStart = 0x100000;
inline constexpr uint64_t kIoApicAddress = 0xfec00000;
inline constexpr uint64_t kLocalApicAddress = 0xfee00000;
// Guest memory ends below the IOAPIC/LAPIC window (one e820 RAM range).
inline constexpr uint64_t kMaxMemory = 3ull << 30;
inline constexpr int kMaxVcpus = 16;
// InvalidArgument ("vcpus N: must be from 1 to 16") outside that range.
absl::Status CheckVcpuCount(int vcpus);
// The IOAPIC pin the PCI device in slot 1 (virtio console) interrupts on;
// ISA IRQs 0-15 are pins 0-15.
inline constexpr int kPciIrqPin = 16;
inline constexpr int kVirtioPciSlot = 1;

// A kernel image, checked: what to copy where and where to enter.
struct KernelImage {
  enum class Format { kBzImage, kElf };
  Format format;
  // (guest address, bytes) to copy; for an ELF one per PT_LOAD segment.
  struct Segment {
    uint64_t address;
    absl::string_view bytes;  // views the caller's image
    uint64_t memory_size;     // >= bytes.size(); the rest is zeroed
  };
  std::vector<Segment> segments;
  uint64_t entry = 0;       // 64-bit entry point
  uint64_t load_start = 0;  // lowest address the kernel occupies
  uint64_t load_end = 0;    // highest, including its init_size room
  // bzImage: the setup header (boot_params offset 0x1f1 onwards).
  absl::string_view setup_header;
  uint64_t cmdline_max = 2047;
  uint64_t initrd_address_max = 0x37ffffff;
};

// Parses a bzImage (boot protocol >= 2.12 with the 64-bit entry) or an
// x86-64 vmlinux ELF. `image` must outlive the result. InvalidArgument
// naming `name` and what is wrong otherwise.
absl::StatusOr<KernelImage> ParseKernel(absl::string_view image,
                                        absl::string_view name);

// The vCPU state the 64-bit entry expects (boot protocol "64-bit boot").
struct EntryState {
  uint64_t rip, rsi, rsp;
  uint64_t cr0, cr3, cr4, efer;
  uint64_t gdt_base;
  uint16_t gdt_limit;
  uint16_t code_selector, data_selector, tss_selector;
};

struct BootLayout {
  EntryState entry;
  uint64_t initrd_address = 0;
};

// Writes the kernel, `initrd`, `cmdline`, the zero page, page tables, GDT
// and an MP table for `vcpus` vCPUs into `memory` (guest-physical 0 at
// memory[0]). InvalidArgument when something does not fit, naming it.
absl::StatusOr<BootLayout> PlaceBootImage(absl::Span<uint8_t> memory,
                                          const KernelImage& kernel,
                                          absl::string_view initrd,
                                          absl::string_view cmdline, int vcpus);

}  // namespace thaw::linuxvm

#endif  // THAW_LIB_LINUXVM_BOOT_IMAGE_H_
