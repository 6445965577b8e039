// The one place errno becomes an absl::Status (LevelDB's PosixError).
#ifndef THAW_BASE_ERRNO_STATUS_H_
#define THAW_BASE_ERRNO_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace thaw {

// "<context>: <strerror(error_number)>" with a code that matches the errno
// (NotFound for ENOENT, PermissionDenied for EACCES, ...).
absl::Status ErrnoStatus(absl::string_view context, int error_number);

}  // namespace thaw

#endif  // THAW_BASE_ERRNO_STATUS_H_
