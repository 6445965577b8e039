#include "lib/elf_loader.h"

#include <elf.h>

#include <cstring>

#include "absl/strings/str_format.h"
#include "lib/elf_bytes.h"

namespace thaw {

absl::StatusOr<LoadedImage> LoadElf(absl::Span<const uint8_t> elf,
                                    absl::string_view name, GuestMemory& memory,
                                    uint64_t window_begin,
                                    uint64_t window_end) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrFormat("guest image \"%s\": %s", name, why));
  };
  Elf64_Ehdr header;
  if (const char* problem = ReadElf64Header(elf, &header)) return bad(problem);
  if (header.e_type != ET_EXEC) {
    return bad("not a static executable (ET_EXEC); link with guest/guest.ld");
  }
  if (header.e_phentsize != sizeof(Elf64_Phdr) ||
      !InBounds(header.e_phoff, uint64_t{header.e_phnum} * sizeof(Elf64_Phdr),
                elf.size())) {
    return bad("program header table lies outside the file");
  }

  LoadedImage image;
  image.entry = header.e_entry;
  bool entry_loaded = false;
  int loaded = 0;
  for (int i = 0; i < header.e_phnum; ++i) {
    auto ph = ReadAt<Elf64_Phdr>(elf, header.e_phoff + i * sizeof(Elf64_Phdr));
    if (ph.p_type != PT_LOAD) continue;
    if (ph.p_filesz > ph.p_memsz) {
      return bad(
          absl::StrFormat("segment %d: file size exceeds memory size", i));
    }
    if (!InBounds(ph.p_offset, ph.p_filesz, elf.size())) {
      return bad(absl::StrFormat("segment %d lies outside the file", i));
    }
    if (ph.p_paddr < window_begin || ph.p_paddr > window_end ||
        ph.p_memsz > window_end - ph.p_paddr) {
      return bad(absl::StrFormat(
          "segment %d at [0x%x, +0x%x) is outside the load window [0x%x, 0x%x) "
          "(guest memory too small, or not linked at THAW_IMAGE_BASE?)",
          i, ph.p_paddr, ph.p_memsz, window_begin, window_end));
    }
    auto target = memory.Slice(ph.p_paddr, ph.p_memsz, "ELF segment");
    if (!target.ok()) return target.status();
    std::memcpy(target->data(), elf.data() + ph.p_offset, ph.p_filesz);
    std::memset(target->data() + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
    image.image_end = std::max(image.image_end, ph.p_paddr + ph.p_memsz);
    if ((ph.p_flags & PF_X) && image.entry >= ph.p_paddr &&
        image.entry < ph.p_paddr + ph.p_memsz) {
      entry_loaded = true;
    }
    ++loaded;
  }
  if (loaded == 0) return bad("no loadable segments");
  if (!entry_loaded) {
    return bad(absl::StrFormat(
        "entry point 0x%x is not in an executable segment", image.entry));
  }

  // Symbols are optional (a stripped guest still runs).
  if (header.e_shentsize == sizeof(Elf64_Shdr) &&
      InBounds(header.e_shoff, uint64_t{header.e_shnum} * sizeof(Elf64_Shdr),
               elf.size())) {
    for (int i = 0; i < header.e_shnum; ++i) {
      auto sh =
          ReadAt<Elf64_Shdr>(elf, header.e_shoff + i * sizeof(Elf64_Shdr));
      if (sh.sh_type != SHT_SYMTAB || sh.sh_link >= header.e_shnum ||
          !InBounds(sh.sh_offset, sh.sh_size, elf.size())) {
        continue;
      }
      auto strtab = ReadAt<Elf64_Shdr>(
          elf, header.e_shoff + sh.sh_link * sizeof(Elf64_Shdr));
      if (!InBounds(strtab.sh_offset, strtab.sh_size, elf.size())) continue;
      for (uint64_t off = 0; off + sizeof(Elf64_Sym) <= sh.sh_size;
           off += sizeof(Elf64_Sym)) {
        auto sym = ReadAt<Elf64_Sym>(elf, sh.sh_offset + off);
        if (sym.st_name == 0 || sym.st_name >= strtab.sh_size) continue;
        const char* start =
            reinterpret_cast<const char*>(elf.data() + strtab.sh_offset) +
            sym.st_name;
        size_t max = strtab.sh_size - sym.st_name;
        size_t length = strnlen(start, max);
        if (length == max) continue;  // not NUL-terminated inside the table
        image.symbols.emplace(std::string(start, length), sym.st_value);
      }
    }
  }
  return image;
}

}  // namespace thaw
