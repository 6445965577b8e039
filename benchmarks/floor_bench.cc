// The machine's floor, measured in the same run as everything else: memcpy
// bandwidth, a raw userfaultfd fault served from memory (COPY and ZEROPAGE),
// an io_uring 64 KiB read; and thaw's lazy fault service per page, to
// compare with the raw fault.
#include <fcntl.h>
#include <liburing.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "benchmarks/scenario.h"
#include "snapshot/lazy_pager.h"
#include "snapshot/snapshot_file.h"

namespace thaw::bench {
namespace {

constexpr uint64_t kPage = 4096;

void Memcpy(benchmark::State& state) {
  const size_t size = 64ull << 20;
  std::vector<uint8_t> from(size, 1), to(size, 0);  // both faulted in
  for (auto _ : state) {
    std::memcpy(to.data(), from.data(), size);
    benchmark::DoNotOptimize(to.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * size);
}

// Touches `pages` fresh units of `unit` bytes (a 4 KiB page, or a 64 KiB
// chunk as thaw's lazy engine installs), each served by a userfaultfd
// thread with one UFFDIO_COPY of the unit from memory (or UFFDIO_ZEROPAGE):
// the cheapest lazy restore there is.
void RawUffd(benchmark::State& state, bool zero, uint64_t unit) {
  const uint64_t pages = (Smoke() ? 256 : 4096) * kPage / unit;
  std::vector<uint8_t> source(unit, 0x5A);
  for (auto _ : state) {
    int uffd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC));
    if (uffd < 0) Die("userfaultfd", absl::InternalError(std::strerror(errno)));
    uffdio_api api{};
    api.api = UFFD_API;
    ioctl(uffd, UFFDIO_API, &api);
    auto* area = static_cast<uint8_t*>(
        mmap(nullptr, pages * unit, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    uffdio_register reg{};
    reg.range.start = reinterpret_cast<uint64_t>(area);
    reg.range.len = pages * unit;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) {
      Die("UFFDIO_REGISTER", absl::InternalError(std::strerror(errno)));
    }
    std::thread server([&] {
      for (uint64_t served = 0; served < pages;) {
        uffd_msg msg;
        if (read(uffd, &msg, sizeof(msg)) != sizeof(msg)) continue;
        if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
        // The unit holding the address, counted from the area's start (which
        // mmap aligns to 4 KiB only).
        const uint64_t base = reinterpret_cast<uint64_t>(area);
        const uint64_t page =
            base + (msg.arg.pagefault.address - base) / unit * unit;
        if (zero) {
          uffdio_zeropage z{{page, unit}, 0, 0};
          ioctl(uffd, UFFDIO_ZEROPAGE, &z);
        } else {
          uffdio_copy c{page, reinterpret_cast<uint64_t>(source.data()), unit,
                        0, 0};
          ioctl(uffd, UFFDIO_COPY, &c);
        }
        ++served;
      }
    });
    absl::Time start = absl::Now();
    uint64_t sum = 0;
    for (uint64_t p = 0; p < pages; ++p) sum += area[p * unit];
    benchmark::DoNotOptimize(sum);
    state.SetIterationTime(absl::ToDoubleSeconds(absl::Now() - start) / pages);
    server.join();
    munmap(area, pages * unit);
    close(uffd);
  }
  state.SetLabel(unit == kPage ? "per 4 KiB page" : "per 64 KiB chunk");
}

// thaw's lazy engine serving faults: the host touches one byte of each of
// the scenario's non-zero chunks; the pager reads (io_uring), decompresses
// and installs the 64 KiB chunk. Reported per chunk, against a raw 64 KiB
// UFFDIO_COPY from memory.
void LazyFaultService(benchmark::State& state, uint64_t size) {
  const Scenario& s = GetScenario(size);
  auto image = snapshot::SnapshotImage::Open(s.snapshot);
  if (!image.ok()) Die("open", image.status());
  const uint64_t chunk = (*image)->chunk_size();
  for (auto _ : state) {
    auto* memory = static_cast<uint8_t*>(
        mmap(nullptr, size, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
    snapshot::RestoreCounters counters;
    auto pager = snapshot::LazyPager::Start(*image, memory, counters, {});
    if (!pager.ok()) Die("pager", pager.status());
    uint64_t chunks = 0, sum = 0;
    absl::Time start = absl::Now();
    for (uint64_t c = 0; c < (*image)->chunk_count(); ++c) {
      if ((*image)->Locate(c).zero()) continue;
      sum += memory[c * chunk];
      ++chunks;
    }
    const absl::Duration took = absl::Now() - start;
    benchmark::DoNotOptimize(sum);
    state.SetIterationTime(absl::ToDoubleSeconds(took) / chunks);
    state.counters["faults"] = counters.faults.load();
    state.counters["chunks"] = chunks;
    pager->reset();
    munmap(memory, size);
  }
  state.SetLabel("per 64 KiB chunk, read and decompressed");
}

// Decoding one stored 64 KiB chunk from memory, as a lazy fault does after
// its read: the stored bytes' checksum, zstd, the content checksum. Over
// the scenario's frames in turn; reported per chunk.
void DecodeChunk(benchmark::State& state) {
  const Scenario& s = GetScenario(ScenarioSizes().front());
  auto image = snapshot::SnapshotImage::Open(s.snapshot);
  if (!image.ok()) Die("open", image.status());
  const snapshot::SnapshotFile& file = (*image)->top();
  std::vector<std::string> stored;
  for (uint32_t f = 0; f < file.frame_count(); ++f) {
    auto bytes = file.ReadStored(f);
    if (!bytes.ok()) Die("read frame", bytes.status());
    stored.push_back(*std::move(bytes));
  }
  std::vector<uint8_t> out((*image)->chunk_size());
  uint32_t f = 0;
  for (auto _ : state) {
    const std::string& bytes = stored[f];
    absl::Status st = file.DecodeFrame(
        f,
        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()),
                            bytes.size()),
        absl::MakeSpan(out));
    if (!st.ok()) Die("decode", st);
    f = (f + 1) % stored.size();
  }
  state.SetLabel("per 64 KiB chunk: checksums + zstd");
}

// A cold read of the prefetch file's raw working set (what a cold
// prefetch restore must bring in, as the Firecracker-style restore must
// bring in the same pages of its memory file): evicted from the page
// cache, then read once, sequentially, in 1 MiB reads. The floor of a
// cold restore that reads raw bytes.
void ColdReadWorkingSet(benchmark::State& state, uint64_t size) {
  const Scenario& s = GetScenario(size);
  auto image = snapshot::SnapshotImage::Open(s.prefetch);
  if (!image.ok()) Die("open", image.status());
  const snapshot::SnapshotFile& file = (*image)->top();
  uint64_t begin = UINT64_MAX, end = 0;
  for (uint32_t c : file.manifest().working_set()) {
    snapshot::SnapshotImage::Location where = (*image)->Locate(c);
    if (where.zero() || where.file != 0) continue;
    begin = std::min(begin, file.FrameOffset(where.frame));
    end = std::max(end,
                   file.FrameOffset(where.frame) + file.FrameSize(where.frame));
  }
  if (begin >= end) Die("working set", absl::InternalError("none recorded"));
  std::vector<uint8_t> buffer(1 << 20);
  for (auto _ : state) {
    int fd = open(s.prefetch.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) Die("open", absl::InternalError(s.prefetch));
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    absl::Time start = absl::Now();
    for (uint64_t at = begin; at < end; at += buffer.size()) {
      const uint64_t n = std::min<uint64_t>(buffer.size(), end - at);
      if (pread(fd, buffer.data(), n, at) != static_cast<ssize_t>(n)) {
        Die("read", absl::InternalError(s.prefetch));
      }
    }
    state.SetIterationTime(absl::ToDoubleSeconds(absl::Now() - start));
    close(fd);
  }
  state.counters["MiB"] = (end - begin) / 1048576.0;
}

// The kernel's own cost of putting the prefetch file's working set in
// place, without thaw: the Firecracker-style raw memory file (cached)
// mapped MAP_PRIVATE, the pages the recorded call wrote made private
// (MADV_POPULATE_WRITE), then every other working-set page's entry filled
// (MADV_POPULATE_READ). Any restore with 4 KiB pages pays at least this
// before a first call that touches the working set runs without a fault.
void InstallWorkingSet(benchmark::State& state, uint64_t size) {
  const Scenario& s = GetScenario(size);
  auto image = snapshot::SnapshotImage::Open(s.prefetch);
  if (!image.ok()) Die("open", image.status());
  const auto& manifest = (*image)->top().manifest();
  const uint64_t chunk = (*image)->chunk_size();
  int fd = open(s.raw_memory.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) Die("open raw memory", absl::InternalError(s.raw_memory));
  std::vector<uint8_t> buffer(1 << 20);  // warm, as a warm restore sees it
  for (uint64_t at = 0; at < s.memory_size; at += buffer.size()) {
    (void)!pread(fd, buffer.data(), buffer.size(), at);
  }
  std::vector<std::pair<uint64_t, uint64_t>> chunk_runs;  // [first, end)
  for (uint32_t c : manifest.working_set()) {
    if (!chunk_runs.empty() && chunk_runs.back().second == c) {
      ++chunk_runs.back().second;
    } else {
      chunk_runs.emplace_back(c, c + 1);
    }
  }
  uint64_t pages = 0;
  for (auto _ : state) {
    absl::Time start = absl::Now();
    void* mapped = mmap(nullptr, s.memory_size, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE, fd, 0);
    if (mapped == MAP_FAILED) Die("mmap", absl::InternalError(s.raw_memory));
    auto* memory = static_cast<uint8_t*>(mapped);
    const auto& written = manifest.working_set_written_pages();
    for (int i = 0; i < written.size();) {  // in runs of consecutive pages
      const uint64_t first = written[i];
      uint64_t end = first + 1;
      while (++i < written.size() && written[i] == end) ++end;
      madvise(memory + first * kPage, (end - first) * kPage,
              MADV_POPULATE_WRITE);
    }
    pages = 0;
    for (const auto& [first, end] : chunk_runs) {
      madvise(memory + first * chunk, (end - first) * chunk,
              MADV_POPULATE_READ);
      pages += (end - first) * chunk / kPage;
    }
    state.SetIterationTime(absl::ToDoubleSeconds(absl::Now() - start));
    munmap(mapped, s.memory_size);
  }
  close(fd);
  state.counters["pages"] = pages;
  state.counters["written_pages"] = manifest.working_set_written_pages_size();
}

void IoUringRead(benchmark::State& state) {
  const Scenario& s = GetScenario(ScenarioSizes().front());
  int fd = open(s.raw_memory.c_str(), O_RDONLY | O_CLOEXEC);
  io_uring ring;
  if (fd < 0 || io_uring_queue_init(4, &ring, 0) != 0) {
    Die("io_uring", absl::UnavailableError("cannot set up"));
  }
  std::vector<uint8_t> buffer(64 << 10);
  const uint64_t blocks = s.memory_size / buffer.size();
  // Warm the page cache: the floor of a cached read, as restores see.
  for (uint64_t b = 0; b < blocks; ++b) {
    (void)!pread(fd, buffer.data(), buffer.size(), b * buffer.size());
  }
  uint64_t next = 0;
  for (auto _ : state) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_read(sqe, fd, buffer.data(), buffer.size(),
                       (next++ % blocks) * buffer.size());
    io_uring_submit(&ring);
    io_uring_cqe* cqe;
    io_uring_wait_cqe(&ring, &cqe);
    io_uring_cqe_seen(&ring, cqe);
  }
  io_uring_queue_exit(&ring);
  close(fd);
  state.SetBytesProcessed(state.iterations() * buffer.size());
}

}  // namespace

void RegisterFloorBenchmarks() {
  using benchmark::RegisterBenchmark;
  RegisterBenchmark("floor/memcpy_64MiB", Memcpy)
      ->Iterations(Iterations(20))
      ->Unit(benchmark::kMillisecond);
  RegisterBenchmark("floor/uffd_copy_page", RawUffd, false, kPage)
      ->Iterations(Iterations(5))
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  RegisterBenchmark("floor/uffd_copy_64KiB", RawUffd, false, 16 * kPage)
      ->Iterations(Iterations(5))
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  RegisterBenchmark("floor/uffd_zeropage_page", RawUffd, true, kPage)
      ->Iterations(Iterations(5))
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  RegisterBenchmark("floor/decode_64KiB_chunk", DecodeChunk)
      ->Iterations(Iterations(2000))
      ->Unit(benchmark::kMicrosecond);
  RegisterBenchmark("floor/io_uring_read_64KiB", IoUringRead)
      ->Iterations(Iterations(5000))
      ->Unit(benchmark::kMicrosecond);
  for (uint64_t size : ScenarioSizes()) {
    RegisterBenchmark(("floor/cold_read_working_set/" + SizeName(size)).c_str(),
                      ColdReadWorkingSet, size)
        ->Iterations(Iterations(5))
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
    RegisterBenchmark(("floor/install_working_set/" + SizeName(size)).c_str(),
                      InstallWorkingSet, size)
        ->Iterations(Iterations(10))
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
    RegisterBenchmark(
        ("fault_service/lazy_per_chunk/" + SizeName(size)).c_str(),
        LazyFaultService, size)
        ->Iterations(Iterations(3))
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace thaw::bench
