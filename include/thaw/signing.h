// Signed snapshots: the keys.
//
// A snapshot written with SnapshotOptions::signing_key carries an ed25519
// signature over its header and manifest, and the manifest a BLAKE2b-256
// digest of every frame (doc/snapshot-format.md, "Signatures"). A Snapshot
// opened with a VerifyKey refuses, with PermissionDenied and before any
// guest byte is used, a file that is unsigned, signed by another key, or
// whose signature does not verify; each frame is then checked against its
// digest before it is decompressed or mapped, so a frame changed after
// signing is DataLoss. Diff chains are checked link by link: every parent
// must be signed by the same key.
//
// ed25519 rather than an HMAC because the hosts that restore snapshots
// need only the public key: one that is compromised cannot sign.
//
// Key files are one line of text: "thaw-signing-key ed25519 <128 hex>"
// (the secret key; written mode 0600, refused when group or others may read
// it) and "thaw-verify-key ed25519 <64 hex>" (the public key).
//
// Thread safety: both classes are immutable values.
#ifndef THAW_SIGNING_H_
#define THAW_SIGNING_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace thaw {

namespace internal {
struct KeyAccess;  // lib/signing_keys.cc
}  // namespace internal

class VerifyKey {
 public:
  // Parses "thaw-verify-key ed25519 <64 hex>" (one line; surrounding
  // whitespace ignored). InvalidArgument naming what is wrong.
  static absl::StatusOr<VerifyKey> Parse(absl::string_view text);
  // Reads a file holding that line. Errors name the file.
  static absl::StatusOr<VerifyKey> Load(const std::string& path);
  // Writes the line to `path` atomically (mode 0644).
  absl::Status Save(const std::string& path) const;

  // "thaw-verify-key ed25519 <64 hex>".
  std::string ToString() const;
  // "ed25519:<64 hex>", as errors name a key.
  std::string Name() const;
  bool operator==(const VerifyKey&) const = default;

 private:
  friend struct internal::KeyAccess;
  friend class SigningKey;
  VerifyKey() = default;
  std::array<uint8_t, 32> bytes_{};
};

class SigningKey {
 public:
  // A new key from the system's random source.
  static absl::StatusOr<SigningKey> Generate();
  // Reads a secret key file. PermissionDenied when group or others may read
  // it; InvalidArgument for a malformed one. Errors name the file.
  static absl::StatusOr<SigningKey> Load(const std::string& path);
  // Writes the secret key to `path`, mode 0600, atomically; AlreadyExists
  // rather than replace a file there.
  absl::Status Save(const std::string& path) const;

  const VerifyKey& verify_key() const { return public_; }

 private:
  friend struct internal::KeyAccess;
  struct Secret;
  SigningKey() = default;
  std::shared_ptr<const Secret> secret_;  // wiped when the last copy goes
  VerifyKey public_;
};

}  // namespace thaw

#endif  // THAW_SIGNING_H_
