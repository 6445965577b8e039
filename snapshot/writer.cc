#include "snapshot/writer.h"

#include <sys/random.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/errno_status.h"
#include "base/little_endian.h"
#include "base/parallel_for.h"
#include "snapshot/atomic_file.h"
#include "snapshot/format.h"
#include "snapshot/signature.h"

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

// A new snapshot file (or the one `output_fd` holds) with room for the
// header, which Finish() writes last.
absl::StatusOr<std::unique_ptr<AtomicFile>> CreateWithHeaderSpace(
    const std::string& path, int output_fd = -1) {
  absl::StatusOr<std::unique_ptr<AtomicFile>> file =
      output_fd >= 0 ? AtomicFile::Adopt(output_fd, path)
                     : AtomicFile::Create(path);
  if (!file.ok()) return file.status();
  uint8_t zeros[kHeaderSize] = {};
  if (absl::Status s = (*file)->Append(absl::MakeConstSpan(zeros)); !s.ok()) {
    return s;
  }
  return file;
}

// The 64-byte header, with its checksums.
std::array<uint8_t, kHeaderSize> MakeHeader(uint16_t minor, uint64_t data_size,
                                            uint64_t manifest_offset,
                                            uint64_t manifest_size,
                                            uint64_t manifest_hash) {
  std::array<uint8_t, kHeaderSize> bytes{};
  uint8_t* header = bytes.data();
  std::memcpy(header + kHeaderMagicOffset, kMagic, sizeof(kMagic));
  StoreLe(header + kHeaderMajorOffset, kMajorVersion, 2);
  StoreLe(header + kHeaderMinorOffset, minor, 2);
  StoreLe(header + kHeaderArchOffset, kArchX86_64, 4);
  StoreLe(header + kHeaderDataOffsetOffset, kHeaderSize, 8);
  StoreLe(header + kHeaderDataSizeOffset, data_size, 8);
  StoreLe(header + kHeaderManifestOffsetOffset, manifest_offset, 8);
  StoreLe(header + kHeaderManifestSizeOffset, manifest_size, 8);
  StoreLe(header + kHeaderManifestHashOffset, manifest_hash, 8);
  StoreLe(header + kHeaderHashOffset, XXH3_64bits(header, kHeaderHashOffset),
          8);
  return bytes;
}

// Appends the manifest (and, with `key`, the signature), writes the header
// and commits: the last step of every writer. `digests` holds the frames'
// BLAKE2b digests, in frame order, when signing.
absl::Status Finish(AtomicFile& file, proto::Manifest& manifest,
                    const SecretKey* key, std::string digests) {
  if (key != nullptr) {
    const PublicKey public_key = key->public_key();
    proto::Signing& signing = *manifest.mutable_signing();
    signing.set_public_key(public_key.data(), public_key.size());
    signing.set_frame_digests(std::move(digests));
  } else {
    manifest.clear_signing();
  }
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
  const auto header = MakeHeader(
      manifest.has_packed_working_set() ? kPackedWorkingSetMinorVersion
      : manifest.has_linux_machine()    ? kLinuxVmMinorVersion
      : key != nullptr                  ? kSignedMinorVersion
                                        : kUnsignedMinorVersion,
      manifest_offset - kHeaderSize, manifest_offset, bytes.size(),
      XXH3_64bits(bytes.data(), bytes.size()));
  if (absl::Status s = file.Append(span); !s.ok()) return s;
  if (key != nullptr) {
    const Signature signature =
        SignSnapshot(*key, absl::MakeConstSpan(header), span);
    if (absl::Status s = file.Append(absl::MakeConstSpan(signature)); !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = file.WriteAt(0, absl::MakeConstSpan(header)); !s.ok()) {
    return s;
  }
  return file.Commit();
}

// Chunks handled per window of the writer's loop: enough to keep every core
// busy, few enough that the compressed frames waiting to be appended stay
// small (256 x 64 KiB chunks is 16 MiB of memory).
constexpr uint64_t kWindow = 256;

// One thread's zstd context and output buffer.
class Compressor {
 public:
  Compressor(uint32_t chunk_size, int level)
      : chunk_size_(chunk_size),
        level_(level),
        cctx_(ZSTD_createCCtx(), ZSTD_freeCCtx) {}
  // Compresses `chunk` into `out`; returns the bytes to store: `out`, or
  // the chunk itself when compression does not make it smaller.
  absl::StatusOr<absl::Span<const uint8_t>> Compress(
      const uint8_t* chunk, std::vector<uint8_t>& out) {
    out.resize(ZSTD_compressBound(chunk_size_));
    size_t n = ZSTD_compressCCtx(cctx_.get(), out.data(), out.size(), chunk,
                                 chunk_size_, level_);
    if (ZSTD_isError(n)) {
      return absl::InternalError(
          absl::StrCat("zstd compression failed: ", ZSTD_getErrorName(n)));
    }
    if (n >= chunk_size_) return absl::MakeConstSpan(chunk, chunk_size_);
    return absl::MakeConstSpan(out.data(), n);
  }

 private:
  uint32_t chunk_size_;
  int level_;
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx_;
};

// What the writer does with one chunk of a window.
struct ChunkWork {
  enum Action { kNothing, kParent, kSameAs, kCopySource, kCompress };
  uint32_t chunk = 0;
  ChunkHint hint = ChunkHint::kRead;
  const uint8_t* bytes = nullptr;
  bool zero = false;
  ContentHash hash;
  Action action = kNothing;
  uint32_t same_as = 0;  // kSameAs: the chunk stored with this content
  std::vector<uint8_t> compressed;
  absl::StatusOr<absl::Span<const uint8_t>> stored =
      absl::Span<const uint8_t>();
};

class FrameWriter {
 public:
  // `digest`: also keep each frame's BLAKE2b digest (a signed file).
  FrameWriter(AtomicFile& file, proto::Frames& frames, bool digest)
      : file_(file), frames_(frames), digest_(digest) {}

  // Appends frame `frame` of `from` as it is stored (no decompression, no
  // recompression), after checking it (checksum, and digest if `from` was
  // authenticated).
  absl::StatusOr<uint32_t> CopyFrom(const SnapshotFile& from, uint32_t frame) {
    auto stored = from.ReadStored(frame);
    if (!stored.ok()) return stored.status();
    const auto span = absl::MakeConstSpan(
        reinterpret_cast<const uint8_t*>(stored->data()), stored->size());
    if (absl::Status s = from.CheckStored(frame, span); !s.ok()) return s;
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
    if (digest_) {
      const FrameDigest digest = DigestFrame(stored);
      digests_.append(reinterpret_cast<const char*>(digest.data()),
                      digest.size());
    }
    if (absl::Status s = file_.Append(stored); !s.ok()) return s;
    return index;
  }

  // The digests of the frames added, in order (when digesting).
  std::string TakeDigests() { return std::move(digests_); }

 private:
  AtomicFile& file_;
  proto::Frames& frames_;
  bool digest_;
  std::string digests_;
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
  auto file = CreateWithHeaderSpace(r.path, r.output_fd);
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
  FrameWriter frames(**file, *manifest.mutable_frames(),
                     r.signing_key != nullptr);
  const unsigned threads = r.threads != 0 ? r.threads : UsableCores();
  std::vector<Compressor> compressors;
  for (unsigned t = 0; t < threads; ++t) {
    compressors.emplace_back(chunk_size, r.level);
  }
  // Identical chunks are stored once: by content in memory (confirmed with
  // memcmp, so a crafted hash collision cannot merge different chunks), and
  // by their frame in the source image.
  absl::flat_hash_map<HashKey, uint32_t> by_content;  // -> first chunk
  absl::flat_hash_map<uint64_t, uint32_t> by_source;  // (file,frame) -> frame
  std::vector<uint32_t> order = WritingOrder(chunks, r.working_set);
  // The chunks go in windows: what costs (the zero test, the content hash,
  // compression) runs on every core; the decisions and the appends run in
  // writing order, so the file does not depend on how many threads wrote
  // it. With more than one thread, a window's frames are appended (by one
  // thread at a time) while the next window is hashed and compressed.
  auto append = [&](std::vector<ChunkWork>& work,
                    uint64_t count) -> absl::Status {
    for (uint64_t i = 0; i < count; ++i) {
      ChunkWork& w = work[i];
      const uint32_t c = w.chunk;
      switch (w.action) {
        case ChunkWork::kNothing:
          break;
        case ChunkWork::kParent:
          table[c] = kParentChunk;
          break;
        case ChunkWork::kSameAs:
          table[c] = table[w.same_as];
          break;
        case ChunkWork::kCopySource: {
          SnapshotImage::Location where = r.source->Locate(c);
          if (where.zero()) break;
          const uint64_t key = (uint64_t{where.file} << 32) | where.frame;
          if (auto it = by_source.find(key); it != by_source.end()) {
            table[c] = it->second;
            break;
          }
          auto frame =
              frames.CopyFrom(*r.source->files()[where.file], where.frame);
          if (!frame.ok()) return frame.status();
          by_source[key] = table[c] = *frame;
          break;
        }
        case ChunkWork::kCompress: {
          if (!w.stored.ok()) return w.stored.status();
          auto frame = frames.AddStored(*w.stored, w.hash);
          if (!frame.ok()) return frame.status();
          table[c] = *frame;
          break;
        }
      }
    }
    return absl::OkStatus();
  };
  const uint64_t window = std::min<uint64_t>(kWindow, chunks);
  std::vector<ChunkWork> buffers[2] = {std::vector<ChunkWork>(window),
                                       std::vector<ChunkWork>(window)};
  std::thread appender;
  absl::Status appended;  // the appender's result, read after joining it
  uint64_t windows = 0;
  for (uint64_t start = 0; start < chunks; start += kWindow, ++windows) {
    const uint64_t count = std::min<uint64_t>(kWindow, chunks - start);
    std::vector<ChunkWork>& work = buffers[windows % 2];
    for (uint64_t i = 0; i < count; ++i) {
      ChunkWork& w = work[i];  // its buffer is kept from window to window
      w.chunk = order[start + i];
      w.zero = false;
      w.hash = ContentHash{};
      w.action = ChunkWork::kNothing;
      w.hint = r.hint ? r.hint(w.chunk) : ChunkHint::kRead;
      if (w.hint == ChunkHint::kUnchanged && !same_chunks) {
        w.hint = ChunkHint::kRead;
      }
      w.bytes = r.memory + uint64_t{w.chunk} * chunk_size;
    }
    ParallelFor(count, threads, [&](uint64_t i, unsigned) {
      ChunkWork& w = work[i];
      if (w.hint != ChunkHint::kRead) return;
      w.zero = AllZero(w.bytes, chunk_size);
      // A zero chunk is hashed only where it may be stored: in a diff.
      if (!w.zero || r.diff) {
        w.hash = HashContent(absl::MakeConstSpan(w.bytes, chunk_size));
      }
    });
    // In order: what each chunk becomes.
    std::vector<uint64_t> to_compress;
    for (uint64_t i = 0; i < count; ++i) {
      ChunkWork& w = work[i];
      const uint32_t c = w.chunk;
      if (w.hint == ChunkHint::kZero) {
        w.action = ChunkWork::kNothing;
      } else if (w.hint == ChunkHint::kUnchanged) {
        w.action = r.diff ? ChunkWork::kParent : ChunkWork::kCopySource;
      } else if (w.zero && !(r.diff && !r.source->Locate(c).zero())) {
        w.action = ChunkWork::kNothing;  // zero (and zero in any parent)
      } else if (r.diff && w.hash == r.source->ChunkContentHash(c)) {
        w.action = ChunkWork::kParent;
      } else if (auto it = by_content.find(HashKey{w.hash.low, w.hash.high});
                 it != by_content.end() &&
                 std::memcmp(r.memory + uint64_t{it->second} * chunk_size,
                             w.bytes, chunk_size) == 0) {
        w.action = ChunkWork::kSameAs;
        w.same_as = it->second;
      } else {
        // New content (a zero chunk of a diff whose parent is not zero
        // lands here too: it is stored as a zero frame).
        w.action = ChunkWork::kCompress;
        by_content.emplace(HashKey{w.hash.low, w.hash.high}, c);
        to_compress.push_back(i);
      }
    }
    ParallelFor(to_compress.size(), threads, [&](uint64_t k, unsigned t) {
      ChunkWork& w = work[to_compress[k]];
      w.stored = compressors[t].Compress(w.bytes, w.compressed);
    });
    if (appender.joinable()) appender.join();
    if (!appended.ok()) return appended;
    if (r.progress && start > 0) r.progress(start, chunks);
    if (threads == 1) {
      // The single-threaded writer: everything on the caller's thread.
      if (absl::Status s = append(work, count); !s.ok()) return s;
      continue;
    }
    std::vector<ChunkWork>* batch = &work;
    appender =
        std::thread([&, batch, count] { appended = append(*batch, count); });
  }
  if (appender.joinable()) appender.join();
  if (!appended.ok()) return appended;
  if (r.progress) r.progress(chunks, chunks);
  SetChunkTable(memory, table, kZeroEntry);
  // Record the working set as chunk indices (all of them, so that prefetch
  // also covers chunks held by a parent).
  for (uint32_t c : r.working_set) {
    if (c < chunks) manifest.add_working_set(c);
  }
  return Finish(**file, manifest, r.signing_key, frames.TakeDigests());
}

// Writes a compressed twin of each working-set chunk that becomes a raw
// frame (all but a parent's), in working-set order, one after another at
// the front of the data section, and lists them in `packed` (format 1.5);
// `twin_chunks` gets each twin's chunk, whose frame the caller fills in once
// the raw frames are written. A remote restore fetches these, about a fifth
// of the raw frames' bytes here, in one stretch; at the front, the stretch
// can come in the same request as the header, before the manifest says
// what it holds (doc/remote-store.md). A chunk the source stored
// compressed keeps its frame's bytes; the others are compressed now (an
// incompressible one's twin is its bytes again).
absl::Status WritePackedTwins(const SnapshotFile& source,
                              const std::vector<uint32_t>& working_set,
                              AtomicFile& file, int compression_level,
                              proto::PackedWorkingSet& packed,
                              std::vector<uint32_t>& twin_chunks) {
  const uint32_t chunk_size = source.chunk_size();
  const uint64_t chunks = source.chunk_count();
  Compressor compressor(chunk_size, compression_level);
  std::vector<uint8_t> chunk(chunk_size), compressed;
  std::vector<bool> done(chunks, false);
  for (uint32_t c : working_set) {
    if (c >= chunks || done[c]) continue;
    done[c] = true;
    const uint32_t old = source.ChunkFrame(c);
    if (old == kParentChunk) continue;
    std::string kept;
    absl::Span<const uint8_t> bytes;
    if (old != SnapshotFile::kZero && source.FrameSize(old) < chunk_size) {
      auto stored = source.ReadStored(old);
      if (!stored.ok()) return stored.status();
      kept = *std::move(stored);
      bytes = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(kept.data()),
                                  kept.size());
    } else {
      if (old == SnapshotFile::kZero) {
        std::fill(chunk.begin(), chunk.end(), 0);
      } else if (absl::Status s = source.ReadFrame(old, absl::MakeSpan(chunk));
                 !s.ok()) {
        return s;
      }
      // (An incompressible chunk's twin is its bytes again: the twins
      // stay one stretch, fetched in one request.)
      auto stored = compressor.Compress(chunk.data(), compressed);
      if (!stored.ok()) return stored.status();
      bytes = *stored;
    }
    twin_chunks.push_back(c);
    packed.add_offset(file.size() - kHeaderSize);
    packed.add_stored_size(bytes.size());
    packed.add_stored_hash(HashStored(bytes));
    if (absl::Status s = file.Append(bytes); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status RewriteWithWorkingSet(const SnapshotFile& source,
                                   const std::vector<uint32_t>& working_set,
                                   const std::vector<uint32_t>& written_pages,
                                   const SecretKey* signing_key) {
  if (source.is_signed() && signing_key == nullptr) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "snapshot \"%s\" is signed (by %s): recording its working set "
        "rewrites it, which needs the signing key",
        source.path(), KeyName(source.signer())));
  }
  proto::Manifest manifest = source.manifest();
  const uint64_t chunks = source.chunk_count();
  auto file = CreateWithHeaderSpace(source.path());
  if (!file.ok()) return file.status();
  manifest.clear_frames();
  manifest.clear_working_set();
  manifest.clear_working_set_written_pages();
  manifest.clear_packed_working_set();
  FrameWriter frames(**file, *manifest.mutable_frames(),
                     signing_key != nullptr);
  std::vector<uint32_t> table(chunks, SnapshotFile::kZero);
  std::vector<bool> in_working_set(chunks, false);
  for (uint32_t c : working_set) {
    if (c < chunks) in_working_set[c] = true;
  }
  // The packed twins first (see WritePackedTwins).
  proto::PackedWorkingSet packed;
  std::vector<uint32_t> twin_chunks;
  if (absl::Status s =
          WritePackedTwins(source, working_set, **file,
                           manifest.compression_level(), packed, twin_chunks);
      !s.ok()) {
    return s;
  }
  // Then the working set's chunks, each as its own raw frame (zero chunks
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
  for (uint32_t c : twin_chunks) packed.add_frame(table[c]);
  if (packed.frame_size() > 0) {
    *manifest.mutable_packed_working_set() = std::move(packed);
  }
  SetChunkTable(*manifest.mutable_memory(), table, SnapshotFile::kZero);
  for (uint32_t c : working_set) {
    if (c < chunks) manifest.add_working_set(c);
  }
  const uint64_t pages = chunks * (source.chunk_size() / 4096);
  for (uint32_t p : written_pages) {
    if (p < pages) manifest.add_working_set_written_pages(p);
  }
  return Finish(**file, manifest, signing_key, frames.TakeDigests());
}

}  // namespace thaw::snapshot
