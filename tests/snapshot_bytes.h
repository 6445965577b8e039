// Test helpers that treat a snapshot file as bytes: read and write it, and
// rewrite its manifest with every checksum fixed, so that a test reaches
// the reader's checks of what a consistent-looking file says.
#ifndef THAW_TESTS_SNAPSHOT_BYTES_H_
#define THAW_TESTS_SNAPSHOT_BYTES_H_

#include <xxhash.h>

#include <fstream>
#include <functional>
#include <iterator>
#include <string>

#include "base/little_endian.h"
#include "snapshot/format.h"
#include "snapshot/manifest.pb.h"

namespace thaw::testing {

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

inline void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), bytes.size());
}

inline uint64_t HeaderField(const std::string& file, uint64_t offset) {
  return LoadLe64(reinterpret_cast<const uint8_t*>(file.data()) + offset);
}

// `file`'s header, data and manifest, with `edit` applied to the manifest
// and the data section, the manifest re-encoded and the header's sizes and
// checksums fixed. Anything after the manifest (a signature) is dropped.
inline std::string WithManifest(
    const std::string& file,
    const std::function<void(snapshot::proto::Manifest&, std::string&)>& edit) {
  const uint64_t manifest_offset =
      HeaderField(file, snapshot::kHeaderManifestOffsetOffset);
  const uint64_t manifest_size =
      HeaderField(file, snapshot::kHeaderManifestSizeOffset);
  snapshot::proto::Manifest manifest;
  manifest.ParseFromString(file.substr(manifest_offset, manifest_size));
  std::string data = file.substr(snapshot::kHeaderSize,
                                 manifest_offset - snapshot::kHeaderSize);
  edit(manifest, data);
  std::string encoded = manifest.SerializeAsString();
  std::string header = file.substr(0, snapshot::kHeaderSize);
  auto* h = reinterpret_cast<uint8_t*>(header.data());
  StoreLe(h + snapshot::kHeaderDataSizeOffset, data.size(), 8);
  StoreLe(h + snapshot::kHeaderManifestOffsetOffset,
          snapshot::kHeaderSize + data.size(), 8);
  StoreLe(h + snapshot::kHeaderManifestSizeOffset, encoded.size(), 8);
  StoreLe(h + snapshot::kHeaderManifestHashOffset,
          XXH3_64bits(encoded.data(), encoded.size()), 8);
  StoreLe(h + snapshot::kHeaderHashOffset,
          XXH3_64bits(h, snapshot::kHeaderHashOffset), 8);
  return header + data + encoded;
}

}  // namespace thaw::testing

#endif  // THAW_TESTS_SNAPSHOT_BYTES_H_
