// The Linux system-call layer driven directly, as the program_syscalls
// fuzz target drives it: each case here is an input the fuzzer found that
// misbehaved, kept as a regression test (it runs under ASan+UBSan too).
#include <time.h>

#include <cstdint>
#include <cstring>
#include <memory>

#include "gtest/gtest.h"
#include "lib/guest_memory.h"
#include "lib/linux/syscalls.h"

namespace thaw::linux_abi {
namespace {

class NoHost : public ProgramHost {
 public:
  backend::SyscallResult ReadRequest(uint64_t, uint64_t) override { return {}; }
  int64_t WriteReply(absl::Span<const uint8_t> bytes) override {
    return static_cast<int64_t>(bytes.size());
  }
  void WriteConsole(absl::string_view) override {}
};

TEST(SyscallLayerTest,
     ANanosleepOfCenturiesIsInterruptedWithTheExactRemainder) {
  // Found by the fuzzer: tv_sec * 1e9 overflowed int64 (undefined
  // behaviour) for a sleep of ~16,000 years.
  auto memory = GuestMemory::Create(4 << 20);
  ASSERT_TRUE(memory.ok());
  NoHost host;
  Syscalls syscalls(**memory, host, {1 << 20, 3 << 20, 1 << 20}, nullptr, "/");
  const timespec request{517366245708, 5};
  auto in = (*memory)->Slice(0x300000, sizeof(request), "request");
  ASSERT_TRUE(in.ok());
  std::memcpy(in->data(), &request, sizeof(request));
  backend::Syscall call{};
  call.number = 35;  // nanosleep
  call.args[0] = 0x300000;
  call.args[1] = 0x301000;
  backend::SyscallResult result = syscalls.Dispatch(call);
  EXPECT_EQ(static_cast<int64_t>(result.value), -EINTR);
  timespec rem;
  auto out = (*memory)->Slice(0x301000, sizeof(rem), "remainder");
  ASSERT_TRUE(out.ok());
  std::memcpy(&rem, out->data(), sizeof(rem));
  // Less than asked by what was slept (at most a second here), never more.
  EXPECT_LE(rem.tv_sec, request.tv_sec);
  EXPECT_GE(rem.tv_sec, request.tv_sec - 1);
  EXPECT_GE(rem.tv_nsec, 0);
  EXPECT_LT(rem.tv_nsec, 1'000'000'000);
}

}  // namespace
}  // namespace thaw::linux_abi
