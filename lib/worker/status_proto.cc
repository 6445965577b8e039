#include "lib/worker/status_proto.h"

#include <string>

#include "absl/strings/cord.h"

namespace thaw::worker {

void SetStatus(const absl::Status& status, proto::Response& response) {
  response.set_code(static_cast<int>(status.code()));
  response.set_message(std::string(status.message()));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& value) {
    proto::StatusPayload* p = response.add_payloads();
    p->set_type_url(std::string(url));
    p->set_value(std::string(value));
  });
}

absl::Status StatusFromCode(int code, absl::string_view message) {
  // An out-of-range code from the peer is taken as Unknown.
  if (code == 0) return absl::OkStatus();
  return absl::Status(code > 0 && code <= 16
                          ? static_cast<absl::StatusCode>(code)
                          : absl::StatusCode::kUnknown,
                      message);
}

absl::Status GetStatus(const proto::Response& response) {
  absl::Status status = StatusFromCode(response.code(), response.message());
  if (status.ok()) return status;
  for (const proto::StatusPayload& p : response.payloads()) {
    status.SetPayload(p.type_url(), absl::Cord(p.value()));
  }
  return status;
}

}  // namespace thaw::worker
