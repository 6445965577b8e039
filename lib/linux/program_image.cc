#include "lib/linux/program_image.h"

#include <elf.h>

#include <cstring>

#include "absl/strings/str_format.h"
#include "lib/elf_bytes.h"

namespace thaw::linux_abi {
namespace {

constexpr uint64_t kPage = 4096;
uint64_t PageDown(uint64_t v) { return v & ~(kPage - 1); }
uint64_t PageUp(uint64_t v) { return PageDown(v + kPage - 1); }

}  // namespace

absl::StatusOr<uint64_t> LoadSpan(absl::Span<const uint8_t> elf,
                                  absl::string_view name) {
  if (elf.size() < sizeof(Elf64_Ehdr)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("program \"%s\": too short for an ELF header", name));
  }
  auto header = ReadAt<Elf64_Ehdr>(elf, 0);
  if (header.e_phentsize != sizeof(Elf64_Phdr) ||
      !InBounds(header.e_phoff, uint64_t{header.e_phnum} * sizeof(Elf64_Phdr),
                elf.size())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "program \"%s\": program header table lies outside the file", name));
  }
  uint64_t lowest = UINT64_MAX, highest = 0;
  for (int i = 0; i < header.e_phnum; ++i) {
    auto ph = ReadAt<Elf64_Phdr>(elf, header.e_phoff + i * sizeof(Elf64_Phdr));
    if (ph.p_type != PT_LOAD) continue;
    if (ph.p_vaddr + ph.p_memsz < ph.p_vaddr) {
      return absl::InvalidArgumentError(
          absl::StrFormat("program \"%s\": segment %d wraps around", name, i));
    }
    lowest = std::min(lowest, PageDown(ph.p_vaddr));
    highest = std::max(highest, PageUp(ph.p_vaddr + ph.p_memsz));
  }
  if (lowest == UINT64_MAX) {
    return absl::InvalidArgumentError(
        absl::StrFormat("program \"%s\": no loadable segment", name));
  }
  return highest - lowest;
}

absl::StatusOr<ProgramImage> LoadProgram(
    absl::Span<const uint8_t> elf, absl::string_view name, GuestMemory& memory,
    uint64_t window_begin, uint64_t window_end, uint64_t dyn_base) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrFormat("program \"%s\": %s", name, why));
  };
  Elf64_Ehdr header;
  if (const char* problem = ReadElf64Header(elf, &header)) return bad(problem);
  if (header.e_type != ET_EXEC && header.e_type != ET_DYN) {
    return bad("not an executable (ET_EXEC or ET_DYN)");
  }
  if (header.e_phentsize != sizeof(Elf64_Phdr) || header.e_phnum == 0 ||
      !InBounds(header.e_phoff, uint64_t{header.e_phnum} * sizeof(Elf64_Phdr),
                elf.size())) {
    return bad("program header table lies outside the file");
  }
  std::vector<Elf64_Phdr> phdrs;
  uint64_t lowest = UINT64_MAX;
  ProgramImage image;
  for (int i = 0; i < header.e_phnum; ++i) {
    phdrs.push_back(
        ReadAt<Elf64_Phdr>(elf, header.e_phoff + i * sizeof(Elf64_Phdr)));
    const Elf64_Phdr& ph = phdrs.back();
    if (ph.p_type == PT_INTERP) {
      if (ph.p_filesz < 2 || ph.p_filesz > 4096 ||
          !InBounds(ph.p_offset, ph.p_filesz, elf.size())) {
        return bad("PT_INTERP lies outside the file");
      }
      image.interpreter.assign(
          reinterpret_cast<const char*>(elf.data() + ph.p_offset), ph.p_filesz);
      image.interpreter.resize(std::strlen(image.interpreter.c_str()));
    }
    if (ph.p_type == PT_LOAD) lowest = std::min(lowest, PageDown(ph.p_vaddr));
  }
  if (lowest == UINT64_MAX) return bad("no loadable segment");

  image.bias = header.e_type == ET_DYN ? dyn_base - lowest : 0;
  image.entry = header.e_entry + image.bias;
  image.phent = header.e_phentsize;
  image.phnum = header.e_phnum;
  image.image_begin = UINT64_MAX;
  bool entry_loaded = false;
  for (size_t i = 0; i < phdrs.size(); ++i) {
    const Elf64_Phdr& ph = phdrs[i];
    if (ph.p_type != PT_LOAD) continue;
    if (ph.p_filesz > ph.p_memsz) {
      return bad(
          absl::StrFormat("segment %d: file size exceeds memory size", i));
    }
    if (!InBounds(ph.p_offset, ph.p_filesz, elf.size())) {
      return bad(absl::StrFormat("segment %d lies outside the file", i));
    }
    const uint64_t address = ph.p_vaddr + image.bias;
    if (address < ph.p_vaddr || address < window_begin ||
        address > window_end || ph.p_memsz > window_end - address) {
      return bad(absl::StrFormat(
          "segment %d at [0x%x, +0x%x) is outside the program window "
          "[0x%x, 0x%x) (guest memory too small?)",
          i, address, ph.p_memsz, window_begin, window_end));
    }
    auto target = memory.Slice(address, ph.p_memsz, "program segment");
    if (!target.ok()) return target.status();
    std::memcpy(target->data(), elf.data() + ph.p_offset, ph.p_filesz);
    std::memset(target->data() + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
    image.image_begin = std::min(image.image_begin, PageDown(address));
    image.image_end = std::max(image.image_end, PageUp(address + ph.p_memsz));
    if (image.entry >= address && image.entry < address + ph.p_memsz &&
        (ph.p_flags & PF_X)) {
      entry_loaded = true;
    }
    // The program headers are in the first segment that covers them.
    if (image.phdr == 0 && header.e_phoff >= ph.p_offset &&
        header.e_phoff - ph.p_offset < ph.p_filesz) {
      image.phdr = address + (header.e_phoff - ph.p_offset);
    }
  }
  for (const Elf64_Phdr& ph : phdrs) {
    if (ph.p_type == PT_PHDR) image.phdr = ph.p_vaddr + image.bias;
  }
  if (!entry_loaded) {
    return bad(absl::StrFormat(
        "entry point 0x%x is not inside an executable segment", image.entry));
  }
  return image;
}

absl::StatusOr<uint64_t> BuildInitialStack(
    GuestMemory& memory, uint64_t stack_top, uint64_t stack_limit,
    const ProgramImage& image, uint64_t interpreter_base,
    const std::vector<std::string>& argv, const std::vector<std::string>& envp,
    absl::Span<const uint8_t> random) {
  // Strings and AT_RANDOM's bytes at the top, then the vectors below them.
  uint64_t at = stack_top;
  std::vector<uint64_t> argv_addr, envp_addr;
  uint64_t strings_size = 16;
  for (const auto& a : argv) strings_size += a.size() + 1;
  for (const auto& e : envp) strings_size += e.size() + 1;
  static constexpr char kPlatform[] = "x86_64";
  strings_size += sizeof(kPlatform);
  const uint64_t vector_words =
      1 + argv.size() + 1 + envp.size() + 1 + 2 * 18 + 2;
  if (stack_top - stack_limit < strings_size + 8 * vector_words + 64) {
    return absl::InvalidArgumentError(
        "program arguments and environment do not fit on the stack");
  }
  auto region = memory.Slice(stack_limit, stack_top - stack_limit, "stack");
  if (!region.ok()) return region.status();
  // Safe: every write lands in [stack_limit, stack_top), checked above.
  auto write = [&](uint64_t address, const void* bytes, uint64_t size) {
    std::memcpy(memory.host_base() + address, bytes, size);
  };
  auto push = [&](const void* bytes, uint64_t size) {
    at -= size;
    write(at, bytes, size);
    return at;
  };
  const uint64_t random_addr = push(random.data(), 16);
  const uint64_t platform_addr = push(kPlatform, sizeof(kPlatform));
  for (const auto& a : argv) argv_addr.push_back(push(a.c_str(), a.size() + 1));
  for (const auto& e : envp) envp_addr.push_back(push(e.c_str(), e.size() + 1));
  const uint64_t execfn = argv_addr.empty() ? 0 : argv_addr[0];
  // What glibc and musl read: baseline x86-64 with SSE2 (HWCAP is CPUID
  // leaf 1 EDX on x86).
  constexpr uint64_t kHwcap = 0x078BFBFF;
  const std::vector<std::pair<uint64_t, uint64_t>> auxv = {
      {AT_PHDR, image.phdr},
      {AT_PHENT, image.phent},
      {AT_PHNUM, image.phnum},
      {AT_PAGESZ, kPage},
      {AT_BASE, interpreter_base},
      {AT_FLAGS, 0},
      {AT_ENTRY, image.entry},
      {AT_UID, 1000},
      {AT_EUID, 1000},
      {AT_GID, 1000},
      {AT_EGID, 1000},
      {AT_SECURE, 0},
      {AT_RANDOM, random_addr},
      {AT_HWCAP, kHwcap},
      {AT_HWCAP2, 0},
      {AT_CLKTCK, 100},
      {AT_PLATFORM, platform_addr},
      {AT_EXECFN, execfn},
  };
  std::vector<uint64_t> words;
  words.push_back(argv.size());
  words.insert(words.end(), argv_addr.begin(), argv_addr.end());
  words.push_back(0);
  words.insert(words.end(), envp_addr.begin(), envp_addr.end());
  words.push_back(0);
  for (const auto& [type, value] : auxv) {
    words.push_back(type);
    words.push_back(value);
  }
  words.push_back(AT_NULL);
  words.push_back(0);
  at -= words.size() * 8;
  at &= ~uint64_t{15};  // RSP % 16 == 0 at the entry point, pointing at argc
  write(at, words.data(), words.size() * 8);
  return at;
}

}  // namespace thaw::linux_abi
