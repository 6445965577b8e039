// KeyAccess: the monitor's view of thaw::SigningKey and thaw::VerifyKey as
// the snapshot layer's ed25519 keys (the public headers keep them opaque).
#ifndef THAW_LIB_SIGNING_ACCESS_H_
#define THAW_LIB_SIGNING_ACCESS_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "snapshot/signature.h"
#include "thaw/signing.h"

namespace thaw::internal {

struct KeyAccess {
  static const snapshot::SecretKey& Secret(const SigningKey& key);
  static const snapshot::PublicKey& Public(const VerifyKey& key);
  // A VerifyKey from its 32 bytes (InvalidArgument for another length).
  static absl::StatusOr<VerifyKey> FromBytes(absl::string_view bytes);
};

}  // namespace thaw::internal

#endif  // THAW_LIB_SIGNING_ACCESS_H_
