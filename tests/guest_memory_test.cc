// GuestMemory::Slice is the one place guest addresses are checked.
#include "lib/guest_memory.h"

#include "gtest/gtest.h"

namespace thaw {
namespace {

TEST(GuestMemoryTest, SliceAcceptsRangesInsideAndRejectsAnyByteOutside) {
  auto memory = GuestMemory::Create(1 << 20);
  ASSERT_TRUE(memory.ok()) << memory.status();
  const uint64_t size = (*memory)->size();
  EXPECT_TRUE((*memory)->Slice(0, size, "all").ok());
  EXPECT_TRUE((*memory)->Slice(size, 0, "empty at end").ok());
  EXPECT_TRUE((*memory)->Slice(size - 1, 1, "last byte").ok());
  EXPECT_EQ((*memory)->Slice(size - 1, 2, "x").status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*memory)->Slice(size + 1, 0, "x").status().code(),
            absl::StatusCode::kOutOfRange);
  // Sums that would wrap around 2^64 must not pass.
  EXPECT_FALSE((*memory)->Slice(16, ~uint64_t{0} - 8, "wrap").ok());
  EXPECT_FALSE((*memory)->Slice(~uint64_t{0}, 2, "wrap").ok());
  auto error = (*memory)->Slice(size, 1, "the thing").status();
  EXPECT_NE(error.message().find("the thing"), absl::string_view::npos);
}

TEST(GuestMemoryTest, WriteThenReadRoundTrips) {
  auto memory = GuestMemory::Create(1 << 20);
  ASSERT_TRUE(memory.ok());
  const uint8_t data[] = {1, 2, 3, 4};
  ASSERT_TRUE((*memory)->Write(4092, data, "w").ok());
  uint8_t out[4] = {};
  ASSERT_TRUE((*memory)->Read(4092, absl::MakeSpan(out), "r").ok());
  EXPECT_EQ(0, memcmp(data, out, 4));
  EXPECT_FALSE((*memory)->Write((1 << 20) - 2, data, "w").ok());
}

}  // namespace
}  // namespace thaw
