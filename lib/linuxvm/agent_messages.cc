#include "lib/linuxvm/agent_messages.h"

#include "absl/strings/str_format.h"
#include "base/little_endian.h"

namespace thaw::linuxvm {
namespace {

constexpr size_t kHeaderBytes = sizeof(thaw_agent_header);
static_assert(kHeaderBytes == 24);

}  // namespace

std::string EncodeAgentMessage(uint32_t type, uint32_t status,
                               absl::string_view name,
                               absl::string_view payload) {
  std::string out(kHeaderBytes, '\0');
  uint8_t* h = reinterpret_cast<uint8_t*>(out.data());
  StoreLe(h, THAW_AGENT_MAGIC, 4);
  StoreLe(h + 4, type, 4);
  StoreLe(h + 8, status, 4);
  StoreLe(h + 12, name.size(), 4);
  StoreLe(h + 16, payload.size(), 8);
  out.append(name.data(), name.size());
  out.append(payload.data(), payload.size());
  return out;
}

absl::Status AgentDecoder::Feed(absl::string_view bytes,
                                std::deque<AgentMessage>& out) {
  if (!error_.ok()) return error_;
  buffer_.append(bytes.data(), bytes.size());
  for (;;) {
    if (buffer_.size() < kHeaderBytes) return absl::OkStatus();
    const uint8_t* h = reinterpret_cast<const uint8_t*>(buffer_.data());
    const uint32_t magic = LoadLe32(h);
    const uint32_t name_length = LoadLe32(h + 12);
    const uint64_t payload_length = LoadLe64(h + 16);
    if (magic != THAW_AGENT_MAGIC) {
      error_ = absl::DataLossError(absl::StrFormat(
          "the agent sent a message without its magic (0x%08x)", magic));
    } else if (name_length > THAW_AGENT_NAME_MAX) {
      error_ = absl::DataLossError(
          absl::StrFormat("the agent sent a %u-byte name (at most %u)",
                          name_length, THAW_AGENT_NAME_MAX));
    } else if (payload_length > max_payload_) {
      error_ = absl::ResourceExhaustedError(absl::StrFormat(
          "the agent sent a %u-byte payload; at most %u are taken",
          payload_length, max_payload_));
    }
    if (!error_.ok()) {
      buffer_.clear();
      buffer_.shrink_to_fit();
      return error_;
    }
    const uint64_t total = kHeaderBytes + name_length + payload_length;
    if (buffer_.size() < total) return absl::OkStatus();
    AgentMessage m;
    m.type = LoadLe32(h + 4);
    m.status = LoadLe32(h + 8);
    m.name = buffer_.substr(kHeaderBytes, name_length);
    m.payload = buffer_.substr(kHeaderBytes + name_length, payload_length);
    buffer_.erase(0, total);
    out.push_back(std::move(m));
  }
}

}  // namespace thaw::linuxvm
