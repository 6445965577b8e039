// thaw::SigningKey and thaw::VerifyKey (thaw/signing.h): key files, and the
// bridge to the snapshot layer's ed25519 keys (snapshot/signature.h).
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/errno_status.h"
#include "lib/signing_access.h"
#include "snapshot/atomic_file.h"
#include "thaw/signing.h"

namespace thaw {

struct SigningKey::Secret {
  snapshot::SecretKey key;  // wiped by its destructor
};

namespace {

constexpr absl::string_view kPublicTag = "thaw-verify-key";
constexpr absl::string_view kSecretTag = "thaw-signing-key";
constexpr absl::string_view kAlgorithm = "ed25519";

// Parses "<tag> ed25519 <hex>" into `out` (`size` bytes). `where` names the
// text's origin in errors.
absl::Status ParseKeyLine(absl::string_view text, absl::string_view tag,
                          uint8_t* out, size_t size, absl::string_view where) {
  std::vector<absl::string_view> words =
      absl::StrSplit(absl::StripAsciiWhitespace(text), ' ', absl::SkipEmpty());
  if (words.size() != 3 || words[0] != tag || words[1] != kAlgorithm) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": not a ", tag, " (expected one line \"", tag, " ",
                     kAlgorithm, " <", size * 2, " hex digits>\")"));
  }
  if (words[2].size() != size * 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": the key is ", words[2].size(),
                     " hex digits, not ", size * 2));
  }
  for (char c : words[2]) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": the key is not hexadecimal"));
    }
  }
  std::string bytes = absl::HexStringToBytes(words[2]);
  std::memcpy(out, bytes.data(), size);
  // The copy holds secret bytes for a secret key: wipe it.
  std::fill(bytes.begin(), bytes.end(), '\0');
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadKeyFile(const std::string& path, bool secret) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return ErrnoStatus(absl::StrCat("key file \"", path, "\""), errno);
  }
  if (!S_ISREG(st.st_mode) || st.st_size > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key file \"", path, "\": not a regular file of at most 4 KiB"));
  }
  if (secret && (st.st_mode & 077) != 0) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "signing key \"%s\" may be read by group or others (mode %04o); "
        "chmod 600 it",
        path, st.st_mode & 07777));
  }
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) {
    return absl::UnavailableError(
        absl::StrCat("key file \"", path, "\": read failed"));
  }
  return text.str();
}

absl::Status WriteKeyFile(const std::string& path, const std::string& text,
                          bool secret) {
  struct stat st;
  if (secret && lstat(path.c_str(), &st) == 0) {
    return absl::AlreadyExistsError(absl::StrCat(
        "signing key \"", path, "\" exists; refusing to replace a key"));
  }
  auto file = snapshot::AtomicFile::Create(path);  // mode 0600
  if (!file.ok()) return file.status();
  if (absl::Status s = (*file)->Append(absl::MakeConstSpan(
          reinterpret_cast<const uint8_t*>(text.data()), text.size()));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = (*file)->Commit(); !s.ok()) return s;
  if (!secret && chmod(path.c_str(), 0644) != 0) {
    return ErrnoStatus(absl::StrCat("chmod key file \"", path, "\""), errno);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<VerifyKey> VerifyKey::Parse(absl::string_view text) {
  VerifyKey key;
  if (absl::Status s = ParseKeyLine(text, kPublicTag, key.bytes_.data(),
                                    key.bytes_.size(), "verify key");
      !s.ok()) {
    return s;
  }
  return key;
}

absl::StatusOr<VerifyKey> VerifyKey::Load(const std::string& path) {
  auto text = ReadKeyFile(path, /*secret=*/false);
  if (!text.ok()) return text.status();
  VerifyKey key;
  if (absl::Status s =
          ParseKeyLine(*text, kPublicTag, key.bytes_.data(), key.bytes_.size(),
                       absl::StrCat("key file \"", path, "\""));
      !s.ok()) {
    return s;
  }
  return key;
}

absl::Status VerifyKey::Save(const std::string& path) const {
  return WriteKeyFile(path, ToString() + "\n", /*secret=*/false);
}

std::string VerifyKey::ToString() const {
  return absl::StrCat(kPublicTag, " ", kAlgorithm, " ",
                      Name().substr(kAlgorithm.size() + 1));
}

std::string VerifyKey::Name() const { return snapshot::KeyName(bytes_); }

absl::StatusOr<SigningKey> SigningKey::Generate() {
  auto secret = std::make_shared<Secret>();
  if (absl::Status s = snapshot::GenerateKeyPair(secret->key); !s.ok()) {
    return s;
  }
  SigningKey key;
  key.public_.bytes_ = secret->key.public_key();
  key.secret_ = std::move(secret);
  return key;
}

absl::StatusOr<SigningKey> SigningKey::Load(const std::string& path) {
  auto text = ReadKeyFile(path, /*secret=*/true);
  if (!text.ok()) return text.status();
  auto secret = std::make_shared<Secret>();
  absl::Status s = ParseKeyLine(*text, kSecretTag, secret->key.bytes.data(),
                                secret->key.bytes.size(),
                                absl::StrCat("signing key \"", path, "\""));
  std::fill(text->begin(), text->end(), '\0');
  if (!s.ok()) return s;
  if (absl::Status init = snapshot::InitSodium(); !init.ok()) return init;
  SigningKey key;
  key.public_.bytes_ = secret->key.public_key();
  // libsodium's secret key ends with its public key: a file whose halves
  // disagree was damaged or assembled by hand.
  if (!std::equal(key.public_.bytes_.begin(), key.public_.bytes_.end(),
                  secret->key.bytes.begin() + 32)) {
    return absl::InvalidArgumentError(
        absl::StrCat("signing key \"", path,
                     "\": its public half does not match its seed (damaged?)"));
  }
  key.secret_ = std::move(secret);
  return key;
}

absl::Status SigningKey::Save(const std::string& path) const {
  std::string text =
      absl::StrCat(kSecretTag, " ", kAlgorithm, " ",
                   absl::BytesToHexString(absl::string_view(
                       reinterpret_cast<const char*>(secret_->key.bytes.data()),
                       secret_->key.bytes.size())),
                   "\n");
  absl::Status s = WriteKeyFile(path, text, /*secret=*/true);
  std::fill(text.begin(), text.end(), '\0');
  return s;
}

namespace internal {

const snapshot::SecretKey& KeyAccess::Secret(const SigningKey& key) {
  return key.secret_->key;
}

const snapshot::PublicKey& KeyAccess::Public(const VerifyKey& key) {
  return key.bytes_;
}

absl::StatusOr<VerifyKey> KeyAccess::FromBytes(absl::string_view bytes) {
  VerifyKey key;
  if (bytes.size() != key.bytes_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a verify key is 32 bytes, not ", bytes.size()));
  }
  std::memcpy(key.bytes_.data(), bytes.data(), bytes.size());
  return key;
}

}  // namespace internal
}  // namespace thaw
