// A Vm in a worker process (VmSettings::worker_process) as a user sees it:
// the same answers, host functions, faults, restores with every engine,
// snapshots and resets as an in-process Vm; a call outside the worker's
// allow-list kills the worker, not the host; and a worker killed during a
// call is a clear error while the host goes on.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/vm_internal.h"
#include "lib/worker/channel.h"
#include "lib/worker/worker.pb.h"
#include "lib/worker/worker_client.h"
#include "thaw/errors.h"
#include "thaw/signing.h"
#include "thaw/snapshot.h"
#include "thaw/vm.h"

namespace thaw {
namespace {

using ::testing::HasSubstr;

uint64_t AsU64(const std::string& reply) {
  uint64_t value = 0;
  if (reply.size() >= 8) std::memcpy(&value, reply.data(), 8);
  return value;
}

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("thaw_worker_", getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    unsetenv("THAW_WORKER_SELF_TEST");
    std::filesystem::remove_all(dir_);
  }
  std::string Path(const std::string& name) { return (dir_ / name).string(); }

  static VmConfig Config(bool worker) {
    VmConfig config;
    config.backend = BackendKind::kEmulated;
    config.memory_size = 32ull << 20;
    config.call_timeout = absl::Seconds(60);
    config.worker_process = worker;
    return config;
  }

  std::unique_ptr<Vm> Boot(const VmConfig& config, const char* guest) {
    auto vm = Vm::Create(config);
    EXPECT_TRUE(vm.ok()) << vm.status();
    if (!vm.ok()) return nullptr;
    absl::Status s = (*vm)->LoadGuest(guest);
    EXPECT_TRUE(s.ok()) << s;
    s = (*vm)->Boot();
    EXPECT_TRUE(s.ok()) << s;
    return *std::move(vm);
  }

  std::filesystem::path dir_;
};

TEST_F(WorkerTest, AWorkerVmAnswersAsAnInProcessOne) {
  auto vm = Boot(Config(/*worker=*/true), THAW_TEST_GUEST);
  ASSERT_NE(vm, nullptr);
  const pid_t worker = internal::VmAccess::WorkerPid(*vm);
  EXPECT_GT(worker, 0);
  EXPECT_NE(worker, getpid());
  EXPECT_EQ(vm->backend(), BackendKind::kEmulated);
  // Payloads both ways through the shared memory, up to the buffer size.
  std::string big(vm->config().input_buffer_size, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31);
  auto echo = vm->Call("echo", big);
  ASSERT_TRUE(echo.ok()) << echo.status();
  EXPECT_EQ(*echo, big);
  EXPECT_EQ(vm->Call("echo", big + "x").status().code(),
            absl::StatusCode::kInvalidArgument);
  // Host functions run here, called from the guest in the worker.
  std::atomic<pid_t> called_in{0};
  ASSERT_TRUE(
      vm->RegisterHostFunction(
            "lookup",
            [&](absl::string_view input) -> absl::StatusOr<std::string> {
              called_in = getpid();
              return absl::StrCat("host saw ", input);
            })
          .ok());
  auto host = vm->Call("call_host", "lookup");
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_EQ(*host, "host saw ping");
  EXPECT_EQ(called_in.load(), getpid());
  ASSERT_TRUE(vm->Call("print", "to the console\n").ok());
  EXPECT_THAT(vm->console(), HasSubstr("to the console"));
  EXPECT_EQ(vm->report().calls, 3u);  // the oversized echo never reached it
  // A function's error and a guest fault, as an in-process Vm reports them.
  auto fail = vm->Call("fail", "");
  EXPECT_EQ(fail.status().code(), absl::StatusCode::kAborted) << fail.status();
  EXPECT_THAT(fail.status().message(), HasSubstr("the function said no"));
  auto fault = vm->Call("null_deref", "");
  ASSERT_EQ(fault.status().code(), absl::StatusCode::kAborted);
  std::optional<GuestFault> info = GetGuestFault(fault.status());
  ASSERT_TRUE(info.has_value()) << fault.status();
  EXPECT_EQ(info->vector, 14u);
  EXPECT_FALSE(vm->failure().ok());
  EXPECT_EQ(vm->Call("echo", "x").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(WorkerTest, RestoresSnapshotsAndResetsInTheWorkerWithEveryEngine) {
  auto booted = Boot(Config(/*worker=*/false), THAW_SNAPSHOT_GUEST);
  ASSERT_NE(booted, nullptr);
  ASSERT_TRUE(booted->Call("counter", "").ok());
  auto key = SigningKey::Generate();
  ASSERT_TRUE(key.ok());
  SnapshotOptions signing;
  signing.signing_key = *key;
  ASSERT_TRUE(booted->Snapshot(Path("fn.thaw"), signing).ok());
  const std::string sum = *booted->Call("table_sum", "");
  for (RestoreEngine engine : kRestoreEngines) {
    SCOPED_TRACE(RestoreEngineName(engine));
    RestoreOptions options;
    options.backend = BackendKind::kEmulated;
    options.engine = engine;
    options.worker_process = true;
    options.verify_key = key->verify_key();
    auto vm = Vm::Restore(Path("fn.thaw"), options);
    ASSERT_TRUE(vm.ok()) << vm.status();
    EXPECT_GT(internal::VmAccess::WorkerPid(**vm), 0);
    EXPECT_EQ(AsU64(*(*vm)->Call("counter", "")), 2u);
    EXPECT_EQ(*(*vm)->Call("table_sum", ""), sum);
    EXPECT_EQ((*vm)->restore_stats().engine, engine);
    if (engine == RestoreEngine::kSharedBase) {
      ASSERT_TRUE((*vm)->Reset().ok());
      EXPECT_EQ(AsU64(*(*vm)->Call("counter", "")), 2u);
    }
    // A snapshot written by the worker, put in place by the host.
    const std::string out =
        Path(absl::StrCat("from-worker-", static_cast<int>(engine), ".thaw"));
    ASSERT_TRUE((*vm)->Snapshot(out).ok());
    RestoreOptions here;
    here.backend = BackendKind::kEmulated;
    auto again = Vm::Restore(out, here);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(AsU64(*(*again)->Call("counter", "")),
              engine == RestoreEngine::kSharedBase ? 3u : 3u);
  }
  // A signed diff chain, written and restored in workers: the host checks
  // the parent and signs; the worker gets every link's descriptor.
  {
    RestoreOptions options;
    options.backend = BackendKind::kEmulated;
    options.worker_process = true;
    options.verify_key = key->verify_key();
    auto vm = Vm::Restore(Path("fn.thaw"), options);
    ASSERT_TRUE(vm.ok()) << vm.status();
    EXPECT_EQ(AsU64(*(*vm)->Call("counter", "")), 2u);
    SnapshotOptions diff = signing;
    diff.parent = Path("fn.thaw");
    ASSERT_TRUE((*vm)->Snapshot(Path("diff.thaw"), diff).ok());
    SnapshotOptions wrong = diff;
    wrong.parent = Path("from-worker-0.thaw");  // not its parent
    EXPECT_EQ((*vm)->Snapshot(Path("diff2.thaw"), wrong).code(),
              absl::StatusCode::kFailedPrecondition);
    for (RestoreEngine engine : kRestoreEngines) {
      SCOPED_TRACE(RestoreEngineName(engine));
      options.engine = engine;
      auto child = Vm::Restore(Path("diff.thaw"), options);
      ASSERT_TRUE(child.ok()) << child.status();
      EXPECT_EQ(AsU64(*(*child)->Call("counter", "")), 3u);
      EXPECT_EQ(*(*child)->Call("table_sum", ""), sum);
    }
    auto info = InspectSnapshot(Path("diff.thaw"));
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->parent_path, "fn.thaw");
    EXPECT_GT(info->parent_chunks, 0u);
  }
  VmConfig kvm = Config(true);
  kvm.backend = BackendKind::kKvm;
  EXPECT_EQ(Vm::Create(kvm).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// The key never enters the worker: the host signs what the worker wrote,
// and rewrites the restored file with the working set the worker recorded.
TEST_F(WorkerTest, SnapshotsAreSignedAndWorkingSetsRecordedByTheHost) {
  auto key = SigningKey::Generate();
  ASSERT_TRUE(key.ok());
  auto other = SigningKey::Generate();
  ASSERT_TRUE(other.ok());
  auto vm = Boot(Config(/*worker=*/true), THAW_SNAPSHOT_GUEST);
  ASSERT_NE(vm, nullptr);
  ASSERT_TRUE(vm->Call("counter", "").ok());
  SnapshotOptions signing;
  signing.signing_key = *key;
  const std::string path = Path("signed-in-worker.thaw");
  ASSERT_TRUE(vm->Snapshot(path, signing).ok());
  EXPECT_TRUE(Snapshot::Open(path, key->verify_key()).ok());
  auto refused = Snapshot::Open(path, other->verify_key());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  // No temporary file is left beside it.
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 1);

  RestoreOptions record;
  record.backend = BackendKind::kEmulated;
  record.engine = RestoreEngine::kLazy;
  record.record_working_set = true;
  record.worker_process = true;
  record.verify_key = key->verify_key();
  auto recorder = Vm::Restore(path, record);
  ASSERT_TRUE(recorder.ok()) << recorder.status();
  EXPECT_EQ((*recorder)->WriteWorkingSet().code(),
            absl::StatusCode::kFailedPrecondition);  // nothing recorded yet
  EXPECT_EQ(AsU64(*(*recorder)->Call("counter", "")), 2u);
  // The file is signed: the rewrite needs the key (here, in the host).
  EXPECT_EQ((*recorder)->WriteWorkingSet().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*recorder)->WriteWorkingSet(*key).ok());
  auto info = InspectSnapshot(path);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_GT(info->working_set_chunks, 0u);
  RestoreOptions prefetch;
  prefetch.backend = BackendKind::kEmulated;
  prefetch.worker_process = true;
  prefetch.verify_key = key->verify_key();
  auto fast = Vm::Restore(path, prefetch);
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_EQ(AsU64(*(*fast)->Call("counter", "")), 2u);
  EXPECT_GT((*fast)->restore_stats().mapped, 0u);
}

// This process's children that are thaw-worker processes.
std::vector<pid_t> WorkerChildren() {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    // pid (comm) state ppid ...
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    const std::string comm =
        line.substr(line.find('(') + 1, close - line.find('(') - 1);
    char state = 0;
    int ppid = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) != 2) {
      continue;
    }
    if (ppid == getpid() && comm == "thaw-worker" && state != 'Z') {
      out.push_back(std::stoi(name));
    }
  }
  return out;
}

TEST_F(WorkerTest, TheNextWorkerIsStartedAheadAndHandedOut) {
  auto first = Boot(Config(/*worker=*/true), THAW_TEST_GUEST);
  ASSERT_NE(first, nullptr);
  const pid_t in_use = internal::VmAccess::WorkerPid(*first);
  // A spare starts in the background after a worker is handed out.
  pid_t spare = -1;
  for (int i = 0; i < 500 && spare < 0; ++i) {
    for (pid_t pid : WorkerChildren()) {
      if (pid != in_use) spare = pid;
    }
    if (spare < 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_GT(spare, 0) << "no spare worker started";
  // Give it time to be ready; the next Vm gets that very process.
  auto second = Boot(Config(/*worker=*/true), THAW_TEST_GUEST);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(internal::VmAccess::WorkerPid(*second), spare);
  ASSERT_TRUE(second->Call("print", "from the spare\n").ok());
  EXPECT_THAT(second->console(), HasSubstr("from the spare"));
}

TEST_F(WorkerTest, ConsoleSinkAndSyscallTracesComeFromTheWorker) {
  VmConfig config = Config(/*worker=*/true);
  std::string streamed;
  config.console_sink = [&](absl::string_view text) {
    streamed.append(text.data(), text.size());
  };
  auto vm = Boot(config, THAW_TEST_GUEST);
  ASSERT_NE(vm, nullptr);
  ASSERT_TRUE(vm->Call("print", "streamed out of the worker\n").ok());
  EXPECT_THAT(streamed, HasSubstr("streamed out of the worker\n"));
  EXPECT_EQ(streamed, vm->console());

  // A Linux program in a worker, strace-style: its files come through the
  // host (the worker itself can open none).
  std::filesystem::create_directories(dir_ / "files");
  std::ofstream(dir_ / "files" / "note.txt") << "brokered";
  VmConfig program = Config(/*worker=*/true);
  program.guest_kind = GuestKind::kLinuxProgram;
  program.memory_size = 64ull << 20;
  program.trace_syscalls = true;
  auto p = Vm::Create(program);
  ASSERT_TRUE(p.ok()) << p.status();
  ProgramOptions options;
  options.files = {{(dir_ / "files").string(), "/files"}};
  ASSERT_TRUE((*p)->LoadProgram(THAW_TEST_PROGRAM, options).ok());
  ASSERT_TRUE((*p)->Boot().ok()) << (*p)->console();
  auto reply = (*p)->Call("cat", "/files/note.txt");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, "brokered");
  EXPECT_THAT((*p)->console(), HasSubstr("[syscall] open"));
  EXPECT_GT((*p)->program_stats().syscalls, 0u);
}

TEST_F(WorkerTest, CodeInTheWorkerCannotOpenHostFilesSocketsOrProcesses) {
  // The worker, asked to, tries what compromised code in it would, after
  // its confinement, and reports what it got.
  setenv("THAW_WORKER_SELF_TEST", "1", 1);
  auto vm = Boot(Config(/*worker=*/true), THAW_TEST_GUEST);
  unsetenv("THAW_WORKER_SELF_TEST");
  ASSERT_NE(vm, nullptr);
  const std::string found = internal::VmAccess::WorkerSelfTest(*vm);
  EXPECT_THAT(found, HasSubstr("open /etc/hostname: Operation not permitted"));
  EXPECT_THAT(found,
              HasSubstr("open /proc/self/status: Operation not permitted"));
  EXPECT_THAT(found, HasSubstr("socket: Operation not permitted"));
  EXPECT_THAT(found, HasSubstr("unix socket: Operation not permitted"));
  EXPECT_THAT(found, HasSubstr("fork: Operation not permitted"));
  EXPECT_THAT(found, HasSubstr("namespaces: "));
  if (geteuid() == 0) {
    // Root may make namespaces; the worker's root is then empty.
    EXPECT_THAT(found, HasSubstr("root: an empty read-only tmpfs")) << found;
  }
  // And its Vm works under the confinement.
  auto reply = vm->Call("echo", "confined");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, "confined");
  // This process is not confined by any of it.
  int fd = open("/etc/hostname", O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0);
  if (fd >= 0) close(fd);
}

// A worker that has been taken over, played by a thread: nothing it says
// crashes the host, gets it a file outside the view, or hangs the caller.
class TakenOverWorkerTest : public WorkerTest {
 protected:
  using Script = std::function<void(worker::Channel&)>;
  // A client whose worker is `script`, on a thread.
  std::unique_ptr<internal::WorkerClient> Adopt(Script script) {
    int sockets[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets), 0);
    player_ = std::thread([fd = sockets[1], script] {
      worker::Channel channel(fd);
      script(channel);
    });
    std::filesystem::create_directories(dir_ / "view");
    std::ofstream(dir_ / "view" / "inside.txt") << "inside";
    VmConfig config = Config(/*worker=*/true);
    config.input_buffer_size = config.output_buffer_size = 4096;
    config.call_timeout = absl::Milliseconds(100);
    auto client = internal::WorkerClient::AdoptForTesting(
        sockets[0], config, {{(dir_ / "view").string(), "/data"}},
        /*slack=*/absl::Milliseconds(400));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }
  void TearDown() override {
    if (player_.joinable()) player_.join();
    WorkerTest::TearDown();
  }
  std::thread player_;
};

TEST_F(TakenOverWorkerTest, AReplyLargerThanThePayloadMemoryCutsItOff) {
  auto client = Adopt([](worker::Channel& channel) {
    worker::proto::Request request;
    if (!channel.Receive(request).ok()) return;
    worker::proto::Response lie;
    lie.set_reply_size(1ull << 40);
    (void)channel.Send(lie);
    (void)channel.Receive(request);  // until the host hangs up
  });
  ASSERT_NE(client, nullptr);
  auto reply = client->Call("f", "in");
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(reply.status().message(), HasSubstr("larger than the payload"));
  EXPECT_EQ(client->Call("f", "in").status().code(),
            absl::StatusCode::kFailedPrecondition);
  client.reset();
}

TEST_F(TakenOverWorkerTest, FileRequestsGetOnlyWhatTheViewHolds) {
  std::vector<std::string> seen;  // per request: error, or the bytes read
  auto client = Adopt([&seen](worker::Channel& channel) {
    worker::proto::Request request;
    if (!channel.Receive(request).ok()) return;
    for (const char* path : {"/data/inside.txt", "/data/../../../etc/hostname",
                             "/etc/hostname", "/proc/self/root/etc/hostname"}) {
      worker::proto::Response ask;
      ask.mutable_file_request()->set_cwd("/");
      ask.mutable_file_request()->set_path(path);
      ask.mutable_file_request()->set_flags(O_RDWR | O_CREAT);  // ignored
      ask.mutable_file_request()->set_follow_last(true);
      (void)channel.Send(ask);
      std::vector<int> fds;
      if (!channel.Receive(request, &fds).ok()) return;
      std::string got = absl::StrCat("error ", request.file_reply().error());
      if (fds.size() == 1) {
        char buf[64] = {};
        got = std::string(buf, std::max<ssize_t>(0, read(fds[0], buf, 64)));
        // Read-only whatever was asked for.
        got += write(fds[0], "x", 1) < 0 ? " (read-only)" : " (WRITABLE)";
      }
      for (int fd : fds) close(fd);
      seen.push_back(got);
    }
    worker::proto::Response done;
    (void)channel.Send(done);
    (void)channel.Receive(request);
  });
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(client->Call("f", "in").ok());
  client.reset();
  player_.join();
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0], "inside (read-only)");
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_THAT(seen[i], ::testing::StartsWith("error ")) << i;
  }
}

TEST_F(TakenOverWorkerTest, ASilentWorkerIsCutOffAfterItsCallTimeout) {
  auto client = Adopt([](worker::Channel& channel) {
    worker::proto::Request request;
    if (!channel.Receive(request).ok()) return;
    // Half a message, then nothing: the host must not wait forever.
    (void)send(channel.fd(), "\x10\x00", 2, MSG_NOSIGNAL);
    (void)channel.Receive(request);  // until the host hangs up
  });
  ASSERT_NE(client, nullptr);
  const absl::Time start = absl::Now();
  auto reply = client->Call("f", "in");
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(reply.status().message(), HasSubstr("did not answer within"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  client.reset();
}

TEST_F(TakenOverWorkerTest, AHugeAnnouncedMessageThatNeverComesIsAnError) {
  auto client = Adopt([](worker::Channel& channel) {
    worker::proto::Request request;
    if (!channel.Receive(request).ok()) return;
    uint8_t length[8] = {0, 0, 0, 0x40, 0, 0, 0, 0};  // 1 GiB
    (void)send(channel.fd(), length, sizeof(length), MSG_NOSIGNAL);
    (void)send(channel.fd(), "abc", 3, MSG_NOSIGNAL);
    // Hangs up (the Channel closes).
  });
  ASSERT_NE(client, nullptr);
  auto reply = client->Call("f", "in");
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable);
  client.reset();
}

TEST_F(WorkerTest, AWorkerKilledDuringACallIsAClearErrorAndTheHostGoesOn) {
  auto vm = Boot(Config(/*worker=*/true), THAW_TEST_GUEST);
  ASSERT_NE(vm, nullptr);
  const pid_t worker = internal::VmAccess::WorkerPid(*vm);
  absl::Status status;
  std::thread caller([&] { status = vm->Call("spin", "0").status(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(kill(worker, SIGKILL), 0);
  caller.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(status.message(), HasSubstr("signal 9"));
  auto next = vm->Call("echo", "x");
  EXPECT_EQ(next.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(next.status().message(), HasSubstr("failed earlier"));
  // Another Vm, in this process, is unaffected.
  auto here = Boot(Config(/*worker=*/false), THAW_TEST_GUEST);
  ASSERT_NE(here, nullptr);
  EXPECT_TRUE(here->Call("echo", "fine").ok());
}

}  // namespace
}  // namespace thaw
