// lib/linuxvm/boot_image: kernels are checked before anything runs, and a
// good one is laid out where the 64-bit boot protocol expects it.
#include "lib/linuxvm/boot_image.h"

#include <cstring>
#include <string>
#include <vector>

#include "base/little_endian.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace thaw::linuxvm {
namespace {

using ::testing::HasSubstr;

// A minimal bzImage: a setup header (protocol 2.15, 64-bit entry, loaded
// high) with 4 setup sectors, then `payload` as the protected-mode kernel.
std::string BzImage(const std::string& payload, uint16_t version = 0x020f,
                    uint16_t xloadflags = 1) {
  std::string image(5 * 512, '\0');
  auto* p = reinterpret_cast<uint8_t*>(image.data());
  p[0x1f1] = 4;
  StoreLe(p + 0x1fe, 0xaa55, 2);
  p[0x201] = 0x6a;  // jump: the header runs to 0x26c
  std::memcpy(p + 0x202, "HdrS", 4);
  StoreLe(p + 0x206, version, 2);
  p[0x211] = 1;                       // LOADED_HIGH
  StoreLe(p + 0x22c, 0x7fffffff, 4);  // initrd_addr_max
  StoreLe(p + 0x230, 0x200000, 4);    // kernel_alignment
  StoreLe(p + 0x236, xloadflags, 2);
  StoreLe(p + 0x238, 2047, 4);       // cmdline_size
  StoreLe(p + 0x258, 0x1000000, 8);  // pref_address
  StoreLe(p + 0x260, 8 << 20, 4);    // init_size
  return image + payload;
}

TEST(BootImageTest, RefusesWhatIsNotAKernel) {
  auto bad = ParseKernel(std::string(4096, 'x'), "junk");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("junk"));
  EXPECT_THAT(bad.status().message(), HasSubstr("neither a bzImage"));
}

TEST(BootImageTest, RefusesOldOrThirtyTwoBitOrTruncatedBzImages) {
  EXPECT_THAT(ParseKernel(BzImage("k", 0x020a), "old").status().message(),
              HasSubstr("boot protocol 2.10"));
  EXPECT_THAT(ParseKernel(BzImage("k", 0x020f, 0), "k32").status().message(),
              HasSubstr("64-bit entry"));
  std::string truncated = BzImage("");
  EXPECT_THAT(ParseKernel(truncated, "cut").status().message(),
              HasSubstr("covers the whole"));
  EXPECT_THAT(
      ParseKernel(truncated.substr(0, 0x210), "tiny").status().message(),
      HasSubstr("shorter than a setup header"));
}

TEST(BootImageTest, PlacesABzImageForThe64BitEntry) {
  const std::string payload(64 << 10, '\x90');
  const std::string image = BzImage(payload);
  auto kernel = ParseKernel(image, "bz");
  ASSERT_TRUE(kernel.ok()) << kernel.status();
  EXPECT_EQ(kernel->entry, 0x1000000u + 0x200);
  std::vector<uint8_t> memory(64 << 20);
  const std::string initrd = "070701 fake cpio";
  auto layout = PlaceBootImage(absl::MakeSpan(memory), *kernel, initrd,
                               "console=ttyS0", 2);
  ASSERT_TRUE(layout.ok()) << layout.status();
  // The kernel at its preferred address, the command line and zero page.
  EXPECT_EQ(
      std::memcmp(memory.data() + 0x1000000, payload.data(), payload.size()),
      0);
  EXPECT_STREQ(reinterpret_cast<const char*>(memory.data() + kCmdlineAddress),
               "console=ttyS0");
  const uint8_t* zp = memory.data() + kZeroPageAddress;
  EXPECT_EQ(LoadLe32(zp + 0x228), kCmdlineAddress);
  EXPECT_EQ(zp[0x210], 0xff);  // type_of_loader
  // The initramfs page-aligned at the top of memory, and named.
  EXPECT_EQ(layout->initrd_address % 4096, 0u);
  EXPECT_EQ(LoadLe32(zp + 0x218), layout->initrd_address);
  EXPECT_EQ(LoadLe32(zp + 0x21c), initrd.size());
  EXPECT_EQ(std::memcmp(memory.data() + layout->initrd_address, initrd.data(),
                        initrd.size()),
            0);
  // Two e820 ranges: low memory, then from 1 MiB to the end.
  EXPECT_EQ(zp[0x1e8], 2);
  EXPECT_EQ(LoadLe64(zp + 0x2d0 + 20 + 8), (64u << 20) - 0x100000);
  // An MP table whose floating pointer checksums to zero, naming 2 CPUs.
  const uint8_t* mp = memory.data() + kMpTableAddress;
  EXPECT_EQ(std::memcmp(mp, "_MP_", 4), 0);
  uint8_t sum = 0;
  for (int i = 0; i < 16; ++i) sum += mp[i];
  EXPECT_EQ(sum, 0);
  EXPECT_EQ(std::memcmp(mp + 16, "PCMP", 4), 0);
  EXPECT_EQ(mp[16 + 44 + 20 + 1], 1);  // the second processor's APIC id
  EXPECT_EQ(layout->entry.rip, kernel->entry);
  EXPECT_EQ(layout->entry.rsi, kZeroPageAddress);
}

TEST(BootImageTest, NamesWhatDoesNotFit) {
  // The parsed image views these bytes: they outlive it.
  const std::string image = BzImage(std::string(4096, '\x90'));
  auto kernel = ParseKernel(image, "bz");
  ASSERT_TRUE(kernel.ok());
  std::vector<uint8_t> small(16 << 20);
  EXPECT_THAT(PlaceBootImage(absl::MakeSpan(small), *kernel, "", "", 1)
                  .status()
                  .message(),
              HasSubstr("from 32 MiB"));
  std::vector<uint8_t> memory(32 << 20);
  EXPECT_THAT(PlaceBootImage(absl::MakeSpan(memory), *kernel,
                             std::string(20 << 20, 'i'), "", 1)
                  .status()
                  .message(),
              HasSubstr("initramfs"));
  EXPECT_THAT(PlaceBootImage(absl::MakeSpan(memory), *kernel, "",
                             std::string(3000, 'c'), 1)
                  .status()
                  .message(),
              HasSubstr("command line"));
  EXPECT_THAT(PlaceBootImage(absl::MakeSpan(memory), *kernel, "", "", 17)
                  .status()
                  .message(),
              HasSubstr("vcpus 17"));
}

}  // namespace
}  // namespace thaw::linuxvm
