// A Linux VM's guest, taken over, against the host's side of its devices:
// the fuzzer's bytes are guest memory holding the virtio console's rings
// (descriptor table, available ring) and a list of register accesses the
// guest makes to the console's I/O BAR, with host bytes sent between them;
// whatever the agent "sends" is fed to the agent-protocol decoder in the
// pieces the device hands over. Nothing may crash or read outside guest
// memory (ASan), and the decoder keeps at most its bound.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>

#include "lib/guest_memory.h"
#include "lib/linuxvm/agent_messages.h"
#include "lib/linuxvm/virtio_console.h"

namespace {

constexpr uint64_t kMemory = 256 << 10;  // queues at page frames 1..63

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using thaw::linuxvm::AgentDecoder;
  using thaw::linuxvm::AgentMessage;
  using thaw::linuxvm::VirtioConsole;
  static std::unique_ptr<thaw::GuestMemory> memory = [] {
    auto m = thaw::GuestMemory::Create(kMemory);
    return m.ok() ? *std::move(m) : nullptr;
  }();
  if (memory == nullptr || size < 2) return 0;
  // The first half (up to the memory's size) is guest memory, repeated;
  // the rest is the access list.
  const size_t split = std::min<size_t>(size / 2, kMemory);
  if (split > 0) {
    for (uint64_t at = 0; at < kMemory; at += split) {
      std::memcpy(memory->host_base() + at, data,
                  std::min<uint64_t>(split, kMemory - at));
    }
  }
  AgentDecoder decoder(4096);
  std::deque<AgentMessage> messages;
  size_t delivered = 0;
  VirtioConsole console(
      *memory,
      [&](absl::string_view bytes) {
        delivered += bytes.size();
        (void)decoder.Feed(bytes, messages);
        if (messages.size() > 64) messages.clear();
      },
      [] {}, [](const absl::Status&) {});
  const uint8_t* op = data + split;
  const uint8_t* end = data + size;
  while (end - op >= 6) {
    const uint8_t kind = op[0] % 4;
    const uint16_t offset = op[1] % VirtioConsole::kRegisterBytes;
    const uint32_t width = 1u << (op[2] % 3);
    uint32_t value;
    std::memcpy(&value, op + 2, 4);
    op += 6;
    switch (kind) {
      case 0:
        console.Write(offset, width, value % 64);  // page frames, selects
        break;
      case 1:
        console.Write(offset, width, value);
        break;
      case 2:
        (void)console.Read(offset, width);
        break;
      case 3:
        (void)console.Send(std::string(value % 8192, 'h'));
        break;
    }
  }
  return 0;
}
