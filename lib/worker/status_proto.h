// absl::Status across the worker connection: code, message and payloads
// (a thaw::GuestFault rides in a payload).
#ifndef THAW_LIB_WORKER_STATUS_PROTO_H_
#define THAW_LIB_WORKER_STATUS_PROTO_H_

#include "absl/status/status.h"
#include "lib/worker/worker.pb.h"

namespace thaw::worker {

void SetStatus(const absl::Status& status, proto::Response& response);
absl::Status GetStatus(const proto::Response& response);
// A status from a code the peer sent (Unknown when out of range).
absl::Status StatusFromCode(int code, absl::string_view message);

}  // namespace thaw::worker

#endif  // THAW_LIB_WORKER_STATUS_PROTO_H_
