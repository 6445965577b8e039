// Damaged snapshot files: every kind of damage is an error that names the
// file and what is wrong (DataLoss, or FailedPrecondition for a file this
// build must not run), never a crash and never a guest started on bad
// memory. Runs on the emulated backend: the checks happen before any backend
// is involved, and the lazy case only needs a guest to touch memory.
#include <signal.h>
#include <sys/resource.h>
#include <xxhash.h>
#include <zstd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/little_endian.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "snapshot/format.h"
#include "snapshot/manifest.pb.h"
#include "snapshot/snapshot_file.h"
#include "tests/snapshot_bytes.h"
#include "thaw/abi.h"
#include "thaw/snapshot.h"
#include "thaw/vm.h"

namespace thaw {
namespace {

using ::testing::HasSubstr;

using testing::ReadFile;
using testing::WriteFile;

bool IsRefusal(const absl::Status& status) {
  return status.code() == absl::StatusCode::kDataLoss ||
         status.code() == absl::StatusCode::kFailedPrecondition;
}

class SnapshotCorruptionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(std::filesystem::path(::testing::TempDir()) /
                           absl::StrCat("thaw_corruption_", getpid()));
    std::filesystem::create_directories(*dir_);
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
    ASSERT_TRUE((*vm)->Snapshot(*good_).ok());
    bytes_ = new std::string(ReadFile(*good_));
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
    delete good_;
    delete bytes_;
  }

  // The header's fields, from the intact file.
  static uint64_t HeaderField(uint64_t offset) {
    return testing::HeaderField(*bytes_, offset);
  }

  // Writes `bytes` as a snapshot file and expects every reader to refuse it,
  // naming the file. Returns the verify status for further checks.
  absl::Status ExpectRefused(const std::string& bytes,
                             const std::string& what) {
    const std::string path = *dir_ + "/bad.thaw";
    WriteFile(path, bytes);
    absl::Status verify = VerifySnapshot(path);
    EXPECT_TRUE(IsRefusal(verify)) << what << ": verify said " << verify;
    EXPECT_THAT(verify.message(), HasSubstr("bad.thaw")) << what;
    RestoreOptions options;
    options.backend = BackendKind::kEmulated;
    options.engine = RestoreEngine::kEager;
    auto vm = Vm::Restore(path, options);
    EXPECT_TRUE(IsRefusal(vm.status()))
        << what << ": restore said " << vm.status();
    return verify;
  }

  // A copy of the intact file at `path` with the working set of an echo
  // call recorded (raw frames and their packed twins); the echo's reply in
  // *reply.
  static void RecordWorkingSet(const std::string& path, std::string* reply) {
    std::filesystem::copy_file(
        *good_, path, std::filesystem::copy_options::overwrite_existing);
    RestoreOptions record;
    record.backend = BackendKind::kEmulated;
    record.engine = RestoreEngine::kLazy;
    record.record_working_set = true;
    auto vm = Vm::Restore(path, record);
    ASSERT_TRUE(vm.ok()) << vm.status();
    auto echo = (*vm)->Call("echo", "hello");
    ASSERT_TRUE(echo.ok()) << echo.status();
    *reply = *echo;
    ASSERT_TRUE((*vm)->WriteWorkingSet().ok());
  }

  // Rewrites the manifest with `edit` and fixes every checksum, so that the
  // reader's own checks of the manifest's content are what is tested.
  std::string WithManifest(const std::function<void(snapshot::proto::Manifest&,
                                                    std::string&)>& edit) {
    return testing::WithManifest(*bytes_, edit);
  }

  static std::string* dir_;
  static std::string* good_;
  static std::string* bytes_;
};

std::string* SnapshotCorruptionTest::dir_;
std::string* SnapshotCorruptionTest::good_;
std::string* SnapshotCorruptionTest::bytes_;

TEST_F(SnapshotCorruptionTest, TheIntactFileIsAccepted) {
  EXPECT_TRUE(VerifySnapshot(*good_).ok());
  auto info = InspectSnapshot(*good_);
  ASSERT_TRUE(info.ok());
  // Self-test of WithManifest: an unchanged manifest is still accepted.
  const std::string path = *dir_ + "/rewritten.thaw";
  WriteFile(path, WithManifest([](auto&, auto&) {}));
  EXPECT_TRUE(VerifySnapshot(path).ok());
}

TEST_F(SnapshotCorruptionTest, BitFlipsAcrossEverySectionAreAllCaught) {
  const uint64_t size = bytes_->size();
  const uint64_t manifest_offset =
      HeaderField(snapshot::kHeaderManifestOffsetOffset);
  // Every bit of the header, ~600 bytes of the data and ~600 of the
  // manifest, spread evenly, each with a different bit.
  std::vector<std::pair<uint64_t, int>> flips;
  for (uint64_t i = 0; i < snapshot::kHeaderSize; ++i) {
    for (int bit = 0; bit < 8; ++bit) flips.push_back({i, bit});
  }
  const uint64_t data_size = manifest_offset - snapshot::kHeaderSize;
  for (uint64_t i = 0; i < 600; ++i) {
    flips.push_back({snapshot::kHeaderSize + i * data_size / 600, int(i % 8)});
  }
  const uint64_t manifest_size = size - manifest_offset;
  for (uint64_t i = 0; i < 600 && i < manifest_size; ++i) {
    flips.push_back(
        {manifest_offset +
             i * manifest_size / std::min<uint64_t>(600, manifest_size),
         int(i % 8)});
  }
  int refused = 0;
  for (const auto& [offset, bit] : flips) {
    std::string bad = *bytes_;
    bad[offset] = static_cast<char>(bad[offset] ^ (1 << bit));
    absl::Status s =
        ExpectRefused(bad, absl::StrCat("bit ", bit, " of byte ", offset));
    refused += IsRefusal(s);
    if (HasFailure()) break;  // one report is enough
  }
  EXPECT_EQ(refused, static_cast<int>(flips.size()));
}

// A file whose working set was recorded holds raw, page-aligned frames with
// zero padding before them, which the prefetch engine maps straight from
// the file. Every flip is refused by verify (padding included), and no
// prefetching restore ever returns a result computed on a damaged byte:
// the restore is refused, or the first call fails with DataLoss, or (a flip
// in padding, which holds no guest data) the call answers correctly.
TEST_F(SnapshotCorruptionTest, BitFlipsInARawWorkingSetNeverGiveAWrongAnswer) {
  const std::string ws = *dir_ + "/ws.thaw";
  std::string expected;
  ASSERT_NO_FATAL_FAILURE(RecordWorkingSet(ws, &expected));
  const std::string intact = ReadFile(ws);
  auto file = snapshot::SnapshotFile::Open(ws);
  ASSERT_TRUE(file.ok());
  const uint64_t data_end = (*file)->data_offset() + (*file)->data_size();
  int flips = 0, refused_by_restore = 0, failed_calls = 0;
  for (uint64_t offset = snapshot::kHeaderSize; offset < data_end;
       offset += 997) {
    std::string bad = intact;
    bad[offset] = static_cast<char>(bad[offset] ^ (1 << (offset % 8)));
    // A new file each time: mapped frames are checked once per file
    // version (inode, size, times), and rewriting one file in place within
    // one timestamp tick would look like the version already checked.
    const std::string path = absl::StrCat(*dir_, "/ws-bad-", offset, ".thaw");
    WriteFile(path, bad);
    ++flips;
    absl::Status verify = VerifySnapshot(path);
    EXPECT_TRUE(IsRefusal(verify)) << "byte " << offset << ": " << verify;
    RestoreOptions options;
    options.backend = BackendKind::kEmulated;
    options.engine = RestoreEngine::kLazyPrefetch;
    auto vm = Vm::Restore(path, options);
    if (!vm.ok()) {
      EXPECT_TRUE(IsRefusal(vm.status())) << vm.status();
      ++refused_by_restore;
      std::filesystem::remove(path);
      continue;
    }
    auto reply = (*vm)->Call("echo", "hello");
    if (reply.ok()) {
      EXPECT_EQ(*reply, expected) << "byte " << offset;
    } else {
      EXPECT_EQ(reply.status().code(), absl::StatusCode::kDataLoss)
          << "byte " << offset << ": " << reply.status();
      ++failed_calls;
    }
    std::filesystem::remove(path);
    if (HasFailure()) break;
  }
  // Where the damage is caught (at restore, or in the first call) depends on
  // whether the background check finishes before the restore returns; that
  // it is caught does not.
  EXPECT_GT(refused_by_restore + failed_calls, flips / 2)
      << flips << " flips: " << refused_by_restore << " refused by restore, "
      << failed_calls << " failed calls";
  EXPECT_GT(flips, 10);
}

TEST_F(SnapshotCorruptionTest, PackedTwinsAreCheckedLikeFrames) {
  const std::string ws = *dir_ + "/packed.thaw";
  std::string reply;
  ASSERT_NO_FATAL_FAILURE(RecordWorkingSet(ws, &reply));
  ASSERT_TRUE(VerifySnapshot(ws).ok());
  const std::string intact = ReadFile(ws);
  auto file = snapshot::SnapshotFile::Open(ws);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->format_minor(), snapshot::kPackedWorkingSetMinorVersion);
  const auto& packed = (*file)->manifest().packed_working_set();
  ASSERT_GT(packed.frame_size(), 0);
  // Every twin stands for a raw frame and decodes to it.
  std::vector<uint8_t> chunk((*file)->chunk_size());
  for (int i = 0; i < packed.frame_size(); ++i) {
    const uint32_t f = packed.frame(i);
    EXPECT_EQ((*file)->FrameSize(f), (*file)->chunk_size());
    const auto* twin = (*file)->Packed(f);
    ASSERT_NE(twin, nullptr);
    const auto* at =
        reinterpret_cast<const uint8_t*>(intact.data()) + twin->offset;
    EXPECT_TRUE(
        (*file)->DecodePacked(f, {at, twin->size}, absl::MakeSpan(chunk)).ok());
  }

  // A damaged twin: verify names it (a local restore maps the raw frames
  // and never reads twins; a remote one refuses it, tests/remote).
  std::string bad = intact;
  const uint64_t twin_at = (*file)->Packed(packed.frame(0))->offset;
  bad[twin_at] = static_cast<char>(bad[twin_at] ^ 0x10);
  WriteFile(*dir_ + "/bad.thaw", bad);
  absl::Status verify = VerifySnapshot(*dir_ + "/bad.thaw");
  EXPECT_EQ(verify.code(), absl::StatusCode::kDataLoss) << verify;
  EXPECT_THAT(verify.message(), HasSubstr("packed twin of frame"));

  // A manifest whose twins are not what they must be is refused on open.
  auto refused =
      [&](const std::function<void(snapshot::proto::Manifest&)>& edit) {
        WriteFile(
            *dir_ + "/bad.thaw",
            testing::WithManifest(intact, [&](snapshot::proto::Manifest& m,
                                              std::string&) { edit(m); }));
        return VerifySnapshot(*dir_ + "/bad.thaw");
      };
  // A twin must stand for a raw frame of this file: not one past the end,
  // and not a compressed one (when the file has any: the whole small test
  // guest may be its working set).
  const uint32_t frames = (*file)->frame_count();
  absl::Status s = refused([&](snapshot::proto::Manifest& m) {
    m.mutable_packed_working_set()->set_frame(0, frames);
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("not a raw frame"));
  for (uint32_t f = 0; f < frames; ++f) {
    if ((*file)->FrameSize(f) == (*file)->chunk_size()) continue;
    s = refused([&](snapshot::proto::Manifest& m) {
      m.mutable_packed_working_set()->set_frame(0, f);
    });
    EXPECT_THAT(s.message(), HasSubstr("not a raw frame"));
    break;
  }
  s = refused([](snapshot::proto::Manifest& m) {
    m.mutable_packed_working_set()->set_offset(0, uint64_t{1} << 62);
  });
  EXPECT_THAT(s.message(), HasSubstr("outside the data"));
  s = refused([](snapshot::proto::Manifest& m) {
    m.mutable_packed_working_set()->add_frame(0);
  });
  EXPECT_THAT(s.message(), HasSubstr("columns"));
  s = refused([&](snapshot::proto::Manifest& m) {
    auto& p = *m.mutable_packed_working_set();
    p.add_frame(p.frame(0));  // the same frame again, in every column
    p.add_offset(p.offset(0));
    p.add_stored_size(p.stored_size(0));
    p.add_stored_hash(p.stored_hash(0));
  });
  EXPECT_THAT(s.message(), HasSubstr("twin already"));
}

TEST_F(SnapshotCorruptionTest, TruncationsAnywhereAreCaught) {
  const uint64_t size = bytes_->size();
  std::vector<uint64_t> lengths;
  for (uint64_t n = 0; n <= snapshot::kHeaderSize + 8; ++n)
    lengths.push_back(n);
  for (uint64_t i = 1; i < 300; ++i) lengths.push_back(i * size / 300);
  lengths.push_back(size - 1);
  for (uint64_t n : lengths) {
    (void)ExpectRefused(bytes_->substr(0, n), absl::StrCat("truncated to ", n));
    if (HasFailure()) break;
  }
  // Bytes appended after the manifest are damage too.
  (void)ExpectRefused(*bytes_ + "x", "one byte appended");
}

TEST_F(SnapshotCorruptionTest, WrongMagicIsNotASnapshot) {
  std::string bad = *bytes_;
  bad[0] = 'X';
  absl::Status s = ExpectRefused(bad, "magic");
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("magic"));
  s = ExpectRefused(
      "this is not a snapshot, just text that is long enough "
      "to hold a header's worth of bytes and more",
      "text file");
  EXPECT_THAT(s.message(), HasSubstr("magic"));
}

TEST_F(SnapshotCorruptionTest, OtherFormatVersionsAreFailedPrecondition) {
  for (auto [offset, value] :
       {std::pair{snapshot::kHeaderMajorOffset, snapshot::kMajorVersion + 1},
        std::pair{snapshot::kHeaderMinorOffset, snapshot::kMinorVersion + 1},
        std::pair{snapshot::kHeaderArchOffset, 2}}) {
    std::string bad = *bytes_;
    auto* h = reinterpret_cast<uint8_t*>(bad.data());
    StoreLe(h + offset, value, offset == snapshot::kHeaderArchOffset ? 4 : 2);
    StoreLe(h + snapshot::kHeaderHashOffset,
            XXH3_64bits(h, snapshot::kHeaderHashOffset), 8);
    absl::Status s = ExpectRefused(bad, absl::StrCat("field at ", offset));
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  }
}

TEST_F(SnapshotCorruptionTest, AFrameOutsideTheFileIsCaughtBeforeAnyRead) {
  absl::Status s = ExpectRefused(
      WithManifest([](snapshot::proto::Manifest& m, std::string&) {
        m.mutable_frames()->set_offset(0, uint64_t{1} << 62);
      }),
      "frame offset");
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("outside the data section"));
  s = ExpectRefused(
      WithManifest([](snapshot::proto::Manifest& m, std::string&) {
        m.mutable_memory()->set_chunk_frame(0, 1u << 30);
      }),
      "chunk index");
  EXPECT_THAT(s.message(), HasSubstr("refers to frame"));
  s = ExpectRefused(
      WithManifest([](snapshot::proto::Manifest& m, std::string&) {
        m.add_working_set(1u << 30);
      }),
      "working set");
  EXPECT_THAT(s.message(), HasSubstr("working set"));
  s = ExpectRefused(
      WithManifest([](snapshot::proto::Manifest& m, std::string&) {
        m.mutable_memory()->set_size(uint64_t{1} << 50);
      }),
      "memory size");
  EXPECT_THAT(s.message(), HasSubstr("memory size"));
  s = ExpectRefused(
      WithManifest([](snapshot::proto::Manifest& m, std::string&) {
        m.mutable_frames()->add_offset(0);
      }),
      "frame columns");
  EXPECT_THAT(s.message(), HasSubstr("columns"));
}

TEST_F(SnapshotCorruptionTest, AChunkThatDecompressesToTheWrongSizeIsCaught) {
  absl::Status s = ExpectRefused(
      WithManifest([](snapshot::proto::Manifest& m, std::string& data) {
        // A valid zstd frame of half a chunk, with correct stored checksums.
        std::string half(m.memory().chunk_size() / 2, 'a');
        std::string frame(ZSTD_compressBound(half.size()), '\0');
        frame.resize(ZSTD_compress(frame.data(), frame.size(), half.data(),
                                   half.size(), 1));
        m.mutable_frames()->set_offset(0, data.size());
        m.mutable_frames()->set_stored_size(0, frame.size());
        m.mutable_frames()->set_stored_hash(
            0, XXH3_64bits(frame.data(), frame.size()));
        data += frame;
      }),
      "short frame");
  EXPECT_THAT(s.message(), HasSubstr("decompresses to"));
  s = ExpectRefused(
      WithManifest([](snapshot::proto::Manifest& m, std::string&) {
        m.mutable_frames()->set_content_hash_low(
            0, m.frames().content_hash_low(0) ^ 1);
      }),
      "content hash");
  EXPECT_THAT(s.message(), HasSubstr("content checksum"));
}

TEST_F(SnapshotCorruptionTest, AStateNoBackendCanRunIsFailedPrecondition) {
  const std::string path = *dir_ + "/state.thaw";
  WriteFile(
      path, WithManifest([](snapshot::proto::Manifest& m, std::string&) {
        m.mutable_vcpu()->set_cr4(m.vcpu().cr4() | (1u << 18));  // OSXSAVE
      }));
  RestoreOptions options;
  options.backend = BackendKind::kEmulated;
  auto vm = Vm::Restore(path, options);
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(vm.status().message(), HasSubstr("CR4 bit 18"));
  WriteFile(path, WithManifest([](snapshot::proto::Manifest& m, std::string&) {
              m.mutable_vcpu()->set_cr0(0);
            }));
  vm = Vm::Restore(path, options);
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(vm.status().message(), HasSubstr("long mode"));
}

// FS and GS selectors whose GDT descriptors the CPU could not read when it
// loads them: a GDT the page tables do not map, a descriptor past the GDT's
// limit, and a page table pointing outside guest memory. Each is refused
// with an error naming the register, on every engine, and the process goes
// on (the emulator's own check faults outside a run, which crashed it).
TEST_F(SnapshotCorruptionTest, ASegmentTheCpuCannotLoadIsRefused) {
  const std::string path = *dir_ + "/segment.thaw";
  struct Case {
    const char* what;
    std::function<void(snapshot::proto::Manifest&)> edit;
    const char* message;
  };
  const Case cases[] = {
      {"GDT not mapped",
       [](snapshot::proto::Manifest& m) {
         m.mutable_vcpu()->mutable_gdt()->set_base(0x7F0000000000ull);
       },
       "FS selector"},
      {"GS past the limit",
       [](snapshot::proto::Manifest& m) {
         m.mutable_vcpu()->mutable_gs()->set_selector(0x7F8);
       },
       "GS selector 0x7f8"},
      {"page table outside memory",
       [](snapshot::proto::Manifest& m) {
         m.mutable_vcpu()->set_cr3(0x7FFFF000ull);
       },
       "FS selector"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    WriteFile(path, WithManifest([&](snapshot::proto::Manifest& m,
                                     std::string&) { c.edit(m); }));
    for (RestoreEngine engine : kRestoreEngines) {
      RestoreOptions options;
      options.backend = BackendKind::kEmulated;
      options.engine = engine;
      auto vm = Vm::Restore(path, options);
      ASSERT_FALSE(vm.ok());
      EXPECT_EQ(vm.status().code(), absl::StatusCode::kFailedPrecondition)
          << vm.status();
      EXPECT_THAT(vm.status().message(), HasSubstr(c.message));
    }
  }
}

// A damaged chunk that only a lazy restore reaches is tested per engine and
// backend in tests/snapshot_test.cc (SnapshotEngineTest.
// ADamagedChunkNeverYieldsAResult) and per engine alone in
// tests/snapshot/memory_source_test.cc.

// A disk that fills up mid-write (simulated with RLIMIT_FSIZE, which makes
// write() fail with EFBIG past the limit): the snapshot fails naming the
// file, the snapshot already at that path is untouched, and no temporary
// file is left behind.
TEST_F(SnapshotCorruptionTest, AFullDiskLosesNothing) {
  const std::string dir = *dir_ + "/full";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/fn.thaw";
  std::filesystem::copy_file(*good_, path);

  VmConfig config;
  config.backend = BackendKind::kEmulated;
  config.memory_size = 8ull << 20;
  auto vm = Vm::Create(config);
  ASSERT_TRUE(vm.ok());
  ASSERT_TRUE((*vm)->LoadGuest(THAW_TEST_GUEST).ok());
  ASSERT_TRUE((*vm)->Boot().ok());
  (*vm)->Call("count", "").IgnoreError();  // so the new snapshot differs

  struct sigaction ignore {
  }, previous{};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGXFSZ, &ignore, &previous), 0);
  rlimit old_limit{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  rlimit small = old_limit;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  SnapshotOptions options;
  options.compression_level = 1;
  absl::Status status = (*vm)->Snapshot(path, options);
  setrlimit(RLIMIT_FSIZE, &old_limit);
  sigaction(SIGXFSZ, &previous, nullptr);

  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("fn.thaw"));
  EXPECT_THAT(status.message(), HasSubstr("File too large"));
  EXPECT_EQ(ReadFile(path), *bytes_);  // the old snapshot, intact
  EXPECT_TRUE(VerifySnapshot(path).ok());
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 1) << "a temporary file was left behind";
  // The Vm itself is fine: a snapshot with room to write succeeds.
  EXPECT_TRUE((*vm)->Snapshot(path, options).ok());
  EXPECT_NE(ReadFile(path), *bytes_);
  EXPECT_TRUE(VerifySnapshot(path).ok());
}

}  // namespace
}  // namespace thaw
