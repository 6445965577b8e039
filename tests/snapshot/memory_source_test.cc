// The restore engines on their own, as MemorySources over a snapshot file
// written straight from a buffer: no Vm, no backend, no guest. This binary
// links the snapshot and base layers only, so it also shows that the
// engines know nothing of the monitor. One body per behaviour, each run for
// every engine (a test parameter, so one engine's failure hides no other).
#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "snapshot/anonymous_memory.h"
#include "snapshot/copy_on_write_memory.h"
#include "snapshot/lazy_memory.h"
#include "snapshot/shared_base.h"
#include "snapshot/snapshot_file.h"
#include "snapshot/vcpu_codec.h"
#include "snapshot/writer.h"
#include "thaw/abi.h"

namespace thaw::snapshot {
namespace {

constexpr uint64_t kMemory = 4ull << 20;
constexpr uint32_t kChunk = 64u << 10;
constexpr uint64_t kChunks = kMemory / kChunk;
constexpr uint64_t kPage = 4096;

enum class Engine { kEager, kLazy, kSharedBase };

std::string EngineName(const ::testing::TestParamInfo<Engine>& info) {
  switch (info.param) {
    case Engine::kEager:
      return "Eager";
    case Engine::kLazy:
      return "Lazy";
    case Engine::kSharedBase:
      return "SharedBase";
  }
  return "Unknown";
}

// An image with every kind of chunk: zero chunks (every 4th), a repeated
// chunk (every 5th holds the same bytes), text-like and random chunks.
std::vector<uint8_t> MakeImage() {
  std::vector<uint8_t> image(kMemory, 0);
  std::mt19937_64 random(42);
  for (uint64_t c = 0; c < kChunks; ++c) {
    uint8_t* chunk = image.data() + c * kChunk;
    if (c % 4 == 0) continue;
    if (c % 5 == 0) {
      std::memset(chunk, 0x5A, kChunk);
      continue;
    }
    for (uint64_t i = 0; i < kChunk; i += 8) {
      const uint64_t word = c % 2 ? random() : (c * 0x0101010101010101ull + i);
      std::memcpy(chunk + i, &word, 8);
    }
  }
  return image;
}

// Writes `bytes` as a snapshot at `path` with the writer alone.
absl::Status WriteImage(const std::string& path,
                        const std::vector<uint8_t>& bytes) {
  WriteRequest request;
  request.path = path;
  request.manifest.mutable_config()->set_memory_size(kMemory);
  request.manifest.mutable_abi()->set_abi_version(THAW_ABI_VERSION);
  *request.manifest.mutable_vcpu() = EncodeVcpuState(VcpuState{});
  request.memory = bytes.data();
  request.memory_size = kMemory;
  request.chunk_size = kChunk;
  return WriteSnapshot(request);
}

class MemorySourceTest : public ::testing::TestWithParam<Engine> {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = absl::StrCat("thaw_ms_", getpid(), "_", info->name());
    for (char& c : name) {
      if (c == '/') c = '_';
    }
    dir_ = std::filesystem::path(::testing::TempDir()) / name;
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    image_bytes_ = MakeImage();
    path_ = (dir_ / "image.thaw").string();
    ASSERT_TRUE(WriteImage(path_, image_bytes_).ok());
    auto image = SnapshotImage::Open(path_);
    ASSERT_TRUE(image.ok()) << image.status();
    image_ = *std::move(image);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<MemorySource> Restore() {
    absl::StatusOr<std::unique_ptr<MemorySource>> memory;
    switch (GetParam()) {
      case Engine::kEager:
        memory = AnonymousMemory::RestoreEagerly(*image_);
        break;
      case Engine::kLazy:
        memory = LazyMemory::Start(image_, {});
        break;
      case Engine::kSharedBase: {
        RestoreCounters counters;
        auto base = SharedBase::Build(*image_, counters);
        EXPECT_TRUE(base.ok()) << base.status();
        if (!base.ok()) return nullptr;
        memory = CopyOnWriteMemory::Map((*base)->fd(), (*base)->size(), *base);
        break;
      }
    }
    EXPECT_TRUE(memory.ok()) << memory.status();
    return memory.ok() ? *std::move(memory) : nullptr;
  }

  bool SameAsImage(const MemorySource& memory) const {
    return std::memcmp(memory.base(), image_bytes_.data(), kMemory) == 0;
  }

  std::filesystem::path dir_;
  std::string path_;
  std::vector<uint8_t> image_bytes_;
  std::shared_ptr<const SnapshotImage> image_;
};

TEST_P(MemorySourceTest, RestoredMemoryHoldsTheImagesBytes) {
  auto memory = Restore();
  ASSERT_NE(memory, nullptr);
  EXPECT_EQ(memory->size(), kMemory);
  EXPECT_TRUE(SameAsImage(*memory));
  EXPECT_TRUE(memory->error().ok());
  EXPECT_TRUE(memory->WaitForVerification().ok());
  memory->Stop();
}

TEST_P(MemorySourceTest, LazyEnginesReadOnlyTheChunksTouched) {
  auto memory = Restore();
  ASSERT_NE(memory, nullptr);
  const RestoreCounters& counters = memory->counters();
  if (GetParam() != Engine::kLazy) {
    // The whole image is in before anything runs: every stored frame read
    // (for the shared base, by its build, counted where it was built).
    if (GetParam() == Engine::kEager) {
      EXPECT_GT(counters.chunks_read.load(), 0u);
    }
    EXPECT_EQ(counters.faults.load(), 0u);
    return;
  }
  EXPECT_EQ(counters.chunks_read.load(), 0u);
  // Chunk 3 holds data; chunk 8 is zero (not read, zero-filled).
  EXPECT_EQ(memory->base()[3 * kChunk + 17], image_bytes_[3 * kChunk + 17]);
  EXPECT_EQ(memory->base()[8 * kChunk + 5], 0);
  EXPECT_EQ(counters.chunks_read.load(), 1u);
  EXPECT_EQ(counters.zero_chunks.load(), 1u);
  EXPECT_EQ(counters.faults.load(), 2u);
}

TEST_P(MemorySourceTest, ChunkHintsSayWhatTheWriterMaySkip) {
  auto memory = Restore();
  ASSERT_NE(memory, nullptr);
  memory->base()[3 * kChunk] ^= 1;  // a write to chunk 3
  auto hints = memory->ChunkHints(kChunk);
  ASSERT_TRUE(hints.ok()) << hints.status();
  EXPECT_EQ((*hints)(3), ChunkHint::kRead);
  switch (GetParam()) {
    case Engine::kEager:
      // Fresh anonymous memory: what the engine never wrote is zero.
      EXPECT_EQ((*hints)(4), ChunkHint::kZero);
      EXPECT_EQ((*hints)(7), ChunkHint::kRead);
      break;
    case Engine::kLazy:
    case Engine::kSharedBase:
      // Never installed, or never written: still the image's.
      EXPECT_EQ((*hints)(4), ChunkHint::kUnchanged);
      EXPECT_EQ((*hints)(7), ChunkHint::kUnchanged);
      break;
  }
  memory->Stop();
}

TEST_P(MemorySourceTest, OnlyTheCopyOnWriteSourceRevertsChangedPages) {
  auto memory = Restore();
  ASSERT_NE(memory, nullptr);
  if (GetParam() != Engine::kSharedBase) {
    EXPECT_FALSE(memory->can_revert());
    EXPECT_EQ(memory->ChangedPages(0, kMemory).status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(memory->Revert({}).code(), absl::StatusCode::kFailedPrecondition);
    return;
  }
  ASSERT_TRUE(memory->can_revert());
  // Writes to pages 1, 2 and 100 (a zero chunk's page among them).
  memory->base()[1 * kPage + 9] = 0xEE;
  memory->base()[2 * kPage] = 0xEE;
  memory->base()[100 * kPage + 4095] = 0xEE;
  auto changed = memory->ChangedPages(0, kMemory);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_EQ(*changed, (PageRuns{{1, 3}, {100, 101}}));
  // A window of memory reports page numbers from the start of memory.
  auto window = memory->ChangedPages(64 * kPage, 64 * kPage);
  ASSERT_TRUE(window.ok());
  EXPECT_EQ(*window, (PageRuns{{100, 101}}));
  EXPECT_FALSE(memory->ChangedPages(1, kPage).ok());
  ASSERT_TRUE(memory->Revert(*changed).ok());
  EXPECT_TRUE(SameAsImage(*memory));
  // The pages put back stay mapped (their private copies now hold the
  // image's bytes, so the next touch takes no fault): the page map still
  // lists them, a superset that Revert handles again.
  auto after = memory->ChangedPages(0, kMemory);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, *changed);
  memory->base()[1 * kPage + 9] = 0x11;
  ASSERT_TRUE(memory->Revert(*after).ok());
  EXPECT_TRUE(SameAsImage(*memory));
  EXPECT_FALSE(memory->Revert({{0, kMemory / kPage + 1}}).ok());
}

TEST_P(MemorySourceTest, ADamagedFrameIsAnErrorNeverGoodBytes) {
  // Flip a byte inside the frame of chunk 3.
  const SnapshotFile& file = image_->top();
  const uint32_t frame = file.ChunkFrame(3);
  ASSERT_NE(frame, SnapshotFile::kZero);
  const uint64_t offset = file.FrameOffset(frame) + file.FrameSize(frame) / 2;
  image_.reset();
  int fd = open(path_.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t byte = 0;
  ASSERT_EQ(pread(fd, &byte, 1, offset), 1);
  byte ^= 0x40;
  ASSERT_EQ(pwrite(fd, &byte, 1, offset), 1);
  close(fd);
  auto reopened = SnapshotImage::Open(path_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();  // the manifest is intact
  image_ = *std::move(reopened);

  if (GetParam() != Engine::kLazy) {
    // The eager engines read everything up front and refuse the image.
    absl::StatusOr<std::unique_ptr<MemorySource>> memory;
    if (GetParam() == Engine::kEager) {
      memory = AnonymousMemory::RestoreEagerly(*image_);
    } else {
      RestoreCounters counters;
      auto base = SharedBase::Build(*image_, counters);
      ASSERT_FALSE(base.ok());
      EXPECT_EQ(base.status().code(), absl::StatusCode::kDataLoss);
      return;
    }
    ASSERT_FALSE(memory.ok());
    EXPECT_EQ(memory.status().code(), absl::StatusCode::kDataLoss);
    return;
  }
  auto memory = Restore();
  ASSERT_NE(memory, nullptr);
  std::atomic<int> called{0};
  memory->SetErrorCallback([&called] { ++called; });
  EXPECT_TRUE(memory->error().ok());
  // Touching the chunk does not hang; the bytes served are zeros, and the
  // source reports the damage naming the file.
  EXPECT_EQ(memory->base()[3 * kChunk], 0);
  EXPECT_EQ(memory->error().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(memory->error().message().find(path_), std::string::npos)
      << memory->error();
  EXPECT_EQ(memory->WaitForVerification().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(called.load(), 1);
  memory->Stop();
  EXPECT_EQ(memory->error().code(), absl::StatusCode::kDataLoss);
}

TEST_P(MemorySourceTest, ReadsUseIoUringWhereTheHostHasIt) {
  // What the library promises on any host: where io_uring can be set up,
  // reads go through it; where it cannot (a seccomp filter,
  // kernel.io_uring_disabled), every read is a pread and counted as such.
  io_uring ring;
  const bool have_uring = io_uring_queue_init(4, &ring, 0) == 0;
  if (have_uring) io_uring_queue_exit(&ring);
  auto memory = Restore();
  ASSERT_NE(memory, nullptr);
  EXPECT_TRUE(SameAsImage(*memory));
  const RestoreCounters& counters = memory->counters();
  if (GetParam() == Engine::kSharedBase) {
    return;  // the build's reads are counted by whoever built the base
  }
  EXPECT_GT(counters.chunks_read.load(), 0u);
  if (have_uring) {
    EXPECT_EQ(counters.reads_without_io_uring.load(), 0u);
  } else {
    EXPECT_GT(counters.reads_without_io_uring.load(), 0u);
  }
  memory->Stop();
}

INSTANTIATE_TEST_SUITE_P(Engines, MemorySourceTest,
                         ::testing::Values(Engine::kEager, Engine::kLazy,
                                           Engine::kSharedBase),
                         EngineName);

TEST(LazyMemoryTest, RecordsTheWorkingSetInFirstTouchOrder) {
  const auto dir = std::filesystem::path(::testing::TempDir()) /
                   absl::StrCat("thaw_ms_record_", getpid());
  std::filesystem::create_directories(dir);
  std::vector<uint8_t> bytes = MakeImage();
  const std::string path = (dir / "image.thaw").string();
  ASSERT_TRUE(WriteImage(path, bytes).ok());
  auto image = SnapshotImage::Open(path);
  ASSERT_TRUE(image.ok());
  LazyMemory::Options options;
  options.record = true;
  auto memory = LazyMemory::Start(*image, options);
  ASSERT_TRUE(memory.ok()) << memory.status();
  volatile uint8_t sink = 0;
  for (uint64_t c : {9, 2, 13, 2}) sink = sink + (*memory)->base()[c * kChunk];
  (void)sink;
  EXPECT_EQ((*memory)->StopRecording(), (std::vector<uint32_t>{9, 2, 13}));
  (*memory)->Stop();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace thaw::snapshot
