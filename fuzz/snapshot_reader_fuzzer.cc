// Fuzz target: the snapshot reader. The input is a snapshot file; the
// harness first makes its header and manifest checksums right (so the
// fuzzer's mutations reach the manifest's checks, not just the checksum
// compare), opens it as a file, and decodes every chunk it maps. A second
// pass reads it as a signed file under the harness's own key: a manifest
// that names a signer is re-signed with that key (so mutations get past
// the signature to the digest checks), and the file is opened requiring
// the key. Any crash, sanitizer report or hang is a finding; an error
// status is the expected outcome for almost every input.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "base/little_endian.h"
#include "fuzz/fix_checksums.h"
#include "snapshot/format.h"
#include "snapshot/manifest.pb.h"
#include "snapshot/signature.h"
#include "snapshot/snapshot_file.h"
#include "xxhash.h"

namespace {

// The harness's signing key: fixed, so that runs are reproducible.
const thaw::snapshot::SecretKey& HarnessKey() {
  static const thaw::snapshot::SecretKey* key = [] {
    auto* k = new thaw::snapshot::SecretKey;
    (void)thaw::snapshot::InitSodium();
    // libsodium's secret key is the seed followed by the public key.
    std::memset(k->bytes.data(), 0x42, 32);
    const thaw::snapshot::PublicKey pk = k->public_key();
    std::memcpy(k->bytes.data() + 32, pk.data(), 32);
    return k;
  }();
  return *key;
}

// For a file whose manifest parses and names a signer: the same file with
// the harness's key as the signer and a valid signature after the
// manifest. Empty otherwise.
std::string Resigned(const std::string& file) {
  using namespace thaw::snapshot;
  if (file.size() < kHeaderSize) return "";
  const auto* bytes = reinterpret_cast<const uint8_t*>(file.data());
  const uint64_t manifest_offset = thaw::LoadLe64(bytes + 32);
  const uint64_t manifest_size = thaw::LoadLe64(bytes + 40);
  if (manifest_offset < kHeaderSize || manifest_offset > file.size() ||
      manifest_size > file.size() - manifest_offset) {
    return "";
  }
  proto::Manifest manifest;
  if (!manifest.ParseFromArray(bytes + manifest_offset,
                               static_cast<int>(manifest_size)) ||
      !manifest.has_signing()) {
    return "";
  }
  const PublicKey pk = HarnessKey().public_key();
  manifest.mutable_signing()->set_public_key(pk.data(), pk.size());
  const std::string encoded = manifest.SerializeAsString();
  std::string out = file.substr(0, manifest_offset) + encoded;
  auto* h = reinterpret_cast<uint8_t*>(out.data());
  thaw::StoreLe(h + 10, kSignedMinorVersion, 2);
  thaw::StoreLe(h + 40, encoded.size(), 8);
  thaw::StoreLe(h + 48, XXH3_64bits(encoded.data(), encoded.size()), 8);
  thaw::StoreLe(h + 56, XXH3_64bits(h, 56), 8);
  const Signature signature = SignSnapshot(
      HarnessKey(), absl::MakeConstSpan(h, kHeaderSize),
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(encoded.data()),
                          encoded.size()));
  out.append(reinterpret_cast<const char*>(signature.data()), signature.size());
  return out;
}

// Opens `file` (requiring the harness's key when `key`) and decodes every
// chunk it maps.
void OpenAndRead(const std::string& file, bool key) {
  int fd = memfd_create("thaw-fuzz-snapshot", MFD_CLOEXEC);
  if (fd < 0) return;
  if (write(fd, file.data(), file.size()) !=
      static_cast<ssize_t>(file.size())) {
    close(fd);
    return;
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  const thaw::snapshot::PublicKey pk = HarnessKey().public_key();
  auto image = thaw::snapshot::SnapshotImage::Open(path, key ? &pk : nullptr);
  if (image.ok()) {
    std::vector<uint8_t> chunk((*image)->chunk_size());
    const uint64_t chunks = std::min<uint64_t>((*image)->chunk_count(), 4096);
    for (uint64_t c = 0; c < chunks; ++c) {
      (void)(*image)->ReadChunk(c, absl::MakeSpan(chunk));
    }
  }
  close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string file(reinterpret_cast<const char*>(data), size);
  thaw::fuzz::FixChecksums(file);
  OpenAndRead(file, /*key=*/false);
  const std::string signed_file = Resigned(file);
  if (!signed_file.empty()) OpenAndRead(signed_file, /*key=*/true);
  return 0;
}
