// The on-disk constants of a thaw snapshot file. The prose specification,
// byte by byte, is doc/snapshot-format.md; the two are kept in step and a
// change to either is a change to the other.
//
//   [0, 64)                      header (FileHeader below, little-endian)
//   [data_offset, +data_size)    memory frames: each an independent zstd
//                                frame or a raw chunk, working set first
//   [manifest_offset, +size)     the manifest (snapshot/manifest.proto)
//   [end of manifest, +64)       signed files only (1.3): the ed25519
//                                signature (snapshot/signature.h)
//
// Compatibility: a reader opens files of its own major version and any minor
// version up to its own; anything else is FailedPrecondition.
#ifndef THAW_SNAPSHOT_FORMAT_H_
#define THAW_SNAPSHOT_FORMAT_H_

#include <cstdint>

namespace thaw::snapshot {

inline constexpr char kMagic[8] = {'T', 'H', 'A', 'W', 'S', 'N', 'A', 'P'};
inline constexpr uint16_t kMajorVersion = 1;
// The newest minor version this build reads. It writes each file with the
// lowest minor version that describes it: 1.2 unsigned, 1.3 signed, 1.4 a
// Linux VM's whole machine (signed or not), 1.5 a packed working set (any
// of the others), so that readers of 1.2 still open every unsigned file of
// a function guest or Linux program, no older reader takes a Linux VM for
// something else, and none reports a packed working set as stray bytes.
inline constexpr uint16_t kMinorVersion = 5;
inline constexpr uint16_t kUnsignedMinorVersion = 2;
inline constexpr uint16_t kSignedMinorVersion = 3;
inline constexpr uint16_t kLinuxVmMinorVersion = 4;
inline constexpr uint16_t kPackedWorkingSetMinorVersion = 5;
inline constexpr uint32_t kArchX86_64 = 1;

inline constexpr uint64_t kHeaderSize = 64;
// Field offsets inside the header.
inline constexpr uint64_t kHeaderMagicOffset = 0;
inline constexpr uint64_t kHeaderMajorOffset = 8;
inline constexpr uint64_t kHeaderMinorOffset = 10;
inline constexpr uint64_t kHeaderArchOffset = 12;
inline constexpr uint64_t kHeaderDataOffsetOffset = 16;
inline constexpr uint64_t kHeaderDataSizeOffset = 24;
inline constexpr uint64_t kHeaderManifestOffsetOffset = 32;
inline constexpr uint64_t kHeaderManifestSizeOffset = 40;
inline constexpr uint64_t kHeaderManifestHashOffset = 48;
inline constexpr uint64_t kHeaderHashOffset = 56;  // XXH3-64 of bytes [0, 56)

// A reader refuses manifests larger than this before parsing them.
inline constexpr uint64_t kMaxManifestSize = 256ull << 20;

// Chunk sizes: a power of two in [kMinChunkSize, kMaxChunkSize].
inline constexpr uint32_t kDefaultChunkSize = 64u << 10;
inline constexpr uint32_t kMinChunkSize = 4u << 10;
inline constexpr uint32_t kMaxChunkSize = 4u << 20;

// A Manifest.memory.chunk_frame value that is not a frame index: in a diff
// snapshot, the chunk is the parent's.
inline constexpr uint32_t kParentChunk = 0xFFFFFFFEu;

// Working-set frames are stored raw at file offsets that are multiples of
// this, so that a restore can map them (doc/snapshot-format.md). Any gap
// before them is zero bytes.
inline constexpr uint64_t kRawFrameAlignment = 4096;

// Diff-snapshot chains longer than this are refused (they are also how a
// cycle of parents would show).
inline constexpr int kMaxChainDepth = 64;

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_FORMAT_H_
