// Remote snapshot stores against real servers on loopback: nginx for
// HTTP(S)-style stores, Ceph's radosgw for S3, and thaw_fault_proxy between
// client and server for latency and faults. Every engine restores from a
// URL; the host's chunk cache is shared, bounded, deduplicating and safe
// after a torn write; faults end in the right bytes or a clear error.
#include "thaw/remote.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "remote/chunk_cache.h"
#include "remote/http_client.h"
#include "snapshot/snapshot_file.h"
#include "tests/remote/servers.h"
#include "thaw/signing.h"
#include "thaw/snapshot.h"
#include "thaw/vm.h"

namespace thaw {
namespace {

namespace fs = std::filesystem;

uint64_t AsU64(const std::string& reply) {
  uint64_t value = 0;
  if (reply.size() >= 8) std::memcpy(&value, reply.data(), 8);
  return value;
}

std::string Scratch(const std::string& name) {
  fs::path dir = fs::path(::testing::TempDir()) /
                 absl::StrCat("thaw_remote_", getpid(), "_", name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

uint64_t DirBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code e;
  for (const auto& f : fs::recursive_directory_iterator(dir, e)) {
    if (f.is_regular_file()) total += f.file_size();
  }
  return total;
}

// The servers, started once for the whole binary.
class Servers : public ::testing::Environment {
 public:
  void SetUp() override {
    root_ = Scratch("servers");
    auto nginx = testing::Nginx::Start(root_ + "/www", root_ + "/nginx");
    ASSERT_TRUE(nginx.ok()) << nginx.status();
    nginx_ = *std::move(nginx);
  }
  void TearDown() override {
    nginx_.reset();
    radosgw_.reset();
    fs::remove_all(root_);
  }
  // Started on first use (about 10 s): only the S3 tests pay for it.
  testing::Radosgw* radosgw() {
    if (radosgw_ == nullptr && s3_error_.ok()) {
      auto gw = testing::Radosgw::Start(root_ + "/ceph");
      if (gw.ok()) {
        radosgw_ = *std::move(gw);
        s3_error_ = radosgw_->CreateBucket("snapshots");
      } else {
        s3_error_ = gw.status();
      }
    }
    return s3_error_.ok() ? radosgw_.get() : nullptr;
  }
  const absl::Status& s3_error() const { return s3_error_; }

  std::string www() const { return root_ + "/www"; }
  testing::Nginx& nginx() { return *nginx_; }

 private:
  std::string root_;
  std::unique_ptr<testing::Nginx> nginx_;
  std::unique_ptr<testing::Radosgw> radosgw_;
  absl::Status s3_error_;
};
Servers* servers = nullptr;

class RemoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = absl::StrCat(info->test_suite_name(), "_", info->name());
    for (char& c : name) {
      if (c == '/') c = '_';
    }
    dir_ = Scratch(name);
    name_ = name;
  }
  void TearDown() override {
    std::error_code error;
    fs::remove_all(dir_, error);
  }

  VmConfig Config() {
    VmConfig config;
    config.backend = BackendKind::kEmulated;
    config.memory_size = 64ull << 20;
    config.call_timeout = absl::Seconds(60);
    return config;
  }

  std::unique_ptr<Vm> Boot() {
    auto vm = Vm::Create(Config());
    EXPECT_TRUE(vm.ok()) << vm.status();
    if (!vm.ok()) return nullptr;
    absl::Status s = (*vm)->LoadGuest(THAW_SNAPSHOT_GUEST);
    if (s.ok()) s = (*vm)->Boot();
    EXPECT_TRUE(s.ok()) << s;
    return s.ok() ? *std::move(vm) : nullptr;
  }

  std::string Call(Vm& vm, const std::string& function,
                   const std::string& input = "") {
    auto reply = vm.Call(function, input);
    EXPECT_TRUE(reply.ok()) << function << ": " << reply.status();
    return reply.ok() ? *reply : "";
  }

  // Snapshots a booted guest after two counter calls into the nginx root
  // as NAME; returns its URL, and the table's sum in `sum`.
  std::string Publish(const std::string& name, std::string* sum,
                      const std::string& folder = "fns") {
    auto vm = Boot();
    if (vm == nullptr) return "";
    Call(*vm, "counter");
    Call(*vm, "counter");
    *sum = Call(*vm, "table_sum");
    const std::string local = dir_ + "/" + name;
    absl::Status s = vm->Snapshot(local);
    EXPECT_TRUE(s.ok()) << s;
    const std::string url =
        servers->nginx().Url(folder + "/" + name_ + "/" + name);
    s = PushSnapshot(local, url);
    EXPECT_TRUE(s.ok()) << s;
    return url;
  }

  OpenOptions Options(const std::string& cache = "cache") {
    OpenOptions options;
    options.remote.cache_dir = dir_ + "/" + cache;
    options.remote.first_backoff = absl::Milliseconds(10);
    options.remote.stall_timeout = absl::Seconds(2);
    options.remote.request_timeout = absl::Seconds(20);
    return options;
  }

  // Restores `url` with `engine` and checks it answers as the original.
  void ExpectRestoresRight(const Snapshot& snapshot, RestoreEngine engine,
                           const std::string& sum) {
    RestoreOptions options;
    options.engine = engine;
    options.backend = BackendKind::kEmulated;
    options.call_timeout = absl::Seconds(60);  // sanitizer builds are slow
    auto vm = snapshot.Restore(options);
    ASSERT_TRUE(vm.ok()) << RestoreEngineName(engine) << ": " << vm.status();
    EXPECT_EQ(AsU64(Call(**vm, "counter")), 3u) << RestoreEngineName(engine);
    EXPECT_EQ(Call(**vm, "table_sum"), sum) << RestoreEngineName(engine);
  }

  std::string dir_, name_;
};

TEST_F(RemoteTest, EveryEngineRestoresFromAnHttpStore) {
  std::string sum;
  const std::string url = Publish("fn.thaw", &sum);
  ASSERT_FALSE(url.empty());
  for (RestoreEngine engine :
       {RestoreEngine::kEager, RestoreEngine::kLazy,
        RestoreEngine::kLazyPrefetch, RestoreEngine::kSharedBase}) {
    // A cold cache for each engine: every frame comes over HTTP.
    auto snapshot =
        Snapshot::Open(url, Options(absl::StrCat("cache-", engine)));
    ASSERT_TRUE(snapshot.ok()) << snapshot.status();
    EXPECT_EQ(snapshot->Info().path, url);
    ExpectRestoresRight(*snapshot, engine, sum);
    const RemoteStats stats = snapshot->remote_stats();
    EXPECT_GT(stats.frames_fetched, 0u) << stats.ToString();
    EXPECT_EQ(stats.cache_hits, 0u) << stats.ToString();
  }
  // The plain Open(url) uses the default cache ($THAW_CACHE_DIR here).
  setenv("THAW_CACHE_DIR", (dir_ + "/default-cache").c_str(), 1);
  auto plain = Snapshot::Open(url);
  ASSERT_TRUE(plain.ok()) << plain.status();
  ExpectRestoresRight(*plain, RestoreEngine::kLazy, sum);
  EXPECT_GT(DirBytes(dir_ + "/default-cache/objects"), 0u);
  unsetenv("THAW_CACHE_DIR");
  // Inspect and verify by URL.
  auto info = InspectSnapshot(url);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->guest_kind, "function");
  EXPECT_TRUE(VerifySnapshot(url).ok());
}

// The thaw tool by URL: push, inspect, restore (with what the store cost),
// verify and pull.
TEST_F(RemoteTest, TheCliPushesInspectsRestoresVerifiesAndPullsByUrl) {
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  const std::string local = dir_ + "/cli.thaw";
  ASSERT_TRUE(vm->Snapshot(local).ok());
  const std::string url = servers->nginx().Url("fns/" + name_ + "/cli.thaw");
  const std::string cli = std::string("THAW_CACHE_DIR='") + dir_ +
                          "/cli-cache' '" + THAW_CLI + "' ";
  auto run = [&](const std::string& args, const std::string& out) {
    return std::system(
        (cli + args + " >'" + dir_ + "/" + out + "' 2>&1").c_str());
  };
  auto text = [&](const std::string& out) {
    std::ifstream in(dir_ + "/" + out);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  ASSERT_EQ(run("push '" + local + "' " + url, "push.txt"), 0)
      << text("push.txt");
  ASSERT_EQ(run("inspect " + url, "inspect.txt"), 0) << text("inspect.txt");
  EXPECT_TRUE(absl::StrContains(text("inspect.txt"), url));
  ASSERT_EQ(
      run("restore " + url + " --call counter --engine lazy", "restore.txt"), 0)
      << text("restore.txt");
  EXPECT_TRUE(absl::StrContains(text("restore.txt"), "remote: requests"))
      << text("restore.txt");
  ASSERT_EQ(run("verify " + url, "verify.txt"), 0) << text("verify.txt");
  ASSERT_EQ(run("pull " + url + " '" + dir_ + "/pulled.thaw'", "pull.txt"), 0)
      << text("pull.txt");
  EXPECT_EQ(fs::file_size(dir_ + "/pulled.thaw"), fs::file_size(local));
  // A missing file: exit 1 with the URL in the one-line reason.
  EXPECT_NE(run("restore " + url + ".missing --call counter", "missing.txt"),
            0);
  EXPECT_TRUE(absl::StrContains(text("missing.txt"), "404"))
      << text("missing.txt");
}

TEST_F(RemoteTest, AWarmHostServesEveryFrameAndTheStoreOnlyTheManifest) {
  std::string sum;
  const std::string url = Publish("fn.thaw", &sum);
  ASSERT_FALSE(url.empty());
  RemoteStats first;
  {
    auto cold = Snapshot::Open(url, Options());
    ASSERT_TRUE(cold.ok()) << cold.status();
    ExpectRestoresRight(*cold, RestoreEngine::kEager, sum);
    first = cold->remote_stats();
    EXPECT_EQ(first.frames_on_host, 0u) << first.ToString();
  }  // its cache entries are written by the time the handle is gone
  // A new handle finds every frame in the host's copy of this version; the
  // store (which says nothing of caching) is asked for the manifest only.
  {
    auto warm = Snapshot::Open(url, Options());
    ASSERT_TRUE(warm.ok()) << warm.status();
    ExpectRestoresRight(*warm, RestoreEngine::kEager, sum);
    const RemoteStats second = warm->remote_stats();
    EXPECT_EQ(second.frames_fetched, 0u) << second.ToString();
    EXPECT_EQ(second.frames_on_host, first.frames_fetched) << second.ToString();
    EXPECT_EQ(second.requests, 2u)
        << "header and manifest: " << second.ToString();
  }
  // Allowed to trust what it has for a while, the host asks the store
  // nothing: the last open's record names the version it has.
  OpenOptions trusting = Options();
  trusting.remote.manifest_max_age = absl::Minutes(5);
  for (RestoreEngine engine :
       {RestoreEngine::kLazyPrefetch, RestoreEngine::kEager}) {
    auto again = Snapshot::Open(url, trusting);
    ASSERT_TRUE(again.ok()) << again.status();
    ExpectRestoresRight(*again, engine, sum);
    EXPECT_EQ(again->remote_stats().requests, 0u)
        << again->remote_stats().ToString();
    EXPECT_EQ(again->remote_stats().frames_on_host, first.frames_fetched);
  }
  // Without the host's copy, the chunk cache serves every frame.
  fs::remove_all(dir_ + "/cache/images");
  auto from_cache = Snapshot::Open(url, Options());
  ASSERT_TRUE(from_cache.ok()) << from_cache.status();
  ExpectRestoresRight(*from_cache, RestoreEngine::kEager, sum);
  const RemoteStats third = from_cache->remote_stats();
  EXPECT_EQ(third.frames_fetched, 0u) << third.ToString();
  EXPECT_EQ(third.cache_hits, first.frames_fetched) << third.ToString();
  EXPECT_GT(third.bytes_deduplicated, 0u);
}

TEST_F(RemoteTest, AStoreThatAllowsCachingIsAskedOnlyOnce) {
  // nginx sends Cache-Control: max-age=3600 under /immutable/ (as a store
  // of versioned snapshots would): the second open on the host asks
  // nothing, and a host that was told nothing asks every time.
  std::string sum;
  const std::string url = Publish("fn.thaw", &sum, "immutable");
  ASSERT_FALSE(url.empty());
  for (int i = 0; i < 3; ++i) {
    auto snapshot = Snapshot::Open(url, Options());
    ASSERT_TRUE(snapshot.ok()) << snapshot.status();
    ExpectRestoresRight(*snapshot, RestoreEngine::kEager, sum);
    const RemoteStats stats = snapshot->remote_stats();
    if (i == 0) {
      EXPECT_GT(stats.requests, 0u) << stats.ToString();
    } else {
      EXPECT_EQ(stats.requests, 0u) << stats.ToString();
      EXPECT_GT(stats.frames_on_host, 0u) << stats.ToString();
    }
  }
  // Where the store says nothing, every open asks.
  const std::string plain = Publish("plain.thaw", &sum);
  for (int i = 0; i < 2; ++i) {
    auto snapshot = Snapshot::Open(plain, Options());
    ASSERT_TRUE(snapshot.ok()) << snapshot.status();
    EXPECT_GT(snapshot->remote_stats().requests, 0u);
  }
}

TEST_F(RemoteTest, ASecondVersionDownloadsOnlyTheChunksThatChanged) {
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  const std::string v1 = dir_ + "/v1.thaw", v2 = dir_ + "/v2.thaw";
  ASSERT_TRUE(vm->Snapshot(v1).ok());
  Call(*vm, "dirty", "8");  // eight pages of the dirty area change
  ASSERT_TRUE(vm->Snapshot(v2).ok());
  const std::string u1 = servers->nginx().Url("fns/" + name_ + "/v1.thaw");
  const std::string u2 = servers->nginx().Url("fns/" + name_ + "/v2.thaw");
  ASSERT_TRUE(PushSnapshot(v1, u1).ok());
  ASSERT_TRUE(PushSnapshot(v2, u2).ok());
  RestoreOptions eager;
  eager.engine = RestoreEngine::kEager;
  RemoteStats a;
  {
    auto s1 = Snapshot::Open(u1, Options());
    ASSERT_TRUE(s1.ok()) << s1.status();
    ASSERT_TRUE(s1->Restore(eager).ok());
    a = s1->remote_stats();
  }
  auto s2 = Snapshot::Open(u2, Options());
  ASSERT_TRUE(s2.ok()) << s2.status();
  auto r2 = s2->Restore(eager);
  ASSERT_TRUE(r2.ok()) << r2.status();
  const RemoteStats b = s2->remote_stats();
  EXPECT_GT(b.cache_hits, 0u) << b.ToString();
  EXPECT_LT(b.frames_fetched * 10, a.frames_fetched)
      << "v1: " << a.ToString() << "\nv2: " << b.ToString();
  // (Bytes are compared in benchmarks/remote_bench.cc at a realistic
  // size: here the manifest, fetched by both, is most of v2's bytes.)
}

TEST_F(RemoteTest, APrefetchRestoreMapsTheRecordedWorkingSetFromTheStore) {
  std::string sum;
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  sum = Call(*vm, "table_sum");
  const std::string local = dir_ + "/ws.thaw";
  ASSERT_TRUE(vm->Snapshot(local).ok());
  {
    RestoreOptions record;
    record.engine = RestoreEngine::kLazy;
    record.record_working_set = true;
    auto r = Vm::Restore(local, record);
    ASSERT_TRUE(r.ok()) << r.status();
    // (Zero chunks too: the dirty area, untouched yet.)
    EXPECT_EQ(Call(**r, "table_sum_and_zeros"), sum);
    ASSERT_TRUE((*r)->WriteWorkingSet().ok());
  }
  const std::string url = servers->nginx().Url("fns/" + name_ + "/ws.thaw");
  ASSERT_TRUE(PushSnapshot(local, url).ok());
  // Handles dropped while the working set they started fetching at open is
  // still on the way (the last reference then goes on a fetch thread).
  for (int i = 0; i < 3; ++i) {
    auto dropped = Snapshot::Open(url, Options(absl::StrCat("dropped", i)));
    ASSERT_TRUE(dropped.ok()) << dropped.status();
  }
  auto snapshot = Snapshot::Open(url, Options());
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_GT(snapshot->Info().working_set_chunks, 0u);
  // On a host that never opened it, the twins (at the file's front) came in
  // the open's own round trip, with the header: two requests in all.
  EXPECT_EQ(snapshot->remote_stats().requests, 2u)
      << snapshot->remote_stats().ToString();
  EXPECT_GE(snapshot->remote_stats().bytes_fetched,
            snapshot->Info().packed_working_set_bytes);
  RestoreOptions prefetch;
  prefetch.engine = RestoreEngine::kLazyPrefetch;
  auto r = snapshot->Restore(prefetch);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Call(**r, "table_sum"), sum);
  const RestoreStats stats = (*r)->restore_stats();
  EXPECT_GT(stats.mapped + stats.prefetched, 0u);
  // The working set is one stretch of the file: few requests for it, and
  // it comes through its packed twins, not its raw frames.
  const RemoteStats remote = snapshot->remote_stats();
  EXPECT_LT(remote.requests, 2 + remote.frames_fetched / 4)
      << remote.ToString();
  const SnapshotInfo info = snapshot->Info();
  const uint64_t raw = info.working_set_chunks * uint64_t{info.chunk_size};
  ASSERT_GT(info.packed_working_set_bytes, 0u);
  EXPECT_LT(info.packed_working_set_bytes, raw / 2) << info.ToString();
  EXPECT_LT(remote.bytes_fetched, raw / 2) << remote.ToString() << "\n"
                                           << info.ToString();
  // The working set's zero chunks (raw frames of zeros, so that they can
  // be mapped) come from nowhere: each is a hole in the host's image.
  auto file = snapshot::SnapshotFile::Open(local);
  ASSERT_TRUE(file.ok()) << file.status();
  std::vector<uint8_t> zeros(info.chunk_size, 0);
  const snapshot::ContentHash zero_hash = snapshot::HashContent(zeros);
  uint64_t zero_chunk = UINT64_MAX, zero_frames = 0, raw_frames = 0;
  for (uint32_t f = 0; f < (*file)->frame_count(); ++f) {
    if ((*file)->FrameSize(f) != info.chunk_size) continue;
    ++raw_frames;
    if ((*file)->FrameContentHash(f) == zero_hash) ++zero_frames;
  }
  for (uint64_t c = 0; c < (*file)->chunk_count(); ++c) {
    const uint32_t f = (*file)->ChunkFrame(c);
    if (f < (*file)->frame_count() &&
        (*file)->FrameSize(f) == info.chunk_size &&
        (*file)->FrameContentHash(f) == zero_hash) {
      zero_chunk = c;
      break;
    }
  }
  ASSERT_GT(zero_frames, 0u) << "the working set has no zero chunk to test";
  EXPECT_LE(remote.frames_fetched, raw_frames - zero_frames)
      << remote.ToString();
  // Bytes a torn write left where a zero chunk goes are not taken for it:
  // garbage written into a fresh image there reads as zeros after a restore.
  {
    OpenOptions torn = Options("cache-torn");
    torn.remote.fetch_working_set_on_open = false;
    auto handle = Snapshot::Open(url, torn);
    ASSERT_TRUE(handle.ok()) << handle.status();
    const std::string images = dir_ + "/cache-torn/images";
    ASSERT_TRUE(fs::exists(images));
    for (const auto& entry : fs::directory_iterator(images)) {
      std::fstream image(entry.path(),
                         std::ios::in | std::ios::out | std::ios::binary);
      image.seekp((*file)->FrameOffset((*file)->ChunkFrame(zero_chunk)));
      image << std::string(64, 'x');
    }
    auto torn_vm = handle->Restore(prefetch);
    ASSERT_TRUE(torn_vm.ok()) << torn_vm.status();
    // (Read before any call: the guest may write the chunk.)
    auto bytes = (*torn_vm)->ReadGuestMemory(zero_chunk * info.chunk_size,
                                             info.chunk_size);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    EXPECT_EQ(*bytes, std::string(info.chunk_size, '\0'));
    EXPECT_EQ(Call(**torn_vm, "table_sum"), sum);
  }
  // The chunk cache kept the twins: without the host's copy of the file, a
  // new handle decodes them from the cache and fetches nothing.
  auto cache = remote::ChunkCache::Open(dir_ + "/cache", 1ull << 40);
  ASSERT_TRUE(cache.ok()) << cache.status();
  (*cache)->WaitForAllClaims();  // every entry is in
  EXPECT_LT(DirBytes(dir_ + "/cache/objects"), raw / 2);
  fs::remove_all(dir_ + "/cache/images");
  auto again = Snapshot::Open(url, Options());
  ASSERT_TRUE(again.ok()) << again.status();
  auto r2 = again->Restore(prefetch);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(Call(**r2, "table_sum"), sum);
  EXPECT_EQ(again->remote_stats().frames_fetched, 0u)
      << again->remote_stats().ToString();
  EXPECT_GT(again->remote_stats().cache_hits, 0u);

  // A store whose copy has a damaged twin: the restore names the frame and
  // the store, never runs the guest on it. (Written straight into nginx's
  // folder: `thaw push` verifies a file before sending it.)
  uint32_t twinned = snapshot::SnapshotFile::kZero;
  for (uint32_t f = 0; f < (*file)->frame_count(); ++f) {
    if ((*file)->Packed(f) != nullptr) {
      twinned = f;
      break;
    }
  }
  ASSERT_NE(twinned, snapshot::SnapshotFile::kZero);
  const uint64_t at = (*file)->Packed(twinned)->offset + 1;
  const std::string damaged = servers->www() + "/fns/" + name_ + "/bad-ws.thaw";
  fs::copy_file(local, damaged);
  {
    std::fstream out(damaged, std::ios::in | std::ios::out | std::ios::binary);
    out.seekg(at);
    const char c = static_cast<char>(out.get());
    out.seekp(at);
    out.put(static_cast<char>(c ^ 0x5a));
  }
  OpenOptions options = Options("cache-bad");
  options.remote.max_attempts = 2;
  auto bad = Snapshot::Open(
      servers->nginx().Url("fns/" + name_ + "/bad-ws.thaw"), options);
  ASSERT_TRUE(bad.ok()) << bad.status();  // header and manifest are intact
  auto refused = bad->Restore(prefetch);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss)
      << refused.status();
  EXPECT_THAT(refused.status().message(),
              ::testing::HasSubstr("packed twin of frame"));
  EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("bad-ws.thaw"));

  // A twin damaged on its way with the header (a byte flipped on each of
  // the open's two connections: on the header's, inside the twins):
  // fetched again, and the guest gets the right bytes.
  int port = 0;
  auto proxy = testing::StartFaultProxy(
      servers->nginx().port(),
      {"--fault", "corrupt", "--fault-after", "2000", "--fault-first", "2"},
      &port);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const std::string path = url.substr(url.find('/', 7));
  auto flipped = Snapshot::Open(absl::StrCat("http://127.0.0.1:", port, path),
                                Options("cache-flipped"));
  ASSERT_TRUE(flipped.ok()) << flipped.status();
  auto healed = flipped->Restore(prefetch);
  ASSERT_TRUE(healed.ok()) << healed.status();
  EXPECT_EQ(Call(**healed, "table_sum"), sum);
  EXPECT_GT(flipped->remote_stats().retries, 0u)
      << flipped->remote_stats().ToString();
}

TEST_F(RemoteTest, TwoProcessesRestoringAtOnceFetchEachFrameOnce) {
  std::string sum;
  const std::string url = Publish("fn.thaw", &sum);
  ASSERT_FALSE(url.empty());
  const std::string cache = dir_ + "/shared-cache";
  std::vector<pid_t> children;
  for (int i = 0; i < 2; ++i) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int code = 0;
      {
        OpenOptions options = Options("shared-cache");
        auto snapshot = Snapshot::Open(url, options);
        if (!snapshot.ok()) _exit(10);
        RestoreOptions eager;
        eager.engine = RestoreEngine::kEager;
        auto vm = snapshot->Restore(eager);
        if (!vm.ok()) _exit(11);
        auto reply = (*vm)->Call("table_sum", "");
        if (!reply.ok() || *reply != sum) code = 12;
        const RemoteStats stats = snapshot->remote_stats();
        std::ofstream(absl::StrCat(dir_, "/fetched-", i))
            << stats.frames_fetched << " " << stats.cache_hits;
        // The handle goes first: it writes the cache entries it fetched
        // (in the background) and lets go of its claims on them. (A
        // process that dies first loses only those entries; the other
        // process then fetches them itself.)
      }
      _exit(code);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "child exit " << WEXITSTATUS(status);
  }
  uint64_t fetched = 0, hits = 0;
  for (int i = 0; i < 2; ++i) {
    std::ifstream in(absl::StrCat(dir_, "/fetched-", i));
    uint64_t f = 0, h = 0;
    in >> f >> h;
    fetched += f;
    hits += h;
  }
  auto info = InspectSnapshot(url);
  ASSERT_TRUE(info.ok());
  // Each frame came over the network once; the other process got it from
  // the cache or found it in the host's copy of the file.
  EXPECT_EQ(fetched, info->frames);
  EXPECT_LE(hits, info->frames);
}

TEST_F(RemoteTest, TheCacheStaysUnderItsBoundAndSurvivesATornEntry) {
  std::string sum;
  const std::string url = Publish("fn.thaw", &sum);
  ASSERT_FALSE(url.empty());
  OpenOptions options = Options();
  RemoteStats first;
  {
    auto snapshot = Snapshot::Open(url, options);
    ASSERT_TRUE(snapshot.ok()) << snapshot.status();
    ExpectRestoresRight(*snapshot, RestoreEngine::kEager, sum);
    first = snapshot->remote_stats();
  }  // its cache entries are all written once the handle is gone
  // Tear every entry (as a power loss after rename could) and leave a
  // half-written temporary file: the next restore must not use them.
  const std::string objects = options.remote.cache_dir + "/objects";
  int torn = 0;
  for (const auto& f : fs::recursive_directory_iterator(objects)) {
    if (!f.is_regular_file()) continue;
    fs::resize_file(f.path(), f.file_size() / 2);
    ++torn;
  }
  ASSERT_GT(torn, 0);
  std::ofstream(options.remote.cache_dir + "/tmp/half.123") << "garbage";
  // (Without the host's copy of the file, whose frames are all there.)
  fs::remove_all(options.remote.cache_dir + "/images");
  auto second = Snapshot::Open(url, options);
  ASSERT_TRUE(second.ok()) << second.status();
  ExpectRestoresRight(*second, RestoreEngine::kEager, sum);
  EXPECT_EQ(second->remote_stats().cache_hits, 0u);
  EXPECT_EQ(second->remote_stats().frames_fetched, first.frames_fetched);
  // A bound far below the snapshot's frames: the cache is swept as it
  // fills and ends near its bound, and restores still work.
  auto info = InspectSnapshot(url);
  ASSERT_TRUE(info.ok());
  OpenOptions small = Options("small-cache");
  small.remote.cache_max_bytes = info->stored_bytes / 4;
  auto bounded = Snapshot::Open(url, small);
  ASSERT_TRUE(bounded.ok()) << bounded.status();
  ExpectRestoresRight(*bounded, RestoreEngine::kEager, sum);
  EXPECT_LE(DirBytes(small.remote.cache_dir + "/objects"),
            small.remote.cache_max_bytes * 5 / 4);
}

TEST_F(RemoteTest, ASignedSnapshotFromAStoreOpensOnlyUnderItsKey) {
  auto key = SigningKey::Generate();
  ASSERT_TRUE(key.ok());
  auto other = SigningKey::Generate();
  ASSERT_TRUE(other.ok());
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  const std::string sum = Call(*vm, "table_sum");
  const std::string local = dir_ + "/signed.thaw";
  SnapshotOptions sign;
  sign.signing_key = *key;
  ASSERT_TRUE(vm->Snapshot(local, sign).ok());
  const std::string url = servers->nginx().Url("fns/" + name_ + "/signed.thaw");
  ASSERT_TRUE(PushSnapshot(local, url).ok());
  // Read first without the key: the host then has every frame, but checked
  // against checksums only, and a handle opened with the key uses none of
  // them (frames checked against the signature are kept apart).
  {
    auto unkeyed = Snapshot::Open(url, Options());
    ASSERT_TRUE(unkeyed.ok()) << unkeyed.status();
    RestoreOptions eager;
    eager.engine = RestoreEngine::kEager;
    ASSERT_TRUE(unkeyed->Restore(eager).ok());
  }
  OpenOptions options = Options();
  options.key = key->verify_key();
  auto snapshot = Snapshot::Open(url, options);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_TRUE(snapshot->Info().signature_verified);
  RestoreOptions lazy;
  lazy.engine = RestoreEngine::kLazy;
  auto r = snapshot->Restore(lazy);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Call(**r, "table_sum"), sum);
  EXPECT_EQ(snapshot->remote_stats().frames_on_host, 0u)
      << snapshot->remote_stats().ToString();
  options.key = other->verify_key();
  auto refused = Snapshot::Open(url, options);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied)
      << refused.status();
}

// HttpClient's progress hook on a real server: a range asked for on
// speculation waits while its hook says so, is cut where the hook says,
// and may end with the file; without a hook, a short answer is an error.
TEST_F(RemoteTest, ASpeculativeRangeWaitsIsCutAndMayEndWithTheFile) {
  fs::create_directories(servers->www() + "/spec");
  std::string bytes(1u << 20, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = char(i * 131 + i / 977);
  std::ofstream(servers->www() + "/spec/file", std::ios::binary) << bytes;
  const std::string url = servers->nginx().Url("spec/file");
  remote::HttpClient client(remote::HttpOptions{});
  using Want = remote::HttpRequest::Want;

  // Held at 64 KiB for 100 ms (the hook is asked again as Run's loop
  // turns), then cut past 300000 bytes.
  std::optional<absl::Time> held_since;
  size_t held_at = 0, asked_while_held = 0;
  bool grew_while_held = false;
  remote::HttpRequest request = remote::RangeRequest(url, 0, 4u << 20);
  request.progress = [&](const remote::HttpResponse& so_far) {
    const size_t size = so_far.body.size();
    if (size >= (64u << 10) &&
        (!held_since.has_value() ||
         absl::Now() - *held_since < absl::Milliseconds(100))) {
      if (!held_since.has_value()) {
        held_since = absl::Now();
        held_at = size;
      }
      grew_while_held |= size != held_at;
      ++asked_while_held;
      return Want::kWait;
    }
    return size >= 300000 ? Want::kEnough : Want::kMore;
  };
  const absl::Time start = absl::Now();
  auto cut = client.Do(request);
  ASSERT_TRUE(cut.ok()) << cut.status();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(100));
  EXPECT_GE(held_at, 64u << 10);
  EXPECT_GE(asked_while_held, 2u);
  EXPECT_FALSE(grew_while_held);
  EXPECT_GE(cut->body.size(), 300000u);
  EXPECT_LT(cut->body.size(), 300000u + (256u << 10));
  EXPECT_EQ(cut->body, bytes.substr(0, cut->body.size()));

  // Past the end of the file: with a hook, the answer ends with the file.
  remote::HttpRequest whole = remote::RangeRequest(url, 0, 4u << 20);
  whole.progress = [](const remote::HttpResponse&) { return Want::kMore; };
  auto answer = client.Do(whole);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->body, bytes);
  // Without one, that is a short answer.
  auto refused = client.Do(remote::RangeRequest(url, 0, 4u << 20));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss)
      << refused.status();
}

TEST_F(RemoteTest, BadLocationsAndMissingFilesAreClearErrors) {
  auto missing =
      Snapshot::Open(servers->nginx().Url("fns/nothing-here.thaw"), Options());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "nothing-here"))
      << missing.status();
  // Not a snapshot: a text file on the server.
  fs::create_directories(servers->www() + "/fns");
  std::ofstream(servers->www() + "/fns/not-a-snapshot.thaw")
      << std::string(4096, 'x');
  auto junk = Snapshot::Open(servers->nginx().Url("fns/not-a-snapshot.thaw"),
                             Options());
  EXPECT_EQ(junk.status().code(), absl::StatusCode::kDataLoss) << junk.status();
  // Nobody listening.
  OpenOptions quick = Options();
  quick.remote.max_attempts = 2;
  auto refused = Snapshot::Open(
      absl::StrCat("http://127.0.0.1:", testing::FreePort(), "/x.thaw"), quick);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable)
      << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "2 attempts"))
      << refused.status();
  auto bad = Snapshot::Open("s3://no-key-here", Options());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument)
      << bad.status();
  // A pull leaves no file behind when the source is missing.
  EXPECT_FALSE(PullSnapshot(servers->nginx().Url("fns/nothing-here.thaw"),
                            dir_ + "/pulled.thaw")
                   .ok());
  EXPECT_FALSE(fs::exists(dir_ + "/pulled.thaw"));
}

// Each fault on the first connections: the restore retries and gets the
// right bytes. The same fault on every connection: a clear error, in
// bounded time, never a wrong answer.
class RemoteFaultTest : public RemoteTest,
                        public ::testing::WithParamInterface<std::string> {};

TEST_P(RemoteFaultTest, EndsInTheRightBytesOrAClearError) {
  const std::string fault = GetParam();
  std::string sum;
  const std::string url = Publish("fn.thaw", &sum);
  ASSERT_FALSE(url.empty());
  const std::string path = url.substr(url.find('/', 7));
  for (RestoreEngine engine :
       {RestoreEngine::kEager, RestoreEngine::kLazy,
        RestoreEngine::kLazyPrefetch, RestoreEngine::kSharedBase}) {
    int port = 0;
    auto proxy = testing::StartFaultProxy(
        servers->nginx().port(),
        {"--fault", fault, "--fault-after", "700", "--fault-first", "2"},
        &port);
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    const std::string via = absl::StrCat("http://127.0.0.1:", port, path);
    OpenOptions options = Options(absl::StrCat("cache-", engine));
    options.remote.stall_timeout = absl::Seconds(1);
    // The faults are meant for the requests a restore needs: a first open
    // otherwise asks for more than the header on speculation, which this
    // file (no working set) has no use for, and the fault on that
    // connection would go with the bytes thrown away.
    options.remote.fetch_working_set_on_open = false;
    auto snapshot = Snapshot::Open(via, options);
    ASSERT_TRUE(snapshot.ok()) << fault << ": " << snapshot.status();
    ExpectRestoresRight(*snapshot, engine, sum);
    EXPECT_GT(snapshot->remote_stats().retries, 0u)
        << fault << ": " << snapshot->remote_stats().ToString();
  }
  int port = 0;
  auto always = testing::StartFaultProxy(
      servers->nginx().port(),
      {"--fault", fault, "--fault-after", "700", "--fault-rate", "1"}, &port);
  ASSERT_TRUE(always.ok()) << always.status();
  OpenOptions options = Options();
  options.remote.max_attempts = 3;
  options.remote.stall_timeout = absl::Seconds(1);
  const absl::Time start = absl::Now();
  auto snapshot =
      Snapshot::Open(absl::StrCat("http://127.0.0.1:", port, path), options);
  absl::Status status = snapshot.status();
  if (snapshot.ok()) {
    // The manifest came through (fault after its bytes); frames cannot.
    RestoreOptions eager;
    eager.engine = RestoreEngine::kEager;
    auto vm = snapshot->Restore(eager);
    status = vm.status();
    if (vm.ok()) {
      auto reply = (*vm)->Call("table_sum", "");
      status = reply.status();
      EXPECT_FALSE(reply.ok() && *reply != sum) << "a wrong answer";
    }
  }
  if (fault == "corrupt" && status.ok()) {
    // One flipped byte per connection: the fetch that met it is retried
    // on the same, now clean, connection; the answer was checked above.
    EXPECT_GT(snapshot->remote_stats().retries, 0u);
  } else {
    EXPECT_FALSE(status.ok()) << fault;
    EXPECT_TRUE(absl::StrContains(status.message(), "127.0.0.1"))
        << fault << ": " << status;
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(60)) << fault;
}

INSTANTIATE_TEST_SUITE_P(Faults, RemoteFaultTest,
                         ::testing::Values("reset", "truncate", "corrupt",
                                           "stall"));

// S3: radosgw, a real S3 implementation, with Signature V4.
class S3Test : public RemoteTest {
 protected:
  void SetUp() override {
    RemoteTest::SetUp();
    if (!testing::CephInstalled() &&
        std::getenv("THAW_REQUIRE_S3") == nullptr) {
      GTEST_SKIP() << "Ceph's radosgw is not installed (scripts/setup.sh "
                      "installs it); THAW_REQUIRE_S3=1 makes this a failure";
    }
    gw_ = servers->radosgw();
    ASSERT_NE(gw_, nullptr) << servers->s3_error();
  }
  OpenOptions S3Options(const std::string& cache = "cache") {
    OpenOptions options = Options(cache);
    options.remote.s3_endpoint = gw_->endpoint();
    options.remote.s3_region = "us-east-1";
    options.remote.access_key_id = gw_->access_key();
    options.remote.secret_access_key = gw_->secret_key();
    return options;
  }
  testing::Radosgw* gw_ = nullptr;
};

TEST_F(S3Test, PushRestoreWithEveryEngineAndPullThroughRadosgw) {
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  Call(*vm, "counter");
  Call(*vm, "counter");
  const std::string sum = Call(*vm, "table_sum");
  const std::string local = dir_ + "/fn.thaw";
  ASSERT_TRUE(vm->Snapshot(local).ok());
  const std::string url = "s3://snapshots/" + name_ + "/fn.thaw";
  const OpenOptions options = S3Options();
  ASSERT_TRUE(PushSnapshot(local, url, options.remote).ok());
  // The multipart path (every file over the threshold).
  RemoteOptions multipart = options.remote;
  multipart.s3_multipart_above = 0;
  const std::string url_mp = "s3://snapshots/" + name_ + "/multipart.thaw";
  absl::Status pushed = PushSnapshot(local, url_mp, multipart);
  ASSERT_TRUE(pushed.ok()) << pushed;
  for (const std::string& u : {url, url_mp}) {
    for (RestoreEngine engine :
         {RestoreEngine::kEager, RestoreEngine::kLazy,
          RestoreEngine::kLazyPrefetch, RestoreEngine::kSharedBase}) {
      auto snapshot =
          Snapshot::Open(u, S3Options(absl::StrCat("cache-", engine)));
      ASSERT_TRUE(snapshot.ok()) << u << ": " << snapshot.status();
      ExpectRestoresRight(*snapshot, engine, sum);
    }
  }
  const std::string pulled = dir_ + "/pulled.thaw";
  ASSERT_TRUE(PullSnapshot(url_mp, pulled, options.remote).ok());
  std::ifstream a(local, std::ios::binary), b(pulled, std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(a), {}),
            std::string(std::istreambuf_iterator<char>(b), {}));
  // Wrong credentials and a missing key.
  OpenOptions wrong = S3Options();
  wrong.remote.secret_access_key = "not-the-secret";
  auto denied = Snapshot::Open(url, wrong);
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied)
      << denied.status();
  auto missing = Snapshot::Open("s3://snapshots/absent.thaw", S3Options());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound)
      << missing.status();
  // Credentials from the AWS environment variables.
  setenv("AWS_ACCESS_KEY_ID", gw_->access_key().c_str(), 1);
  setenv("AWS_SECRET_ACCESS_KEY", gw_->secret_key().c_str(), 1);
  setenv("AWS_ENDPOINT_URL", gw_->endpoint().c_str(), 1);
  OpenOptions from_env = Options("env-cache");
  auto env = Snapshot::Open(url, from_env);
  EXPECT_TRUE(env.ok()) << env.status();
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  unsetenv("AWS_ENDPOINT_URL");
}

}  // namespace
}  // namespace thaw

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  thaw::servers = new thaw::Servers;
  ::testing::AddGlobalTestEnvironment(thaw::servers);
  return RUN_ALL_TESTS();
}
