#include "snapshot/signature.h"

#include <sodium.h>

#include <cstring>
#include <mutex>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace thaw::snapshot {
namespace {

// Domain separation: a signature over a snapshot can never be taken for a
// signature over anything else made with the same key.
constexpr char kDomain[] = "thaw snapshot signature v1";

std::array<uint8_t, 64> SignedDigest(absl::Span<const uint8_t> header,
                                     absl::Span<const uint8_t> manifest) {
  crypto_generichash_state state;
  std::array<uint8_t, 64> digest;
  crypto_generichash_init(&state, nullptr, 0, digest.size());
  crypto_generichash_update(&state, reinterpret_cast<const uint8_t*>(kDomain),
                            sizeof(kDomain));  // with its terminating zero
  crypto_generichash_update(&state, header.data(), header.size());
  crypto_generichash_update(&state, manifest.data(), manifest.size());
  crypto_generichash_final(&state, digest.data(), digest.size());
  return digest;
}

}  // namespace

static_assert(kPublicKeySize == crypto_sign_PUBLICKEYBYTES);
static_assert(kSecretKeySize == crypto_sign_SECRETKEYBYTES);
static_assert(kSignatureSize == crypto_sign_BYTES);

SecretKey::~SecretKey() { sodium_memzero(bytes.data(), bytes.size()); }

PublicKey SecretKey::public_key() const {
  // From the seed (the first half), not the stored copy in the second, so
  // that a key whose halves disagree shows.
  PublicKey key;
  std::array<uint8_t, kSecretKeySize> scratch;
  crypto_sign_seed_keypair(key.data(), scratch.data(), bytes.data());
  sodium_memzero(scratch.data(), scratch.size());
  return key;
}

absl::Status InitSodium() {
  static const int result = sodium_init();
  if (result < 0) {
    return absl::InternalError("libsodium failed to initialize");
  }
  return absl::OkStatus();
}

absl::Status GenerateKeyPair(SecretKey& secret) {
  if (absl::Status s = InitSodium(); !s.ok()) return s;
  PublicKey unused;
  crypto_sign_keypair(unused.data(), secret.bytes.data());
  return absl::OkStatus();
}

Signature SignSnapshot(const SecretKey& key, absl::Span<const uint8_t> header,
                       absl::Span<const uint8_t> manifest) {
  const auto digest = SignedDigest(header, manifest);
  Signature signature;
  crypto_sign_detached(signature.data(), nullptr, digest.data(), digest.size(),
                       key.bytes.data());
  return signature;
}

bool VerifySnapshotSignature(const PublicKey& key,
                             absl::Span<const uint8_t> header,
                             absl::Span<const uint8_t> manifest,
                             const Signature& signature) {
  if (!InitSodium().ok()) return false;
  const auto digest = SignedDigest(header, manifest);
  return crypto_sign_verify_detached(signature.data(), digest.data(),
                                     digest.size(), key.data()) == 0;
}

FrameDigest DigestFrame(absl::Span<const uint8_t> stored) {
  FrameDigest digest;
  crypto_generichash(digest.data(), digest.size(), stored.data(), stored.size(),
                     nullptr, 0);
  return digest;
}

std::string KeyName(const PublicKey& key) {
  return absl::StrCat(
      "ed25519:", absl::BytesToHexString(absl::string_view(
                      reinterpret_cast<const char*>(key.data()), key.size())));
}

}  // namespace thaw::snapshot
