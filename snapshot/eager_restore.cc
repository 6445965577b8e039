#include "snapshot/eager_restore.h"

#include <algorithm>
#include <mutex>
#include <thread>
#include <vector>

#include "base/parallel_for.h"
#include "snapshot/uring_reader.h"

namespace thaw::snapshot {
namespace {

constexpr size_t kBatch = 32;  // frames per io_uring submission
constexpr unsigned kMaxThreads = 4;

// Reads and decodes chunks[begin, end) into memory.
absl::Status RestoreRange(const SnapshotImage& image, uint8_t* memory,
                          const std::vector<uint32_t>& chunks, size_t begin,
                          size_t end, RestoreCounters& counters) {
  const uint32_t chunk_size = image.chunk_size();
  UringReader reader(kBatch, &counters.reads_without_io_uring);
  std::vector<uint8_t> buffer(kBatch * size_t{chunk_size});
  std::vector<FileRead> reads;
  std::vector<uint32_t> frames;
  for (size_t first = begin; first < end; first += kBatch) {
    const size_t count = std::min(kBatch, end - first);
    // Reads in a batch go to one file at a time so errors can name it.
    size_t i = 0;
    while (i < count) {
      const uint32_t file = image.Locate(chunks[first + i]).file;
      const SnapshotFile& f = *image.files()[file];
      reads.clear();
      frames.clear();
      size_t j = i;
      for (; j < count && image.Locate(chunks[first + j]).file == file; ++j) {
        const uint32_t frame = image.Locate(chunks[first + j]).frame;
        reads.push_back({f.fd(), f.FrameOffset(frame), f.FrameSize(frame),
                         buffer.data() + j * size_t{chunk_size}});
        frames.push_back(frame);
      }
      // A remote file's batch comes in while the other threads decode.
      if (absl::Status s = f.Fetch(frames); !s.ok()) return s;
      if (absl::Status s = reader.ReadAll(reads, f.path()); !s.ok()) return s;
      for (size_t k = i; k < j; ++k) {
        const uint64_t c = chunks[first + k];
        const uint32_t frame = image.Locate(c).frame;
        absl::Status s = f.DecodeFrame(
            frame,
            absl::MakeConstSpan(buffer.data() + k * size_t{chunk_size},
                                f.FrameSize(frame)),
            absl::MakeSpan(memory + c * chunk_size, chunk_size));
        if (!s.ok()) return s;
        counters.bytes_read += f.FrameSize(frame);
      }
      counters.chunks_read += j - i;
      i = j;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RestoreEagerly(const SnapshotImage& image, uint8_t* memory,
                            RestoreCounters& counters) {
  std::vector<uint32_t> chunks;
  for (uint64_t c = 0; c < image.chunk_count(); ++c) {
    if (!image.Locate(c).zero()) chunks.push_back(c);
  }
  const unsigned threads = std::clamp<unsigned>(
      std::min<size_t>(UsableCores(), (chunks.size() + kBatch - 1) / kBatch), 1,
      kMaxThreads);
  std::vector<absl::Status> results(threads);
  std::vector<std::thread> workers;
  const size_t per = (chunks.size() + threads - 1) / threads;
  for (unsigned t = 0; t < threads; ++t) {
    const size_t begin = std::min(chunks.size(), t * per);
    const size_t end = std::min(chunks.size(), begin + per);
    auto work = [&, t, begin, end] {
      results[t] = RestoreRange(image, memory, chunks, begin, end, counters);
    };
    if (t + 1 == threads) {
      work();  // the calling thread takes the last share
    } else {
      workers.emplace_back(work);
    }
  }
  for (std::thread& w : workers) w.join();
  for (const absl::Status& s : results) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace thaw::snapshot
