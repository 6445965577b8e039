// The host side of the agent protocol's framing (thaw/linux_agent.h):
// encoding a message and decoding the agent's byte stream into messages.
// Pure: no I/O, no locking; the decoder bounds what it buffers, so a guest
// that floods the channel cannot exhaust host memory.
#ifndef THAW_LIB_LINUXVM_AGENT_MESSAGES_H_
#define THAW_LIB_LINUXVM_AGENT_MESSAGES_H_

#include <cstdint>
#include <deque>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "thaw/linux_agent.h"

namespace thaw::linuxvm {

struct AgentMessage {
  uint32_t type = 0;
  uint32_t status = 0;
  std::string name;
  std::string payload;
};

std::string EncodeAgentMessage(uint32_t type, uint32_t status,
                               absl::string_view name,
                               absl::string_view payload);

class AgentDecoder {
 public:
  // Payloads larger than `max_payload` are a protocol error.
  explicit AgentDecoder(uint64_t max_payload) : max_payload_(max_payload) {}

  // Appends guest bytes; complete messages go to `out`. After an error
  // (bad magic, a name or payload over its limit) every later call returns
  // the same error and buffers nothing.
  absl::Status Feed(absl::string_view bytes, std::deque<AgentMessage>& out);

 private:
  uint64_t max_payload_;
  std::string buffer_;
  absl::Status error_;
};

}  // namespace thaw::linuxvm

#endif  // THAW_LIB_LINUXVM_AGENT_MESSAGES_H_
