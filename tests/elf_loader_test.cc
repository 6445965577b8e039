// The ELF loader treats its input as hostile: every malformed image is a
// clear InvalidArgument, never a crash or a write outside the load window.
#include "lib/elf_loader.h"

#include <elf.h>

#include <cstring>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "thaw/abi.h"

namespace thaw {
namespace {

using ::testing::HasSubstr;

struct Image {
  Elf64_Ehdr header;
  Elf64_Phdr segment;
  uint8_t code[16];
};

Image ValidImage() {
  Image image{};
  std::memcpy(image.header.e_ident, ELFMAG, SELFMAG);
  image.header.e_ident[EI_CLASS] = ELFCLASS64;
  image.header.e_ident[EI_DATA] = ELFDATA2LSB;
  image.header.e_type = ET_EXEC;
  image.header.e_machine = EM_X86_64;
  image.header.e_entry = THAW_IMAGE_BASE;
  image.header.e_phoff = offsetof(Image, segment);
  image.header.e_phentsize = sizeof(Elf64_Phdr);
  image.header.e_phnum = 1;
  image.segment.p_type = PT_LOAD;
  image.segment.p_flags = PF_R | PF_X;
  image.segment.p_offset = offsetof(Image, code);
  image.segment.p_paddr = image.segment.p_vaddr = THAW_IMAGE_BASE;
  image.segment.p_filesz = sizeof(image.code);
  image.segment.p_memsz = 4096;
  std::memset(image.code, 0x90, sizeof(image.code));
  return image;
}

class ElfLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto memory = GuestMemory::Create(4 << 20);
    ASSERT_TRUE(memory.ok());
    memory_ = *std::move(memory);
  }
  absl::StatusOr<LoadedImage> Load(const Image& image, size_t size = sizeof(Image)) {
    return LoadElf(absl::Span<const uint8_t>(
                       reinterpret_cast<const uint8_t*>(&image), size),
                   "test.elf", *memory_, THAW_IMAGE_BASE, 3 << 20);
  }
  std::unique_ptr<GuestMemory> memory_;
};

TEST_F(ElfLoaderTest, LoadsSegmentsAndZeroFillsBss) {
  std::memset(memory_->host_base() + THAW_IMAGE_BASE, 0xAA, 8192);
  auto loaded = Load(ValidImage());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->entry, THAW_IMAGE_BASE);
  EXPECT_EQ(loaded->image_end, THAW_IMAGE_BASE + 4096);
  EXPECT_EQ(memory_->host_base()[THAW_IMAGE_BASE], 0x90);
  EXPECT_EQ(memory_->host_base()[THAW_IMAGE_BASE + 100], 0);     // .bss
  EXPECT_EQ(memory_->host_base()[THAW_IMAGE_BASE + 4096], 0xAA);  // untouched
}

TEST_F(ElfLoaderTest, RejectsMalformedImagesWithAReason) {
  struct Case {
    const char* why;
    void (*mutate)(Image&);
  } cases[] = {
      {"bad magic", [](Image& i) { i.header.e_ident[1] = 'X'; }},
      {"x86-64", [](Image& i) { i.header.e_machine = EM_AARCH64; }},
      {"ET_EXEC", [](Image& i) { i.header.e_type = ET_DYN; }},
      {"program header table", [](Image& i) { i.header.e_phoff = 1 << 30; }},
      {"program header table", [](Image& i) { i.header.e_phnum = 0xFFFF; }},
      {"outside the file", [](Image& i) { i.segment.p_offset = ~0ull - 4; }},
      {"file size exceeds", [](Image& i) { i.segment.p_filesz = 8192; }},
      {"load window", [](Image& i) { i.segment.p_paddr = 0x1000; }},
      {"load window", [](Image& i) { i.segment.p_memsz = ~0ull - 0x1000; }},
      {"load window", [](Image& i) { i.segment.p_paddr = ~0ull - 10; }},
      {"entry point", [](Image& i) { i.header.e_entry = 0xdead0000; }},
      {"no loadable", [](Image& i) { i.segment.p_type = PT_NOTE; }},
  };
  for (const Case& c : cases) {
    Image image = ValidImage();
    c.mutate(image);
    auto loaded = Load(image);
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument)
        << c.why << ": " << loaded.status();
    EXPECT_THAT(loaded.status().message(), HasSubstr(c.why));
    EXPECT_THAT(loaded.status().message(), HasSubstr("test.elf"));
  }
}

TEST_F(ElfLoaderTest, EveryTruncationIsRejected) {
  Image image = ValidImage();
  for (size_t size = 0; size < sizeof(Image); ++size) {
    EXPECT_FALSE(Load(image, size).ok()) << "size " << size;
  }
}

}  // namespace
}  // namespace thaw
