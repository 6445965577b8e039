// lib/linuxvm/virtqueue and agent_messages: a guest's rings and bytes are
// checked; a broken ring or a flood is an error, never a host crash.
#include "lib/linuxvm/virtqueue.h"

#include <cstring>

#include "base/little_endian.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/linuxvm/agent_messages.h"

namespace thaw::linuxvm {
namespace {

using ::testing::HasSubstr;

constexpr uint32_t kPfn = 0x10;  // the queue at 64 KiB
constexpr uint64_t kDesc = uint64_t{kPfn} << 12;
constexpr uint64_t kAvail = kDesc + 16 * Virtqueue::kSize;

class VirtqueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto memory = GuestMemory::Create(1 << 20);
    ASSERT_TRUE(memory.ok());
    memory_ = *std::move(memory);
    queue_.SetPageFrame(kPfn);
  }
  void Descriptor(int index, uint64_t address, uint32_t length, uint16_t flags,
                  uint16_t next) {
    uint8_t* d = memory_->host_base() + kDesc + 16 * index;
    StoreLe(d, address, 8);
    StoreLe(d + 8, length, 4);
    StoreLe(d + 12, flags, 2);
    StoreLe(d + 14, next, 2);
  }
  void MakeAvailable(uint16_t head) {
    uint8_t* avail = memory_->host_base() + kAvail;
    const uint16_t idx = LoadLe16(avail + 2);
    StoreLe(avail + 4 + 2 * (idx % Virtqueue::kSize), head, 2);
    StoreLe(avail + 2, idx + 1, 2);
  }
  std::unique_ptr<GuestMemory> memory_;
  Virtqueue queue_;
};

TEST_F(VirtqueueTest, TakesAChainAndReturnsIt) {
  Descriptor(0, 0x1000, 16, /*next*/ 1, 1);
  Descriptor(1, 0x2000, 32, /*write*/ 2, 0);
  MakeAvailable(0);
  Virtqueue::Chain chain;
  auto got = queue_.Pop(*memory_, chain);
  ASSERT_TRUE(got.ok() && *got) << got.status();
  ASSERT_EQ(chain.buffers.size(), 2u);
  EXPECT_EQ(chain.buffers[0].bytes.data(), memory_->host_base() + 0x1000);
  EXPECT_FALSE(chain.buffers[0].device_writes);
  EXPECT_TRUE(chain.buffers[1].device_writes);
  EXPECT_FALSE(*queue_.Pop(*memory_, chain));  // nothing more
  ASSERT_TRUE(queue_.Push(*memory_, chain.head, 7).ok());
}

TEST_F(VirtqueueTest, ADescriptorOutsideMemoryIsAnError) {
  Descriptor(0, (1 << 20) - 8, 16, 0, 0);
  MakeAvailable(0);
  Virtqueue::Chain chain;
  auto got = queue_.Pop(*memory_, chain);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(got.status().message(), HasSubstr("outside guest memory"));
}

TEST_F(VirtqueueTest, ALoopIsAnError) {
  Descriptor(0, 0x1000, 8, 1, 1);
  Descriptor(1, 0x1000, 8, 1, 0);
  MakeAvailable(0);
  Virtqueue::Chain chain;
  EXPECT_THAT(queue_.Pop(*memory_, chain).status().message(),
              HasSubstr("a loop"));
}

TEST_F(VirtqueueTest, AnIndexJumpingPastTheQueueIsAnError) {
  StoreLe(memory_->host_base() + kAvail + 2, 1000, 2);
  Virtqueue::Chain chain;
  EXPECT_THAT(queue_.Pop(*memory_, chain).status().message(),
              HasSubstr("more than the queue"));
}

TEST_F(VirtqueueTest, AQueueOutsideMemoryIsAnError) {
  queue_.SetPageFrame(0xfffff);
  Virtqueue::Chain chain;
  EXPECT_FALSE(queue_.Pop(*memory_, chain).ok());
}

TEST(AgentMessagesTest, DecodesMessagesSplitAnywhere) {
  const std::string a = EncodeAgentMessage(THAW_AGENT_REPLY, 0, "", "hello");
  const std::string b = EncodeAgentMessage(THAW_AGENT_READY, 0, "n", "x");
  const std::string stream = a + b;
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    AgentDecoder decoder(1024);
    std::deque<AgentMessage> out;
    ASSERT_TRUE(decoder.Feed(stream.substr(0, cut), out).ok());
    ASSERT_TRUE(decoder.Feed(stream.substr(cut), out).ok());
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].payload, "hello");
    EXPECT_EQ(out[1].type, THAW_AGENT_READY);
    EXPECT_EQ(out[1].name, "n");
  }
}

TEST(AgentMessagesTest, RefusesFloodsAndGarbage) {
  AgentDecoder decoder(16);
  std::deque<AgentMessage> out;
  auto big = decoder.Feed(
      EncodeAgentMessage(THAW_AGENT_REPLY, 0, "", std::string(17, 'x')), out);
  EXPECT_EQ(big.code(), absl::StatusCode::kResourceExhausted);
  // Stays failed, keeps nothing.
  EXPECT_FALSE(decoder.Feed(std::string(1 << 20, 'y'), out).ok());
  EXPECT_TRUE(out.empty());
  AgentDecoder garbage(16);
  EXPECT_THAT(garbage.Feed(std::string(24, 'z'), out).message(),
              HasSubstr("magic"));
}

}  // namespace
}  // namespace thaw::linuxvm
