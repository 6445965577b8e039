// Snapshot signatures: ed25519 (libsodium) over a file's header and
// manifest, and BLAKE2b-256 digests of its frames.
//
// The XXH3 checksums of the format find damage, not tampering: anyone can
// recompute them. A signed file (format 1.3) adds, in its manifest, the
// signer's public key and a BLAKE2b-256 digest of every frame's stored
// bytes, and after the manifest a 64-byte ed25519 signature of
//
//   BLAKE2b-512("thaw snapshot signature v1\0" || header || manifest)
//
// (header: the file's 64 bytes as written; manifest: its bytes). The
// header holds the sizes and the manifest's checksum, and the manifest
// holds every frame's digest and the parent's snapshot id, so one
// signature covers every byte a restore uses. Why ed25519 and not an HMAC:
// the hosts that restore hold only the public key and cannot sign.
#ifndef THAW_SNAPSHOT_SIGNATURE_H_
#define THAW_SNAPSHOT_SIGNATURE_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace thaw::snapshot {

inline constexpr size_t kPublicKeySize = 32;
inline constexpr size_t kSecretKeySize = 64;  // libsodium's: seed + public
inline constexpr size_t kSignatureSize = 64;
inline constexpr size_t kFrameDigestSize = 32;

using PublicKey = std::array<uint8_t, kPublicKeySize>;
using Signature = std::array<uint8_t, kSignatureSize>;
using FrameDigest = std::array<uint8_t, kFrameDigestSize>;

// An ed25519 secret key, wiped when destroyed.
class SecretKey {
 public:
  SecretKey() = default;
  ~SecretKey();
  SecretKey(const SecretKey&) = default;
  SecretKey& operator=(const SecretKey&) = default;
  std::array<uint8_t, kSecretKeySize> bytes{};
  // The public key, derived from the seed (the first 32 bytes; libsodium
  // keeps a copy of the public key in the second 32).
  PublicKey public_key() const;
};

// Initializes libsodium once; Internal if it cannot (no entropy source).
absl::Status InitSodium();

// A new key pair from the system's random source.
absl::Status GenerateKeyPair(SecretKey& secret);

Signature SignSnapshot(const SecretKey& key, absl::Span<const uint8_t> header,
                       absl::Span<const uint8_t> manifest);
bool VerifySnapshotSignature(const PublicKey& key,
                             absl::Span<const uint8_t> header,
                             absl::Span<const uint8_t> manifest,
                             const Signature& signature);

// BLAKE2b-256 of a frame's stored bytes.
FrameDigest DigestFrame(absl::Span<const uint8_t> stored);

// "ed25519:" and the key's 64 hex digits.
std::string KeyName(const PublicKey& key);

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_SIGNATURE_H_
