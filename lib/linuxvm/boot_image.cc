#include "lib/linuxvm/boot_image.h"

#include <elf.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/little_endian.h"

namespace thaw::linuxvm {
namespace {

// Offsets into boot_params (the zero page) and its setup header
// (Documentation/x86/boot.rst, "The real-mode kernel header").
constexpr size_t kSetupSects = 0x1f1;
constexpr size_t kBootFlag = 0x1fe;
constexpr size_t kJump = 0x200;
constexpr size_t kHeaderMagic = 0x202;
constexpr size_t kVersion = 0x206;
constexpr size_t kTypeOfLoader = 0x210;
constexpr size_t kLoadFlags = 0x211;
constexpr size_t kRamdiskImage = 0x218;
constexpr size_t kRamdiskSize = 0x21c;
constexpr size_t kCmdLinePtr = 0x228;
constexpr size_t kInitrdAddrMax = 0x22c;
constexpr size_t kKernelAlignment = 0x230;
constexpr size_t kXLoadFlags = 0x236;
constexpr size_t kCmdlineSize = 0x238;
constexpr size_t kPrefAddress = 0x258;
constexpr size_t kInitSize = 0x260;
constexpr size_t kE820Entries = 0x1e8;
constexpr size_t kE820Table = 0x2d0;
constexpr size_t kE820MaxEntries = 128;
constexpr uint8_t kLoadedHigh = 0x01;
constexpr uint16_t kXlfKernel64 = 0x01;
constexpr uint16_t kMinProtocol = 0x020c;  // 2.12: the 64-bit entry
constexpr uint64_t kDefaultLoadAddress = 0x1000000;

const uint8_t* U8(absl::string_view s, size_t offset) {
  return reinterpret_cast<const uint8_t*>(s.data()) + offset;
}

absl::StatusOr<KernelImage> ParseBzImage(absl::string_view image,
                                         absl::string_view name) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("kernel \"", name, "\": not a usable bzImage: ", why));
  };
  if (image.size() < kInitSize + 4) return bad("shorter than a setup header");
  const uint16_t version = LoadLe16(U8(image, kVersion));
  if (version < kMinProtocol) {
    return bad(absl::StrFormat(
        "boot protocol %d.%02d; 2.12 or later is needed for the 64-bit entry",
        version >> 8, version & 0xff));
  }
  if (!(*U8(image, kLoadFlags) & kLoadedHigh)) {
    return bad("a zImage (loaded low); only bzImages are supported");
  }
  if (!(LoadLe16(U8(image, kXLoadFlags)) & kXlfKernel64)) {
    return bad("the kernel has no 64-bit entry point (XLF_KERNEL_64)");
  }
  const uint8_t setup_sects = *U8(image, kSetupSects);
  const size_t pm_offset = (setup_sects == 0 ? 4 : setup_sects) * 512 + 512;
  if (pm_offset >= image.size()) {
    return bad(absl::StrFormat(
        "the setup code (%u sectors) covers the whole %u-byte file",
        setup_sects, image.size()));
  }
  const size_t header_end = 0x202 + *U8(image, kJump + 1);
  if (header_end > image.size() || header_end > 0x300 ||
      header_end < kInitSize + 4) {
    return bad("the setup header's length is out of range");
  }
  KernelImage k;
  k.format = KernelImage::Format::kBzImage;
  uint64_t load = LoadLe64(U8(image, kPrefAddress));
  const uint32_t alignment = LoadLe32(U8(image, kKernelAlignment));
  if (load < kHighMemoryStart || load >= kMaxMemory ||
      (alignment != 0 && load % alignment != 0)) {
    load = kDefaultLoadAddress;
  }
  const uint64_t payload = image.size() - pm_offset;
  const uint64_t init_size = LoadLe32(U8(image, kInitSize));
  k.segments.push_back({load, image.substr(pm_offset), payload});
  k.entry = load + 0x200;
  k.load_start = load;
  k.load_end = load + std::max<uint64_t>(init_size, payload);
  k.setup_header = image.substr(kSetupSects, header_end - kSetupSects);
  k.cmdline_max = LoadLe32(U8(image, kCmdlineSize));
  k.initrd_address_max = LoadLe32(U8(image, kInitrdAddrMax));
  return k;
}

absl::StatusOr<KernelImage> ParseElf(absl::string_view image,
                                     absl::string_view name) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("kernel \"", name, "\": not a usable vmlinux: ", why));
  };
  Elf64_Ehdr eh;
  if (image.size() < sizeof eh) return bad("shorter than an ELF header");
  std::memcpy(&eh, image.data(), sizeof eh);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64 ||
      eh.e_type != ET_EXEC) {
    return bad("not a 64-bit little-endian x86-64 executable");
  }
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
      eh.e_phoff > image.size() ||
      (image.size() - eh.e_phoff) / sizeof(Elf64_Phdr) < eh.e_phnum) {
    return bad("the program headers lie outside the file");
  }
  KernelImage k;
  k.format = KernelImage::Format::kElf;
  k.load_start = UINT64_MAX;
  for (int i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, image.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
    if (ph.p_type != PT_LOAD) continue;
    if (ph.p_offset > image.size() ||
        ph.p_filesz > image.size() - ph.p_offset || ph.p_memsz < ph.p_filesz ||
        ph.p_paddr >= kMaxMemory || ph.p_memsz > kMaxMemory - ph.p_paddr) {
      return bad(
          absl::StrFormat("segment %d lies outside the file or memory", i));
    }
    if (ph.p_paddr < kHighMemoryStart) {
      return bad(absl::StrFormat("segment %d loads below 1 MiB (0x%x)", i,
                                 ph.p_paddr));
    }
    k.segments.push_back(
        {ph.p_paddr, image.substr(ph.p_offset, ph.p_filesz), ph.p_memsz});
    k.load_start = std::min<uint64_t>(k.load_start, ph.p_paddr);
    k.load_end = std::max<uint64_t>(k.load_end, ph.p_paddr + ph.p_memsz);
  }
  if (k.segments.empty()) return bad("no loadable segment");
  // vmlinux's entry is startup_64's virtual address; its physical address
  // is where the first segment's physical copy holds it.
  uint64_t entry = eh.e_entry;
  if (entry >= kMaxMemory) {
    Elf64_Phdr first;
    for (int i = 0; i < eh.e_phnum; ++i) {
      std::memcpy(&first, image.data() + eh.e_phoff + i * sizeof first,
                  sizeof first);
      if (first.p_type == PT_LOAD && entry >= first.p_vaddr &&
          entry - first.p_vaddr < first.p_memsz) {
        entry = entry - first.p_vaddr + first.p_paddr;
        break;
      }
    }
  }
  if (entry < k.load_start || entry >= k.load_end) {
    return bad(
        absl::StrFormat("the entry point 0x%x is in no segment", eh.e_entry));
  }
  k.entry = entry;
  return k;
}

// Intel MultiProcessor Specification 1.4: the floating pointer and the
// configuration table. Linux without ACPI learns the vCPUs, the IOAPIC and
// how ISA and PCI interrupts reach it from this table alone; without it
// the timer never ticks (doc/platform-facts.md).
std::string BuildMpTable(uint32_t table_address, int vcpus) {
  std::string t;
  auto u8 = [&](uint8_t v) { t.push_back(static_cast<char>(v)); };
  auto u16 = [&](uint16_t v) {
    u8(v & 0xff);
    u8(v >> 8);
  };
  auto u32 = [&](uint32_t v) {
    u16(v & 0xffff);
    u16(v >> 16);
  };
  auto str = [&](const char* s, size_t n) { t.append(s, n); };
  constexpr uint8_t kPciBus = 0, kIsaBus = 1;
  const uint8_t ioapic_id = static_cast<uint8_t>(vcpus);
  str("PCMP", 4);
  u16(0);  // length, below
  u8(4);   // revision 1.4
  u8(0);   // checksum, below
  str("THAW    ", 8);
  str("MICROVM     ", 12);
  u32(0);  // no OEM table
  u16(0);
  u16(0);  // entry count, below
  u32(kLocalApicAddress);
  u16(0);
  u8(0);
  u8(0);
  uint16_t entries = 0;
  for (int cpu = 0; cpu < vcpus; ++cpu) {
    u8(0);                          // processor
    u8(static_cast<uint8_t>(cpu));  // its local APIC id
    u8(0x14);                       // APIC version
    u8(cpu == 0 ? 3 : 1);           // enabled, bootstrap processor
    u32(0x600);                     // CPU signature
    u32(0x201);                     // features: FPU, APIC
    u32(0);
    u32(0);
    ++entries;
  }
  u8(1);
  u8(kPciBus);
  str("PCI   ", 6);
  ++entries;
  u8(1);
  u8(kIsaBus);
  str("ISA   ", 6);
  ++entries;
  u8(2);
  u8(ioapic_id);
  u8(0x11);
  u8(1);
  u32(kIoApicAddress);
  ++entries;
  for (int irq = 0; irq < 16; ++irq) {  // ISA IRQ n on IOAPIC pin n
    u8(3);
    u8(0);
    u16(0);
    u8(kIsaBus);
    u8(irq);
    u8(ioapic_id);
    u8(irq);
    ++entries;
  }
  // The virtio device's INTA: edge-triggered, active high (flags 0b0101),
  // as KVM_IRQ_LINE pulses it.
  u8(3);
  u8(0);
  u16(0x5);
  u8(kPciBus);
  u8(kVirtioPciSlot << 2);
  u8(ioapic_id);
  u8(kPciIrqPin);
  ++entries;
  u8(4);
  u8(3);
  u16(0);
  u8(kIsaBus);
  u8(0);
  u8(0xff);
  u8(0);
  ++entries;  // LINT0 ExtINT
  u8(4);
  u8(1);
  u16(0);
  u8(kIsaBus);
  u8(0);
  u8(0xff);
  u8(1);
  ++entries;  // LINT1 NMI
  StoreLe(reinterpret_cast<uint8_t*>(&t[4]), t.size(), 2);
  StoreLe(reinterpret_cast<uint8_t*>(&t[34]), entries, 2);
  uint8_t sum = 0;
  for (char c : t) sum += static_cast<uint8_t>(c);
  t[7] = static_cast<char>(-sum);

  std::string floating(16, '\0');
  std::memcpy(&floating[0], "_MP_", 4);
  StoreLe(reinterpret_cast<uint8_t*>(&floating[4]), table_address, 4);
  floating[8] = 1;  // length in 16-byte units
  floating[9] = 4;  // revision 1.4
  uint8_t fsum = 0;
  for (char c : floating) fsum += static_cast<uint8_t>(c);
  floating[10] = static_cast<char>(-fsum);
  return floating + t;
}

}  // namespace

absl::Status CheckVcpuCount(int vcpus) {
  if (vcpus < 1 || vcpus > kMaxVcpus) {
    return absl::InvalidArgumentError(
        absl::StrFormat("vcpus %d: must be from 1 to %d", vcpus, kMaxVcpus));
  }
  return absl::OkStatus();
}

absl::StatusOr<KernelImage> ParseKernel(absl::string_view image,
                                        absl::string_view name) {
  if (image.size() >= 4 && image.substr(0, 4) ==
                               "\x7f"
                               "ELF") {
    return ParseElf(image, name);
  }
  if (image.size() >= kHeaderMagic + 4 &&
      image.substr(kHeaderMagic, 4) == "HdrS") {
    return ParseBzImage(image, name);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "kernel \"", name,
      "\": neither a bzImage (no \"HdrS\" at 0x202) nor an ELF vmlinux"));
}

absl::StatusOr<BootLayout> PlaceBootImage(absl::Span<uint8_t> memory,
                                          const KernelImage& kernel,
                                          absl::string_view initrd,
                                          absl::string_view cmdline,
                                          int vcpus) {
  const uint64_t size = memory.size();
  if (size < (32ull << 20) || size > kMaxMemory) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Linux VM memory %u MiB: must be from 32 MiB to %u MiB",
                        size >> 20, kMaxMemory >> 20));
  }
  if (absl::Status s = CheckVcpuCount(vcpus); !s.ok()) return s;
  if (kernel.load_end > size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "the kernel needs memory up to %u MiB (its load address and "
        "init_size); the VM has %u MiB",
        (kernel.load_end + (1 << 20) - 1) >> 20, size >> 20));
  }
  if (cmdline.size() > kernel.cmdline_max || cmdline.size() >= kCmdlineMax ||
      cmdline.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "kernel command line: %u bytes, this kernel takes at most %u "
        "(and no NUL byte)",
        cmdline.size(),
        std::min<uint64_t>(kernel.cmdline_max, kCmdlineMax - 1)));
  }
  std::memset(memory.data(), 0, kHighMemoryStart);
  for (const KernelImage::Segment& s : kernel.segments) {
    // Bounds: ParseKernel and the load_end check above keep each segment
    // inside memory.
    std::memcpy(memory.data() + s.address, s.bytes.data(), s.bytes.size());
    std::memset(memory.data() + s.address + s.bytes.size(), 0,
                s.memory_size - s.bytes.size());
  }
  BootLayout layout;
  // The initramfs goes as high as the kernel allows, page aligned.
  if (!initrd.empty()) {
    const uint64_t top =
        std::min<uint64_t>(size, kernel.initrd_address_max + 1ull);
    if (initrd.size() > top ||
        ((top - initrd.size()) & ~0xfffull) < kernel.load_end) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "initramfs: %u bytes do not fit between the kernel (ending at "
          "%u MiB) and %u MiB; give the VM more memory",
          initrd.size(), kernel.load_end >> 20, top >> 20));
    }
    layout.initrd_address = (top - initrd.size()) & ~0xfffull;
    std::memcpy(memory.data() + layout.initrd_address, initrd.data(),
                initrd.size());
  }
  std::memcpy(memory.data() + kCmdlineAddress, cmdline.data(), cmdline.size());
  memory[kCmdlineAddress + cmdline.size()] = 0;

  uint8_t* zp = memory.data() + kZeroPageAddress;
  if (kernel.format == KernelImage::Format::kBzImage) {
    std::memcpy(zp + kSetupSects, kernel.setup_header.data(),
                kernel.setup_header.size());
  } else {
    StoreLe(zp + kBootFlag, 0xaa55, 2);
    std::memcpy(zp + kHeaderMagic, "HdrS", 4);
    StoreLe(zp + kKernelAlignment, 0x1000000, 4);
  }
  zp[kTypeOfLoader] = 0xff;  // undefined loader
  zp[kLoadFlags] |= kLoadedHigh;
  StoreLe(zp + kCmdLinePtr, kCmdlineAddress, 4);
  StoreLe(zp + kRamdiskImage, layout.initrd_address, 4);
  StoreLe(zp + kRamdiskSize, initrd.size(), 4);
  // e820: low memory below the EBDA (which holds the MP table), then all
  // of memory from 1 MiB.
  struct E820 {
    uint64_t address, size;
    uint32_t type;
  } __attribute__((packed));
  static_assert(sizeof(E820) == 20 && 2 <= kE820MaxEntries);
  const E820 e820[] = {{0, kLowMemoryEnd, 1},
                       {kHighMemoryStart, size - kHighMemoryStart, 1}};
  std::memcpy(zp + kE820Table, e820, sizeof e820);
  zp[kE820Entries] = 2;

  // Identity map of the first 1 GiB with 2 MiB pages: enough for the
  // kernel's entry, which builds its own tables at once.
  uint64_t* pml4 = reinterpret_cast<uint64_t*>(memory.data() + kPml4Address);
  uint64_t* pdpt = pml4 + 512;
  uint64_t* pd = pml4 + 1024;
  pml4[0] = (kPml4Address + 0x1000) | 3;
  pdpt[0] = (kPml4Address + 0x2000) | 3;
  for (uint64_t i = 0; i < 512; ++i) pd[i] = (i << 21) | 0x83;
  const uint64_t gdt[] = {0, 0x00af9b000000ffffull, 0x00cf93000000ffffull,
                          0x008f8b000000ffffull};
  std::memcpy(memory.data() + kGdtAddress, gdt, sizeof gdt);

  const std::string mp = BuildMpTable(kMpTableAddress + 16, vcpus);
  if (mp.size() > kHighMemoryStart - kMpTableAddress - 0x400) {
    return absl::InternalError("MP table larger than the EBDA");
  }
  std::memcpy(memory.data() + kMpTableAddress, mp.data(), mp.size());

  EntryState& e = layout.entry;
  e.rip = kernel.entry;
  e.rsi = kZeroPageAddress;
  e.rsp = kBootStackTop;
  e.cr0 = 0x80000011;  // PG | ET | PE
  e.cr3 = kPml4Address;
  e.cr4 = 0x20;    // PAE
  e.efer = 0x500;  // LMA | LME
  e.gdt_base = kGdtAddress;
  e.gdt_limit = sizeof gdt - 1;
  e.code_selector = 0x08;
  e.data_selector = 0x10;
  e.tss_selector = 0x18;
  return layout;
}

}  // namespace thaw::linuxvm
