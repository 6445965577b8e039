#include "benchmarks/scenario.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "snapshot/snapshot_file.h"

namespace thaw::bench {

bool Smoke() {
  const char* smoke = std::getenv("THAW_BENCH_SMOKE");
  return smoke != nullptr && std::string(smoke) == "1";
}

std::vector<uint64_t> ScenarioSizes() {
  if (Smoke()) return {32ull << 20};
  return {128ull << 20, 1ull << 30};
}

int Iterations(int full) { return Smoke() ? 1 : full; }

const std::string& ScratchDir() {
  static const std::string* dir = [] {
    const char* given = std::getenv("THAW_BENCH_DIR");
    auto* path = new std::string(
        given ? given : absl::StrCat("/var/tmp/thaw-bench-", getpid()));
    std::filesystem::create_directories(*path);
    std::atexit([] { std::filesystem::remove_all(ScratchDir()); });
    return path;
  }();
  return *dir;
}

VmConfig BenchConfig(uint64_t memory_size) {
  VmConfig config;
  config.backend = BackendKind::kEmulated;
  if (const char* backend = std::getenv("THAW_BENCH_BACKEND")) {
    if (auto kind = ParseBackendName(backend); kind.ok())
      config.backend = *kind;
  }
  config.memory_size = memory_size;
  config.call_timeout = absl::Minutes(5);
  return config;
}

RestoreOptions BenchRestoreOptions(uint64_t memory_size, RestoreEngine engine) {
  RestoreOptions options;
  options.backend = BenchConfig(memory_size).backend;
  options.engine = engine;
  options.call_timeout = absl::Minutes(5);
  return options;
}

std::string SizeName(uint64_t bytes) {
  return bytes >= (1ull << 30) ? absl::StrCat(bytes >> 30, "GiB")
                               : absl::StrCat(bytes >> 20, "MiB");
}

void Die(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "thaw_bench: %s: %s\n", what.c_str(),
               std::string(status.message()).c_str());
  std::exit(1);
}

namespace {

// Writes the snapshot's memory raw into a sparse file (zero chunks are
// holes), as Firecracker's memory file holds it.
void WriteRawMemory(const std::string& snapshot, const std::string& path) {
  auto image = snapshot::SnapshotImage::Open(snapshot);
  if (!image.ok()) Die("open snapshot for the raw memory file", image.status());
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ftruncate(fd, (*image)->memory_size()) != 0) {
    Die("create " + path, absl::InternalError(std::strerror(errno)));
  }
  std::vector<uint8_t> chunk((*image)->chunk_size());
  for (uint64_t c = 0; c < (*image)->chunk_count(); ++c) {
    if ((*image)->Locate(c).zero()) continue;
    if (auto s = (*image)->ReadChunk(c, absl::MakeSpan(chunk)); !s.ok()) {
      Die("decode chunk", s);
    }
    if (pwrite(fd, chunk.data(), chunk.size(), c * chunk.size()) !=
        static_cast<ssize_t>(chunk.size())) {
      Die("write " + path, absl::InternalError(std::strerror(errno)));
    }
  }
  fsync(fd);
  close(fd);
}

Scenario Prepare(uint64_t memory_size) {
  Scenario s;
  s.memory_size = memory_size;
  s.name = SizeName(memory_size);
  const std::string base = ScratchDir() + "/" + s.name;
  s.snapshot = base + ".thaw";
  s.prefetch = base + "-ws.thaw";
  s.raw_memory = base + ".mem";
  std::fprintf(stderr, "thaw_bench: preparing the %s scenario...\n",
               s.name.c_str());
  auto vm = Vm::Create(BenchConfig(memory_size));
  if (!vm.ok()) Die("create", vm.status());
  if (auto st = (*vm)->LoadGuest(THAW_BENCH_GUEST); !st.ok()) Die("load", st);
  absl::Time start = absl::Now();
  if (auto st = (*vm)->Boot(); !st.ok()) Die("boot", st);
  s.boot_init = absl::Now() - start;
  if (auto st = (*vm)->Snapshot(s.snapshot); !st.ok()) Die("snapshot", st);
  auto reply = (*vm)->Call("work", "");
  if (!reply.ok()) Die("work", reply.status());
  s.work_reply = *reply;
  vm->reset();

  std::filesystem::copy_file(s.snapshot, s.prefetch,
                             std::filesystem::copy_options::overwrite_existing);
  RestoreOptions record;
  record.backend = BenchConfig(memory_size).backend;
  record.engine = RestoreEngine::kLazy;
  record.record_working_set = true;
  auto recorder = Vm::Restore(s.prefetch, record);
  if (!recorder.ok()) Die("restore to record", recorder.status());
  if (auto r = (*recorder)->Call("work", ""); !r.ok())
    Die("record", r.status());
  if (auto st = (*recorder)->WriteWorkingSet(); !st.ok()) Die("write ws", st);
  recorder->reset();

  WriteRawMemory(s.snapshot, s.raw_memory);
  auto info = InspectSnapshot(s.snapshot);
  if (!info.ok()) Die("inspect", info.status());
  s.snapshot_bytes = info->file_size;
  s.data_bytes = (info->chunks - info->zero_chunks) * info->chunk_size;
  auto ws = InspectSnapshot(s.prefetch);
  if (!ws.ok()) Die("inspect", ws.status());
  s.working_set_chunks = ws->working_set_chunks;
  s.prefetch_bytes = ws->file_size;
  return s;
}

std::mutex samples_mutex;
std::map<std::string, std::vector<double>>& MutableSamples() {
  static auto* samples = new std::map<std::string, std::vector<double>>;
  return *samples;
}

}  // namespace

const Scenario& GetScenario(uint64_t memory_size) {
  static std::mutex mutex;
  static auto* scenarios = new std::map<uint64_t, Scenario>;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = scenarios->find(memory_size);
  if (it == scenarios->end()) {
    it = scenarios->emplace(memory_size, Prepare(memory_size)).first;
  }
  return it->second;
}

void RecordSample(const std::string& name, double ms) {
  std::lock_guard<std::mutex> lock(samples_mutex);
  MutableSamples()[name].push_back(ms);
}

const std::map<std::string, std::vector<double>>& Samples() {
  return MutableSamples();
}

}  // namespace thaw::bench
