// Signed snapshots against an attacker who can write the file: a file whose
// checksums are all valid is still refused when its signature is another
// key's, when anything signed changed, or when a frame no longer matches
// its signed digest; and key files are handled as secrets. The checks run
// before any backend is involved, so the emulated backend is enough here;
// snapshot_test restores signed files on both backends with every engine.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/signing_access.h"
#include "snapshot/format.h"
#include "snapshot/manifest.pb.h"
#include "snapshot/signature.h"
#include "snapshot/snapshot_file.h"
#include "tests/snapshot_bytes.h"
#include "thaw/abi.h"
#include "thaw/signing.h"
#include "thaw/snapshot.h"
#include "thaw/vm.h"

namespace thaw {
namespace {

using ::testing::HasSubstr;

using testing::HeaderField;
using testing::ReadFile;
using testing::WriteFile;

class SignedSnapshotTest : public ::testing::Test {
 protected:
  // One signed snapshot of the test guest, with a recorded working set (so
  // the prefetch engine maps raw frames from the file).
  static void SetUpTestSuite() {
    dir_ = new std::string(std::filesystem::path(::testing::TempDir()) /
                           absl::StrCat("thaw_signed_", getpid()));
    std::filesystem::create_directories(*dir_);
    auto key = SigningKey::Generate();
    auto other = SigningKey::Generate();
    ASSERT_TRUE(key.ok() && other.ok());
    key_ = new SigningKey(*key);
    other_ = new SigningKey(*other);
    VmConfig config;
    config.backend = BackendKind::kEmulated;
    config.memory_size = 4ull << 20;
    config.input_buffer_size = 64 << 10;
    config.output_buffer_size = 64 << 10;
    config.stack_size = 64 << 10;
    auto vm = Vm::Create(config);
    ASSERT_TRUE(vm.ok()) << vm.status();
    ASSERT_TRUE((*vm)->LoadGuest(THAW_TEST_GUEST).ok());
    ASSERT_TRUE((*vm)->Boot().ok());
    good_ = new std::string(*dir_ + "/good.thaw");
    SnapshotOptions options;
    options.signing_key = *key_;
    ASSERT_TRUE((*vm)->Snapshot(*good_, options).ok());
    RestoreOptions record;
    record.backend = BackendKind::kEmulated;
    record.engine = RestoreEngine::kLazy;
    record.record_working_set = true;
    record.verify_key = key_->verify_key();
    auto recorder = Vm::Restore(*good_, record);
    ASSERT_TRUE(recorder.ok()) << recorder.status();
    auto reply = (*recorder)->Call("echo", "hello");
    ASSERT_TRUE(reply.ok()) << reply.status();
    ASSERT_TRUE((*recorder)->WriteWorkingSet(*key_).ok());
    bytes_ = new std::string(ReadFile(*good_));
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
    delete good_;
    delete bytes_;
    delete key_;
    delete other_;
  }

  // The good file with its manifest and data edited, every checksum fixed,
  // and signed with `signer` (nullptr: the old signature kept as it was).
  std::string Rebuild(
      const std::function<void(snapshot::proto::Manifest&, std::string&)>& edit,
      const SigningKey* signer) {
    const std::string old_signature =
        bytes_->substr(bytes_->size() - snapshot::kSignatureSize);
    std::string file = testing::WithManifest(
        *bytes_, [&](snapshot::proto::Manifest& m, std::string& data) {
          edit(m, data);
          if (signer != nullptr) {
            const snapshot::PublicKey key =
                internal::KeyAccess::Public(signer->verify_key());
            m.mutable_signing()->set_public_key(key.data(), key.size());
          }
        });
    if (signer == nullptr) return file + old_signature;
    const auto* bytes = reinterpret_cast<const uint8_t*>(file.data());
    const uint64_t manifest_offset =
        HeaderField(file, snapshot::kHeaderManifestOffsetOffset);
    const snapshot::Signature s = snapshot::SignSnapshot(
        internal::KeyAccess::Secret(*signer),
        absl::MakeConstSpan(bytes, snapshot::kHeaderSize),
        absl::MakeConstSpan(bytes + manifest_offset,
                            file.size() - manifest_offset));
    return file +
           std::string(reinterpret_cast<const char*>(s.data()), s.size());
  }

  // A new file name each time: mapped frames are checked once per file
  // version, and a rewrite within one timestamp tick could look unchanged.
  std::string Write(const std::string& bytes) {
    const std::string path = absl::StrCat(*dir_, "/bad-", ++files_, ".thaw");
    WriteFile(path, bytes);
    return path;
  }

  RestoreOptions Options(RestoreEngine engine, const SigningKey& key) {
    RestoreOptions options;
    options.backend = BackendKind::kEmulated;
    options.engine = engine;
    options.verify_key = key.verify_key();
    return options;
  }

  static std::string* dir_;
  static std::string* good_;
  static std::string* bytes_;
  static SigningKey* key_;
  static SigningKey* other_;
  int files_ = 0;
};

std::string* SignedSnapshotTest::dir_;
std::string* SignedSnapshotTest::good_;
std::string* SignedSnapshotTest::bytes_;
SigningKey* SignedSnapshotTest::key_;
SigningKey* SignedSnapshotTest::other_;

TEST_F(SignedSnapshotTest, TheIntactFileRestoresWithItsKeyOnEveryEngine) {
  auto info = InspectSnapshot(*good_);
  ASSERT_TRUE(info.ok());
  // 1.3 for the signature, 1.5 for the recorded working set's packed twins.
  EXPECT_EQ(info->format_minor, 5);
  EXPECT_GT(info->packed_working_set_bytes, 0u);
  EXPECT_EQ(info->signer, key_->verify_key().Name());
  EXPECT_FALSE(info->signature_verified);  // inspected without a key
  EXPECT_GT(info->working_set_chunks, 0u);
  for (RestoreEngine engine : kRestoreEngines) {
    auto vm = Vm::Restore(*good_, Options(engine, *key_));
    ASSERT_TRUE(vm.ok()) << RestoreEngineName(engine) << ": " << vm.status();
    auto reply = (*vm)->Call("echo", "hello");
    EXPECT_TRUE(reply.ok())
        << RestoreEngineName(engine) << ": " << reply.status();
  }
  EXPECT_TRUE(VerifySnapshot(*good_, nullptr, &key_->verify_key()).ok());
}

TEST_F(SignedSnapshotTest, ValidChecksumsButAnotherKeysSignatureIsRefused) {
  // Everything an attacker without the key can do: take the file, change
  // nothing or anything, and sign it with a key of their own.
  const std::string path =
      Write(Rebuild([](auto&, auto&) {}, /*signer=*/other_));
  auto intact_checksums = snapshot::SnapshotFile::Open(path);
  ASSERT_TRUE(intact_checksums.ok()) << intact_checksums.status();
  for (RestoreEngine engine : kRestoreEngines) {
    auto vm = Vm::Restore(path, Options(engine, *key_));
    EXPECT_EQ(vm.status().code(), absl::StatusCode::kPermissionDenied)
        << RestoreEngineName(engine) << ": " << vm.status();
    EXPECT_THAT(
        vm.status().message(),
        HasSubstr(absl::StrCat("signed by ", other_->verify_key().Name())));
    EXPECT_THAT(vm.status().message(), HasSubstr(path));
  }
  absl::Status verify = VerifySnapshot(path, nullptr, &key_->verify_key());
  EXPECT_EQ(verify.code(), absl::StatusCode::kPermissionDenied) << verify;
}

TEST_F(SignedSnapshotTest, AManifestChangedAfterSigningDoesNotVerify) {
  // A symbol moved, checksums fixed, the signature left as it was.
  const std::string path = Write(Rebuild(
      [](snapshot::proto::Manifest& m, std::string&) {
        m.mutable_abi()->set_restore_generation(m.abi().restore_generation() +
                                                1);
      },
      /*signer=*/nullptr));
  auto vm = Vm::Restore(path, Options(RestoreEngine::kEager, *key_));
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kPermissionDenied)
      << vm.status();
  EXPECT_THAT(vm.status().message(), HasSubstr("does not verify"));
  // Without a key the file is only checksummed, and opens.
  EXPECT_TRUE(Snapshot::Open(path).ok());
}

TEST_F(SignedSnapshotTest, AFrameThatNoLongerMatchesItsDigestIsNeverUsed) {
  // What an XXH3 collision would give an attacker: frame 0 (raw, in the
  // working set, so the prefetch engine maps it) changed, its checksums in
  // the manifest updated to match, and the file signed again. Only the
  // BLAKE2b digest, unchanged, tells.
  uint64_t frame_offset = 0;
  const std::string path = Write(Rebuild(
      [&](snapshot::proto::Manifest& m, std::string& data) {
        const uint64_t offset = m.frames().offset(0);
        const uint32_t size = m.frames().stored_size(0);
        ASSERT_EQ(size, m.memory().chunk_size()) << "frame 0 is not raw";
        frame_offset = snapshot::kHeaderSize + offset;
        data[offset + 100] = static_cast<char>(data[offset + 100] ^ 0x40);
        const auto stored = absl::MakeConstSpan(
            reinterpret_cast<const uint8_t*>(data.data()) + offset, size);
        m.mutable_frames()->set_stored_hash(0, snapshot::HashStored(stored));
        const snapshot::ContentHash content = snapshot::HashContent(stored);
        m.mutable_frames()->set_content_hash_low(0, content.low);
        m.mutable_frames()->set_content_hash_high(0, content.high);
      },
      /*signer=*/key_));
  auto opened = Snapshot::Open(path, key_->verify_key());
  ASSERT_TRUE(opened.ok()) << opened.status();
  for (RestoreEngine engine : kRestoreEngines) {
    auto vm = Vm::Restore(path, Options(engine, *key_));
    absl::Status status = vm.status();
    if (vm.ok()) {
      // A lazy engine finds it when the guest first touches the chunk.
      status = (*vm)->Call("echo", "hello").status();
    }
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss)
        << RestoreEngineName(engine) << ": " << status;
    EXPECT_THAT(status.message(), HasSubstr("BLAKE2b"))
        << RestoreEngineName(engine);
    EXPECT_THAT(status.message(), HasSubstr(absl::StrCat(frame_offset)));
  }
  absl::Status verify = VerifySnapshot(path, nullptr, &key_->verify_key());
  EXPECT_EQ(verify.code(), absl::StatusCode::kDataLoss) << verify;
}

TEST_F(SignedSnapshotTest, ASignatureMissingOrAddedIsCaught) {
  const uint64_t size = bytes_->size();
  // Signed, signature cut off.
  absl::Status cut =
      Snapshot::Open(Write(bytes_->substr(0, size - snapshot::kSignatureSize)))
          .status();
  EXPECT_EQ(cut.code(), absl::StatusCode::kDataLoss) << cut;
  // Signer removed from the manifest: the 64 bytes after it are unexplained.
  const std::string stripped = Rebuild(
      [](snapshot::proto::Manifest& m, std::string&) { m.clear_signing(); },
      /*signer=*/nullptr);
  absl::Status added = Snapshot::Open(Write(stripped)).status();
  EXPECT_EQ(added.code(), absl::StatusCode::kDataLoss) << added;
  EXPECT_THAT(added.message(), HasSubstr("names no signer"));
  // Stripped down to an unsigned file: it opens without a key, and is
  // refused with one.
  const std::string unsigned_file =
      stripped.substr(0, stripped.size() - snapshot::kSignatureSize);
  const std::string path = Write(unsigned_file);
  EXPECT_TRUE(Snapshot::Open(path).ok());
  absl::Status refused = Snapshot::Open(path, key_->verify_key()).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("not signed"));
}

class KeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("thaw_keys_", getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(KeyFileTest, KeysRoundTripThroughTheirFiles) {
  auto key = SigningKey::Generate();
  ASSERT_TRUE(key.ok());
  const std::string secret = dir_ + "/key", pub = dir_ + "/key.pub";
  ASSERT_TRUE(key->Save(secret).ok());
  ASSERT_TRUE(key->verify_key().Save(pub).ok());
  struct stat st;
  ASSERT_EQ(stat(secret.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto loaded = SigningKey::Load(secret);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->verify_key(), key->verify_key());
  auto loaded_pub = VerifyKey::Load(pub);
  ASSERT_TRUE(loaded_pub.ok()) << loaded_pub.status();
  EXPECT_EQ(*loaded_pub, key->verify_key());
  auto parsed = VerifyKey::Parse(key->verify_key().ToString());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, key->verify_key());
  // Another key is another key.
  auto other = SigningKey::Generate();
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->verify_key() == key->verify_key());
  // A key file is never replaced.
  EXPECT_EQ(other->Save(secret).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(SigningKey::Load(secret)->verify_key(), key->verify_key());
}

TEST_F(KeyFileTest, BadKeyFilesAreRefusedNamingTheFile) {
  auto key = SigningKey::Generate();
  ASSERT_TRUE(key.ok());
  const std::string secret = dir_ + "/key";
  ASSERT_TRUE(key->Save(secret).ok());
  ASSERT_EQ(chmod(secret.c_str(), 0644), 0);
  absl::Status readable = SigningKey::Load(secret).status();
  EXPECT_EQ(readable.code(), absl::StatusCode::kPermissionDenied) << readable;
  EXPECT_THAT(readable.message(), HasSubstr(secret));

  const std::string bad = dir_ + "/bad";
  auto write = [&](const std::string& text) {
    WriteFile(bad, text);
    chmod(bad.c_str(), 0600);
  };
  write("thaw-verify-key ed25519 1234\n");
  absl::Status short_key = VerifyKey::Load(bad).status();
  EXPECT_EQ(short_key.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(short_key.message(), HasSubstr(bad));
  write(key->verify_key().ToString());
  absl::Status wrong_kind = SigningKey::Load(bad).status();
  EXPECT_EQ(wrong_kind.code(), absl::StatusCode::kInvalidArgument)
      << wrong_kind;
  write("thaw-verify-key ed25519 " + std::string(64, 'z'));
  EXPECT_EQ(VerifyKey::Load(bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A secret key whose halves disagree.
  ASSERT_EQ(chmod(secret.c_str(), 0600), 0);
  std::string text = ReadFile(secret);
  const size_t last = text.find_last_not_of("\n");
  text[last] = text[last] == '0' ? '1' : '0';
  write(text);
  absl::Status damaged = SigningKey::Load(bad).status();
  EXPECT_EQ(damaged.code(), absl::StatusCode::kInvalidArgument) << damaged;
  EXPECT_EQ(VerifyKey::Load(dir_ + "/missing").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace thaw
