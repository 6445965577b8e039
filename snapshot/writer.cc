#include "snapshot/writer.h"

#include <sys/random.h>
#include <xxhash.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/errno_status.h"
#include "base/little_endian.h"
#include "snapshot/atomic_file.h"
#include "snapshot/format.h"

namespace thaw::snapshot {
namespace {

struct HashKey {
  uint64_t low, high;
  bool operator==(const HashKey&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const HashKey& k) {
    return H::combine(std::move(h), k.low, k.high);
  }
};

bool AllZero(const uint8_t* p, size_t n) {
  // Compare 8 bytes at a time; chunks are 4 KiB-aligned multiples of 8.
  const uint64_t* words = reinterpret_cast<const uint64_t*>(p);
  for (size_t i = 0; i < n / 8; ++i) {
    if (words[i] != 0) return false;
  }
  return true;
}

// A new snapshot file with room for the header, which Finish() writes last.
absl::StatusOr<std::unique_ptr<AtomicFile>> CreateWithHeaderSpace(
    const std::string& path) {
  auto file = AtomicFile::Create(path);
  if (!file.ok()) return file.status();
  uint8_t zeros[kHeaderSize] = {};
  if (absl::Status s = (*file)->Append(absl::MakeConstSpan(zeros)); !s.ok()) {
    return s;
  }
  return file;
}

// Appends the 64-byte header (with checksums) at offset 0 of `file`.
absl::Status WriteHeader(AtomicFile& file, uint64_t data_size,
                         uint64_t manifest_offset, uint64_t manifest_size,
                         uint64_t manifest_hash) {
  uint8_t header[kHeaderSize] = {};
  std::memcpy(header + kHeaderMagicOffset, kMagic, sizeof(kMagic));
  StoreLe(header + kHeaderMajorOffset, kMajorVersion, 2);
  StoreLe(header + kHeaderMinorOffset, kMinorVersion, 2);
  StoreLe(header + kHeaderArchOffset, kArchX86_64, 4);
  StoreLe(header + kHeaderDataOffsetOffset, kHeaderSize, 8);
  StoreLe(header + kHeaderDataSizeOffset, data_size, 8);
  StoreLe(header + kHeaderManifestOffsetOffset, manifest_offset, 8);
  StoreLe(header + kHeaderManifestSizeOffset, manifest_size, 8);
  StoreLe(header + kHeaderManifestHashOffset, manifest_hash, 8);
  StoreLe(header + kHeaderHashOffset, XXH3_64bits(header, kHeaderHashOffset),
          8);
  return file.WriteAt(0, absl::MakeConstSpan(header, kHeaderSize));
}

// Appends the manifest and writes the header: the last step of every writer.
absl::Status Finish(AtomicFile& file, const proto::Manifest& manifest) {
  const uint64_t manifest_offset = file.size();
  std::string bytes;
  if (!manifest.SerializeToString(&bytes)) {
    return absl::InternalError("snapshot manifest does not serialize");
  }
  if (bytes.size() > kMaxManifestSize) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "snapshot manifest of %d bytes exceeds the %d-byte limit", bytes.size(),
        kMaxManifestSize));
  }
  const auto span = absl::MakeConstSpan(
      reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (absl::Status s = file.Append(span); !s.ok()) return s;
  if (absl::Status s =
          WriteHeader(file, manifest_offset - kHeaderSize, manifest_offset,
                      bytes.size(), XXH3_64bits(bytes.data(), bytes.size()));
      !s.ok()) {
    return s;
  }
  return file.Commit();
}

class FrameWriter {
 public:
  FrameWriter(AtomicFile& file, proto::Frames& frames, uint32_t chunk_size,
              int level)
      : file_(file),
        frames_(frames),
        chunk_size_(chunk_size),
        level_(level),
        cctx_(ZSTD_createCCtx(), ZSTD_freeCCtx),
        compressed_(ZSTD_compressBound(chunk_size)) {}

  // Compresses `chunk` (raw when that is not smaller) and appends it.
  absl::StatusOr<uint32_t> Add(const uint8_t* chunk) {
    size_t n =
        ZSTD_compressCCtx(cctx_.get(), compressed_.data(), compressed_.size(),
                          chunk, chunk_size_, level_);
    if (ZSTD_isError(n)) {
      return absl::InternalError(
          absl::StrCat("zstd compression failed: ", ZSTD_getErrorName(n)));
    }
    const uint8_t* stored = compressed_.data();
    if (n >= chunk_size_) {
      stored = chunk;
      n = chunk_size_;
    }
    ContentHash content = HashContent(absl::MakeConstSpan(chunk, chunk_size_));
    return AddStored(absl::MakeConstSpan(stored, n), content);
  }

  // Appends frame `frame` of `from` as it is stored (no decompression, no
  // recompression), after checking its stored hash.
  absl::StatusOr<uint32_t> CopyFrom(const SnapshotFile& from, uint32_t frame) {
    auto stored = from.ReadStored(frame);
    if (!stored.ok()) return stored.status();
    const auto span = absl::MakeConstSpan(
        reinterpret_cast<const uint8_t*>(stored->data()), stored->size());
    if (HashStored(span) != from.manifest().frames().stored_hash(frame)) {
      return from.Corrupt(
          absl::StrFormat("frame %d: checksum mismatch", frame));
    }
    return AddStored(span, from.FrameContentHash(frame));
  }

  absl::StatusOr<uint32_t> AddStored(absl::Span<const uint8_t> stored,
                                     ContentHash content) {
    const uint32_t index = frames_.offset_size();
    frames_.add_offset(file_.size() - kHeaderSize);
    frames_.add_stored_size(stored.size());
    frames_.add_stored_hash(HashStored(stored));
    frames_.add_content_hash_low(content.low);
    frames_.add_content_hash_high(content.high);
    if (absl::Status s = file_.Append(stored); !s.ok()) return s;
    return index;
  }

 private:
  AtomicFile& file_;
  proto::Frames& frames_;
  uint32_t chunk_size_;
  int level_;
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx_;
  std::vector<uint8_t> compressed_;
};

// Chunks in writing order: the working set first, then the rest.
std::vector<uint32_t> WritingOrder(uint64_t chunks,
                                   const std::vector<uint32_t>& first) {
  std::vector<uint32_t> order;
  order.reserve(chunks);
  std::vector<bool> seen(chunks, false);
  for (uint32_t c : first) {
    if (c < chunks && !seen[c]) {
      seen[c] = true;
      order.push_back(c);
    }
  }
  for (uint32_t c = 0; c < chunks; ++c) {
    if (!seen[c]) order.push_back(c);
  }
  return order;
}

void SetChunkTable(proto::Memory& memory, const std::vector<uint32_t>& table,
                   uint32_t zero_value) {
  const uint64_t chunks = table.size();
  std::string bitmap((chunks + 7) / 8, '\0');
  memory.clear_chunk_frame();
  for (uint64_t c = 0; c < chunks; ++c) {
    if (table[c] == zero_value) {
      bitmap[c / 8] = static_cast<char>(bitmap[c / 8] | (1u << (c % 8)));
    } else {
      memory.add_chunk_frame(table[c]);
    }
  }
  memory.set_zero_bitmap(std::move(bitmap));
}

}  // namespace

absl::Status WriteSnapshot(const WriteRequest& r) {
  const uint32_t chunk_size = r.chunk_size;
  if (chunk_size < kMinChunkSize || chunk_size > kMaxChunkSize ||
      (chunk_size & (chunk_size - 1)) != 0 || r.memory_size % chunk_size != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "snapshot chunk size %d: must be a power of two from %d to %d bytes "
        "dividing the memory size",
        chunk_size, kMinChunkSize, kMaxChunkSize));
  }
  if (r.level < ZSTD_minCLevel() || r.level > ZSTD_maxCLevel()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("snapshot compression level %d: must be %d to %d",
                        r.level, ZSTD_minCLevel(), ZSTD_maxCLevel()));
  }
  const bool same_chunks = r.source && r.source->chunk_size() == chunk_size &&
                           r.source->memory_size() == r.memory_size;
  if (r.diff && !same_chunks) {
    return absl::InvalidArgumentError(
        "a diff snapshot needs the parent's chunk size and memory size");
  }
  auto file = CreateWithHeaderSpace(r.path);
  if (!file.ok()) return file.status();

  proto::Manifest manifest = r.manifest;
  std::string id(16, '\0');
  if (getrandom(id.data(), id.size(), 0) != 16) {
    return ErrnoStatus("getrandom for the snapshot id", errno);
  }
  manifest.set_snapshot_id(id);
  manifest.set_created_unix_ns(absl::ToUnixNanos(absl::Now()));
  manifest.set_compression_level(r.level);
  proto::Memory& memory = *manifest.mutable_memory();
  memory.set_size(r.memory_size);
  memory.set_chunk_size(chunk_size);
  if (r.diff) {
    manifest.mutable_parent()->set_path(r.parent_path);
    manifest.mutable_parent()->set_snapshot_id(
        r.source->manifest().snapshot_id());
  }

  const uint64_t chunks = r.memory_size / chunk_size;
  constexpr uint32_t kZeroEntry = SnapshotFile::kZero;
  std::vector<uint32_t> table(chunks, kZeroEntry);
  FrameWriter frames(**file, *manifest.mutable_frames(), chunk_size, r.level);
  // Identical chunks are stored once: by content in memory (confirmed with
  // memcmp, so a crafted hash collision cannot merge different chunks), and
  // by their frame in the source image.
  absl::flat_hash_map<HashKey, uint32_t> by_content;  // -> first chunk
  absl::flat_hash_map<uint64_t, uint32_t> by_source;  // (file,frame) -> frame
  std::vector<uint32_t> order = WritingOrder(chunks, r.working_set);
  uint64_t done = 0;
  for (uint32_t c : order) {
    if (r.progress && (++done % 256 == 0 || done == chunks)) {
      r.progress(done, chunks);
    }
    ChunkHint hint = r.hint ? r.hint(c) : ChunkHint::kRead;
    if (hint == ChunkHint::kUnchanged && !same_chunks) hint = ChunkHint::kRead;
    if (hint == ChunkHint::kZero) continue;
    if (hint == ChunkHint::kUnchanged) {
      if (r.diff) {
        table[c] = kParentChunk;
        continue;
      }
      SnapshotImage::Location where = r.source->Locate(c);
      if (where.zero()) continue;
      const uint64_t key = (uint64_t{where.file} << 32) | where.frame;
      if (auto it = by_source.find(key); it != by_source.end()) {
        table[c] = it->second;
        continue;
      }
      auto frame = frames.CopyFrom(*r.source->files()[where.file], where.frame);
      if (!frame.ok()) return frame.status();
      by_source[key] = table[c] = *frame;
      continue;
    }
    const uint8_t* bytes = r.memory + uint64_t{c} * chunk_size;
    if (AllZero(bytes, chunk_size)) {
      if (r.diff && !r.source->Locate(c).zero()) {
        // Zero now but not in the parent: store a zero frame.
      } else {
        continue;
      }
    }
    ContentHash hash = HashContent(absl::MakeConstSpan(bytes, chunk_size));
    if (r.diff && hash == r.source->ChunkContentHash(c)) {
      table[c] = kParentChunk;
      continue;
    }
    HashKey key{hash.low, hash.high};
    if (auto it = by_content.find(key);
        it != by_content.end() &&
        std::memcmp(r.memory + uint64_t{it->second} * chunk_size, bytes,
                    chunk_size) == 0) {
      table[c] = table[it->second];
      continue;
    }
    auto frame = frames.Add(bytes);
    if (!frame.ok()) return frame.status();
    table[c] = *frame;
    by_content.emplace(key, c);
  }
  SetChunkTable(memory, table, kZeroEntry);
  // Record the working set as chunk indices (all of them, so that prefetch
  // also covers chunks held by a parent).
  for (uint32_t c : r.working_set) {
    if (c < chunks) manifest.add_working_set(c);
  }
  return Finish(**file, manifest);
}

absl::Status RewriteWithWorkingSet(const SnapshotFile& source,
                                   const std::vector<uint32_t>& working_set,
                                   const std::vector<uint32_t>& written_pages) {
  proto::Manifest manifest = source.manifest();
  const uint64_t chunks = source.chunk_count();
  auto file = CreateWithHeaderSpace(source.path());
  if (!file.ok()) return file.status();
  manifest.clear_frames();
  manifest.clear_working_set();
  manifest.clear_working_set_written_pages();
  FrameWriter frames(**file, *manifest.mutable_frames(), source.chunk_size(),
                     manifest.compression_level());
  std::vector<uint32_t> table(chunks, SnapshotFile::kZero);
  std::vector<bool> in_working_set(chunks, false);
  for (uint32_t c : working_set) {
    if (c < chunks) in_working_set[c] = true;
  }
  // The working set's chunks first, each as its own raw frame (zero chunks
  // too), in guest-address order from a 4 KiB-aligned offset: a restore
  // maps each run of adjacent chunks with one mmap. Chunks a parent holds
  // stay there and are streamed.
  std::vector<uint8_t> chunk(source.chunk_size());
  const uint64_t misaligned = (*file)->size() % kRawFrameAlignment;
  if (misaligned != 0) {
    std::vector<uint8_t> padding(kRawFrameAlignment - misaligned, 0);
    if (absl::Status s = (*file)->Append(padding); !s.ok()) return s;
  }
  for (uint64_t c = 0; c < chunks; ++c) {
    const uint32_t old = source.ChunkFrame(c);
    if (!in_working_set[c] || old == kParentChunk) continue;
    ContentHash content;
    if (old == SnapshotFile::kZero) {
      std::fill(chunk.begin(), chunk.end(), 0);
      content = HashContent(chunk);
    } else {
      if (absl::Status s = source.ReadFrame(old, absl::MakeSpan(chunk));
          !s.ok()) {
        return s;
      }
      content = source.FrameContentHash(old);
    }
    auto frame = frames.AddStored(chunk, content);
    if (!frame.ok()) return frame.status();
    table[c] = *frame;
  }
  // The rest: stored frames copied as they are.
  std::vector<uint32_t> new_index(source.frame_count(), SnapshotFile::kZero);
  for (uint64_t c = 0; c < chunks; ++c) {
    const uint32_t old = source.ChunkFrame(c);
    if (in_working_set[c] && old != kParentChunk) continue;
    if (old == SnapshotFile::kZero || old == kParentChunk) {
      table[c] = old;
      continue;
    }
    if (new_index[old] == SnapshotFile::kZero) {
      auto frame = frames.CopyFrom(source, old);
      if (!frame.ok()) return frame.status();
      new_index[old] = *frame;
    }
    table[c] = new_index[old];
  }
  SetChunkTable(*manifest.mutable_memory(), table, SnapshotFile::kZero);
  for (uint32_t c : working_set) {
    if (c < chunks) manifest.add_working_set(c);
  }
  const uint64_t pages = chunks * (source.chunk_size() / 4096);
  for (uint32_t p : written_pages) {
    if (p < pages) manifest.add_working_set_written_pages(p);
  }
  return Finish(**file, manifest);
}

}  // namespace thaw::snapshot
