// StoreLocation: where a snapshot URL's bytes are and how to ask for them.
// http:// and https:// URLs are used as they are; s3://bucket/key becomes
// a path-style URL on the S3 endpoint with Signature V4 credentials, each
// taken from RemoteOptions or, where empty, the usual AWS environment
// variables (thaw/remote.h).
#ifndef THAW_REMOTE_STORE_LOCATION_H_
#define THAW_REMOTE_STORE_LOCATION_H_

#include <string>

#include "absl/status/statusor.h"
#include "remote/http_client.h"
#include "thaw/remote.h"

namespace thaw::remote {

struct StoreLocation {
  std::string location;  // as given (names the file in messages)
  std::string url;       // what requests go to
  bool s3 = false;
  std::string endpoint, bucket, key;  // s3 only
  HttpOptions http;
};

absl::StatusOr<StoreLocation> ParseLocation(const std::string& location,
                                            const RemoteOptions& options);

// Whether a file at `location` may name `parent` as its diff parent: a
// remote file only one in the same store (its relative name resolved
// beside it), never a file of this host. FailedPrecondition otherwise.
absl::Status CheckParentLocation(const std::string& location,
                                 const std::string& parent);

}  // namespace thaw::remote

#endif  // THAW_REMOTE_STORE_LOCATION_H_
