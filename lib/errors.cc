#include "thaw/errors.h"

#include <cstring>
#include <string>

#include "absl/strings/cord.h"
#include "lib/guest_fault.h"

namespace thaw {
namespace {
constexpr char kGuestFaultUrl[] = "type.thaw.dev/thaw.GuestFault";

// Fixed little-endian record: vector, triple_fault, rip, cr2, error_code.
struct Encoded {
  uint32_t vector;
  uint32_t triple_fault;
  uint64_t rip, cr2, error_code;
};
}  // namespace

std::optional<GuestFault> GetGuestFault(const absl::Status& status) {
  auto payload = status.GetPayload(kGuestFaultUrl);
  if (!payload || payload->size() != sizeof(Encoded)) return std::nullopt;
  Encoded encoded;
  std::string flat(*payload);
  std::memcpy(&encoded, flat.data(), sizeof(encoded));
  return GuestFault{encoded.vector, encoded.rip, encoded.cr2,
                    encoded.error_code, encoded.triple_fault != 0};
}

void SetGuestFault(absl::Status& status, const GuestFault& fault) {
  Encoded encoded{fault.vector, fault.triple_fault ? 1u : 0u, fault.rip,
                  fault.cr2, fault.error_code};
  status.SetPayload(kGuestFaultUrl,
                    absl::Cord(std::string(reinterpret_cast<char*>(&encoded),
                                           sizeof(encoded))));
}

}  // namespace thaw
