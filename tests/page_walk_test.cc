// TranslateForSupervisor over real boot page tables (BuildLongModeBootState)
// and over entries edited the ways a damaged snapshot could hold them.
#include "lib/x86/page_walk.h"

#include <cstring>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/x86/boot_state.h"
#include "thaw/abi.h"

namespace thaw::x86 {
namespace {

using ::testing::HasSubstr;

class PageWalkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto memory = GuestMemory::Create(kMemory);
    ASSERT_TRUE(memory.ok()) << memory.status();
    memory_ = std::move(*memory);
    auto state = BuildLongModeBootState(*memory_, false, kGuardPage);
    ASSERT_TRUE(state.ok()) << state.status();
    state_ = *state;
  }

  // The 4 KiB page-table entry that maps `address` (first 2 MiB only).
  uint64_t& Pte(uint64_t address) {
    const uint64_t pt0 = THAW_PAGE_TABLES_ADDR + 0x2000;  // after PML4, PDPT
    return *reinterpret_cast<uint64_t*>(memory_->host_base() + pt0 +
                                        8 * (address >> 12));
  }

  absl::StatusOr<uint64_t> Translate(uint64_t address, bool write = false) {
    return TranslateForSupervisor(*memory_, state_, address, write);
  }

  static constexpr uint64_t kMemory = 8ull << 20;
  static constexpr uint64_t kGuardPage = 5ull << 20;
  std::unique_ptr<GuestMemory> memory_;
  VcpuState state_;
};

TEST_F(PageWalkTest, TheBootTablesMapMemoryOneToOne) {
  EXPECT_EQ(*Translate(THAW_GDT_ADDR + 0x10), THAW_GDT_ADDR + 0x10);  // 4 KiB
  EXPECT_EQ(*Translate(0x345678), 0x345678u);                         // 2 MiB
  EXPECT_EQ(*Translate(kMemory - 1, /*write=*/true), kMemory - 1);
}

TEST_F(PageWalkTest, WhatTheCpuWouldFaultOnIsRefusedWithTheReason) {
  auto refused = [&](uint64_t address, bool write, const char* why) {
    auto physical = Translate(address, write);
    ASSERT_FALSE(physical.ok()) << std::hex << address << " -> " << *physical;
    EXPECT_EQ(physical.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(physical.status().message()), HasSubstr(why));
  };
  refused(0x10, false, "page table entry 0x0");  // page 0 is never mapped
  refused(kGuardPage + 8, false, "not present");
  refused(kMemory + 0x1000, false, "not present");  // past memory
  refused(4ull << 30, false, "PDPT entry");
  refused(0x0000800000000000ull, false, "not canonical");

  // A read-only page: writes fault only while CR0.WP is set.
  Pte(THAW_GDT_ADDR) &= ~uint64_t{2};
  EXPECT_TRUE(Translate(THAW_GDT_ADDR).ok());
  refused(THAW_GDT_ADDR, true, "read-only");
  state_.cr0 &= ~kCr0Wp;
  EXPECT_TRUE(Translate(THAW_GDT_ADDR, true).ok());

  // NX is a reserved bit unless EFER.NXE is set.
  Pte(THAW_GDT_ADDR) |= uint64_t{1} << 63;
  refused(THAW_GDT_ADDR, false, "NX");
  state_.efer |= 1ull << 11;
  EXPECT_TRUE(Translate(THAW_GDT_ADDR).ok());

  // A page outside guest memory, and a table outside it.
  Pte(THAW_GDT_ADDR) = (kMemory + 0x3000) | 3;
  refused(THAW_GDT_ADDR, false, "outside guest memory");
  state_.cr3 = kMemory;
  refused(THAW_GDT_ADDR, false, "PML4 at 0x800000 lies outside");
}

}  // namespace
}  // namespace thaw::x86
