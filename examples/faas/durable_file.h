// Whole small files written so that a crash never leaves a partial one
// (deploy specs, queued events), and read back whole.
#ifndef THAW_EXAMPLES_FAAS_DURABLE_FILE_H_
#define THAW_EXAMPLES_FAAS_DURABLE_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace thaw::faas {

// Writes `bytes` to `path`: a temporary file beside it, fsync, rename, and
// an fsync of the directory, so that once this returns OK the file survives
// a crash. ResourceExhausted when the disk is full; the old file, if any,
// is left as it was on any failure.
absl::Status WriteFileDurably(const std::string& path,
                              const std::string& bytes);

absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

}  // namespace thaw::faas

#endif  // THAW_EXAMPLES_FAAS_DURABLE_FILE_H_
