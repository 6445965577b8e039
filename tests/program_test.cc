// Linux program guests: a static musl program loaded with Vm::LoadProgram,
// booted until it first reads its request channel, and called through it
// (include/thaw/program.h). One body per backend (KVM inside QEMU in CI).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/vm_internal.h"
#include "tests/backend_param.h"
#include "thaw/errors.h"
#include "thaw/vm.h"

namespace thaw {
namespace {

using ::testing::HasSubstr;

class ProgramTest : public testing::BackendTest {
 protected:
  VmConfig ProgramConfig() {
    VmConfig config;
    config.guest_kind = GuestKind::kLinuxProgram;
    config.backend = GetParam();
    config.memory_size = 64ull << 20;
    config.call_timeout = absl::Seconds(20);  // sanitizer builds are slow
    testing::UseWorkerWhereAsked(config);
    return config;
  }
  std::unique_ptr<Vm> BootProgram() { return BootProgram(ProgramConfig()); }
  std::unique_ptr<Vm> BootProgram(
      const VmConfig& config, const ProgramOptions& options = {},
      const std::string& program = THAW_TEST_PROGRAM);
};

std::unique_ptr<Vm> ProgramTest::BootProgram(const VmConfig& config,
                                             const ProgramOptions& options,
                                             const std::string& program) {
  auto vm = Vm::Create(config);
  EXPECT_TRUE(vm.ok()) << vm.status();
  if (!vm.ok()) return nullptr;
  EXPECT_EQ(internal::VmAccess::WorkerPid(**vm) > 0, config.worker_process);
  absl::Status s = (*vm)->LoadProgram(program, options);
  EXPECT_TRUE(s.ok()) << s;
  s = (*vm)->Boot();
  EXPECT_TRUE(s.ok()) << s << "\nconsole:\n" << (*vm)->console();
  return s.ok() ? *std::move(vm) : nullptr;
}

std::string Call(Vm& vm, const std::string& function,
                 const std::string& input = "") {
  auto reply = vm.Call(function, input);
  EXPECT_TRUE(reply.ok()) << function << ": " << reply.status();
  return reply.ok() ? *reply : "";
}

TEST_P(ProgramTest, BootsToItsFirstRequestAndServesCalls) {
  auto vm = BootProgram();
  ASSERT_NE(vm, nullptr);
  // Init ran (its stdout is the console) and parked in the first read.
  EXPECT_THAT(vm->console(), HasSubstr("init: 1 args"));
  EXPECT_EQ(Call(*vm, "echo", "hello"), "hello");
  EXPECT_EQ(Call(*vm, "echo", std::string(100000, 'x')),
            std::string(100000, 'x'));
  EXPECT_EQ(Call(*vm, "echo", ""), "");
  // State survives between calls: the program counts them.
  EXPECT_EQ(Call(*vm, "calls"), "4");
  EXPECT_EQ(vm->report().calls, 4u);
}

TEST_P(ProgramTest, ArgvEnvAndAuxvAreWhatTheProgramExpects) {
  ProgramOptions options;
  options.args = {"server", "--flag", "two words"};
  options.env = {"GREETING=hi there", "EMPTY="};
  auto vm = BootProgram(ProgramConfig(), options);
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(Call(*vm, "argv"), "server\n--flag\ntwo words\n");
  EXPECT_EQ(Call(*vm, "env", "GREETING"), "hi there");
  EXPECT_EQ(Call(*vm, "env", "EMPTY"), "");
  EXPECT_EQ(Call(*vm, "env", "HOME"), "(unset)");
  EXPECT_EQ(Call(*vm, "auxv"),
            "pagesz=4096 phent=56 phnum_ok=1 entry_ok=1 random=1 secure=0 "
            "clktck=100");
  // Without arguments argv[0] is the program's path.
  auto plain = BootProgram();
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(Call(*plain, "argv"), std::string(THAW_TEST_PROGRAM) + "\n");
}

TEST_P(ProgramTest, MemoryFromMmapAndMallocWorksAndComesBackZeroed) {
  auto vm = BootProgram();
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(Call(*vm, "memory"), "same=1 nonzero=0 heap=1");
  EXPECT_EQ(Call(*vm, "memory"), "same=1 nonzero=0 heap=1");
}

TEST_P(ProgramTest, RunningOutOfMemoryIsENOMEMForTheProgram) {
  auto vm = BootProgram();
  ASSERT_NE(vm, nullptr);
  const std::string reply = Call(*vm, "exhaust");
  // 64 MiB of guest memory: thaw's 2 MiB, the image, a 1 MiB stack and the
  // heap's margin leave a little under 60 blocks of 1 MiB.
  std::vector<std::string> words = absl::StrSplit(reply, ' ');
  ASSERT_EQ(words.size(), 4u) << reply;
  int blocks = 0;
  ASSERT_TRUE(absl::SimpleAtoi(words[2], &blocks)) << reply;
  EXPECT_GT(blocks, 40);
  EXPECT_LT(blocks, 64);
  // The program is still fine.
  EXPECT_EQ(Call(*vm, "echo", "after"), "after");
}

TEST_P(ProgramTest, UnsupportedCallsAnswerAndAreCounted) {
  auto vm = BootProgram();
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(Call(*vm, "enosys"), "rc=-1 errno=38");  // ENOSYS
  EXPECT_EQ(Call(*vm, "enosys"), "rc=-1 errno=38");
  EXPECT_EQ(Call(*vm, "unsupported"), "fork=-1:38 socket=-1:13");  // EACCES
  EXPECT_EQ(Call(*vm, "getpid"), "1");
  // Counted by name: musl's fork is a clone; socket's EACCES is an answer.
  const ProgramStats stats = vm->program_stats();
  EXPECT_EQ(stats.unsupported.at("syscall_999"), 2u);
  EXPECT_EQ(stats.unsupported.count("fork") + stats.unsupported.count("clone"),
            1u);
  EXPECT_EQ(stats.unsupported.count("socket"), 0u);
  EXPECT_GT(stats.syscalls, 10u);
}

TEST_P(ProgramTest, WildPointersAreEFAULTNeverHostMemory) {
  auto vm = BootProgram();
  ASSERT_NE(vm, nullptr);
  // Into thaw's page tables, and past the end of guest memory.
  EXPECT_EQ(Call(*vm, "efault"), "-1:14 -1:14");
}

TEST_P(ProgramTest, AUserModeFaultIsAGuestFaultNamingTheAddress) {
  for (const char* function : {"fault", "null"}) {
    SCOPED_TRACE(function);
    auto vm = BootProgram();
    ASSERT_NE(vm, nullptr);
    auto reply = vm->Call(function, "");
    ASSERT_FALSE(reply.ok());
    auto fault = GetGuestFault(reply.status());
    ASSERT_TRUE(fault.has_value()) << reply.status();
    EXPECT_EQ(fault->vector, 14u) << reply.status();  // #PF
    EXPECT_EQ(fault->cr2, std::string(function) == "fault" ? 0x9000u : 0u);
    EXPECT_GE(fault->rip, 0x400000u);  // in the program, not in thaw
    EXPECT_EQ(vm->Call("echo", "x").status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
}

TEST_P(ProgramTest, ExitStatusTimeoutAndProtocolErrorsAreClear) {
  auto vm = BootProgram();
  ASSERT_NE(vm, nullptr);
  auto exited = vm->Call("exit", "7");
  EXPECT_EQ(exited.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(exited.status().message(), HasSubstr("exited with status 7"));

  VmConfig quick = ProgramConfig();
  quick.call_timeout = absl::Milliseconds(300);
  auto spinner = BootProgram(quick);
  ASSERT_NE(spinner, nullptr);
  EXPECT_EQ(spinner->Call("spin", "").status().code(),
            absl::StatusCode::kDeadlineExceeded);

  auto other = BootProgram();
  ASSERT_NE(other, nullptr);
  auto missing = other->Call("nope", "");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  auto failed = other->Call("fail", "");
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(failed.status().message(), HasSubstr("the function said no"));
  auto torn = other->Call("torn", "");
  EXPECT_EQ(torn.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(torn.status().message(), HasSubstr("not a whole reply"));
  // Each of those left the program parked at a clean point.
  EXPECT_EQ(Call(*other, "echo", "still here"), "still here");
}

// The host's glibc, from a file view: /lib64 (where PT_INTERP points) and
// the library directory are the same host folder mounted twice.
ProgramOptions GlibcView() {
  ProgramOptions options;
  options.files = {{"/usr/lib/x86_64-linux-gnu", "/lib64"},
                   {"/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"}};
  return options;
}

TEST_P(ProgramTest, ADynamicGlibcProgramRunsThroughItsInterpreter) {
  auto vm = Vm::Create(ProgramConfig());
  ASSERT_TRUE(vm.ok());
  ASSERT_TRUE((*vm)->LoadProgram(THAW_DYNAMIC_PROGRAM, GlibcView()).ok());
  absl::Status boot = (*vm)->Boot();
  ASSERT_TRUE(boot.ok()) << boot << "\n" << (*vm)->console();
  EXPECT_EQ(Call(**vm, "echo", "through ld.so"), "through ld.so");
  EXPECT_EQ(Call(**vm, "memory"), "same=1 nonzero=0 heap=1");
  EXPECT_THAT(Call(**vm, "auxv"), HasSubstr("random=1"));
}

// A folder of the test's own, mounted at /data, with the tricks a program
// could try to leave its view.
class FileViewTest : public ProgramTest {
 protected:
  void SetUp() override {
    ProgramTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("thaw_view_", getpid(), "_",
                        testing::BackendSuffix(GetParam()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "sub");
    std::ofstream(dir_ / "data.txt") << "inside the view";
    std::ofstream(dir_ / "sub" / "deep.txt") << "deeper";
    std::filesystem::create_symlink("data.txt", dir_ / "inside");
    std::filesystem::create_symlink("sub/../data.txt", dir_ / "winding");
    std::filesystem::create_symlink("../../../../etc/hostname", dir_ / "up");
    std::filesystem::create_symlink("/etc/hostname", dir_ / "absolute");
    std::filesystem::create_symlink("/data/data.txt", dir_ / "rooted");
    std::filesystem::create_symlink("loop", dir_ / "loop");
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
};

TEST_P(FileViewTest, AllowedFilesAreReadableAndEscapesAreRefused) {
  ProgramOptions options;
  options.files = {{dir_.string(), "/data"}};
  options.cwd = "/data/sub";
  auto vm = BootProgram(ProgramConfig(), options);
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(Call(*vm, "cat", "/data/data.txt"), "inside the view");
  EXPECT_EQ(Call(*vm, "cat", "deep.txt"), "deeper");  // cwd
  EXPECT_EQ(Call(*vm, "cat", "../data.txt"), "inside the view");
  EXPECT_EQ(Call(*vm, "cat", "/data/inside"), "inside the view");
  EXPECT_EQ(Call(*vm, "cat", "/data/winding"), "inside the view");
  EXPECT_EQ(Call(*vm, "cat", "/data/rooted"), "inside the view");
  // ".." stops at the guest's root, which holds only /data.
  EXPECT_EQ(Call(*vm, "cat", "/data/../../../etc/hostname"), "error 2");
  // A relative symlink climbing out lands above /data, where nothing is.
  EXPECT_EQ(Call(*vm, "cat", "/data/up"), "error 2");
  // An absolute symlink resolves in the program's namespace, not the host's.
  EXPECT_EQ(Call(*vm, "cat", "/data/absolute"), "error 2");
  EXPECT_EQ(Call(*vm, "cat", "/data/loop"), "error 40");  // ELOOP
  EXPECT_EQ(Call(*vm, "cat", "/proc/self/root/etc/hostname"), "error 2");
  EXPECT_EQ(Call(*vm, "cat", "/etc/hostname"), "error 2");
  EXPECT_EQ(Call(*vm, "cat", std::string(5000, 'a')), "error 36");  // long
  // Nothing can be written.
  EXPECT_EQ(Call(*vm, "write_file", "/data/new.txt"), "-1:30");  // EROFS
  // The loop and the climbs out were refused; escapes are counted.
  EXPECT_GT(vm->program_stats().path_escapes, 0u);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "new.txt"));
}

THAW_INSTANTIATE_BACKEND_TESTS(FileViewTest);

// Debian's python3 with the function's folder and the guest module mounted.
ProgramOptions PythonFunction() {
  ProgramOptions options;
  options.files = {{"/usr", "/usr"},
                   {"/usr/lib/x86_64-linux-gnu", "/lib64"},
                   {"/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"},
                   {THAW_PROGRAMS_DIR, "/app"},
                   {THAW_GUEST_PYTHON_DIR, "/thaw"}};
  options.args = {THAW_PYTHON, "/app/function.py"};
  options.env = {"PYTHONPATH=/thaw", "PYTHONDONTWRITEBYTECODE=1",
                 "PYTHONHASHSEED=0"};
  return options;
}

TEST_P(ProgramTest, APythonFunctionServesCalls) {
  VmConfig config = ProgramConfig();
  config.memory_size = 256ull << 20;
  config.call_timeout = absl::Seconds(120);
  auto vm = BootProgram(config, PythonFunction(), THAW_PYTHON);
  ASSERT_NE(vm, nullptr);
  EXPECT_THAT(vm->console(), HasSubstr("python init done"));
  const std::string reply = Call(*vm, "handle", "a 12 b 30");
  EXPECT_THAT(reply, ::testing::StartsWith(
                         "{\"words\": 4, \"sum\": \"42\", \"sha\": \""));
  EXPECT_EQ(reply.size(), 52u) << reply;
  auto failed = vm->Call("fail", "x");
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(failed.status().message(), HasSubstr("ValueError: bad input"));
  EXPECT_EQ(vm->Call("nope", "").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Call(*vm, "urandom").size(), 16u);
}

TEST_P(ProgramTest, ALuaFunctionServesCalls) {
  ProgramOptions options;
  options.files = {{"/usr", "/usr"},
                   {"/usr/lib/x86_64-linux-gnu", "/lib64"},
                   {"/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"},
                   {THAW_PROGRAMS_DIR, "/app"},
                   {THAW_GUEST_LUA_DIR, "/thaw"}};
  options.args = {THAW_LUA, "/app/function.lua"};
  options.env = {"LUA_PATH=/thaw/?.lua"};
  auto vm = BootProgram(ProgramConfig(), options, THAW_LUA);
  ASSERT_NE(vm, nullptr);
  EXPECT_THAT(vm->console(), HasSubstr("lua init done"));
  EXPECT_EQ(Call(*vm, "greet", "thaw"), "hello from lua, thaw");
  EXPECT_EQ(Call(*vm, "sum", "1 2 39"), "42");
  auto failed = vm->Call("fail", "");
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(failed.status().message(), HasSubstr("lua says no"));
  EXPECT_EQ(vm->Call("nope", "").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(ProgramTest, TmpIsWritableAndLivesInGuestMemory) {
  auto vm = BootProgram();
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(Call(*vm, "tmp_read"), "");  // nothing yet
  EXPECT_EQ(Call(*vm, "tmp_write", "hello "), "6:0");
  EXPECT_EQ(Call(*vm, "tmp_write", std::string(20000, 'z')), "20000:0");
  const std::string read = Call(*vm, "tmp_read");
  EXPECT_TRUE(read == "hello " + std::string(20000, 'z') + "|x.txt")
      << read.size() << " bytes: " << read.substr(0, 40) << "...";
  EXPECT_EQ(Call(*vm, "tmp_rm"), "0 0");
  EXPECT_EQ(Call(*vm, "tmp_read"), "");
  // Only /tmp is writable.
  EXPECT_EQ(Call(*vm, "write_file", "/etc/new"), "-1:30");  // EROFS
}

TEST_P(ProgramTest, TwoProgramsSeeDifferentRandomness) {
  auto a = BootProgram();
  auto b = BootProgram();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const std::string ra = Call(*a, "random");
  EXPECT_EQ(ra.size(), 32u);
  EXPECT_NE(ra, Call(*b, "random"));
  EXPECT_NE(ra, Call(*a, "random"));
}

TEST_P(ProgramTest, KindsAndWhatIsNotSupportedYetAreClearErrors) {
  auto vm = Vm::Create(ProgramConfig());
  ASSERT_TRUE(vm.ok());
  EXPECT_EQ((*vm)->LoadGuest(THAW_TEST_GUEST).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*vm)->LoadProgram("/no/such/program").code(),
            absl::StatusCode::kNotFound);
  // A dynamically linked program without a file view holding its
  // interpreter is refused, naming what it needs.
  absl::Status dynamic = (*vm)->LoadProgram(THAW_DYNAMIC_PROGRAM);
  EXPECT_EQ(dynamic.code(), absl::StatusCode::kFailedPrecondition) << dynamic;
  EXPECT_THAT(dynamic.message(),
              HasSubstr("interpreter /lib64/ld-linux-x86-64.so.2"));
  // A function-guest Vm refuses programs.
  VmConfig function_config;
  function_config.backend = GetParam();
  auto function_vm = Vm::Create(function_config);
  ASSERT_TRUE(function_vm.ok());
  EXPECT_EQ((*function_vm)->LoadProgram(THAW_TEST_PROGRAM).code(),
            absl::StatusCode::kFailedPrecondition);
  // Too little memory for a program.
  VmConfig small = ProgramConfig();
  small.memory_size = 4ull << 20;
  EXPECT_EQ(Vm::Create(small).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Snapshots of program guests: per (backend, engine).
class ProgramSnapshotTest
    : public ::testing::TestWithParam<std::tuple<BackendKind, RestoreEngine>> {
 protected:
  void SetUp() override {
    testing::RequireBackend(std::get<0>(GetParam()));
    if (IsSkipped() || HasFatalFailure()) return;
    dir_ =
        std::filesystem::path(::testing::TempDir()) /
        absl::StrCat("thaw_psnap_", getpid(), "_", RestoreEngineName(engine()),
                     testing::BackendSuffix(backend()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "files");
    std::ofstream(dir_ / "files" / "held.txt") << "held open";
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  BackendKind backend() const { return std::get<0>(GetParam()); }
  RestoreEngine engine() const { return std::get<1>(GetParam()); }
  RestoreOptions Options() const {
    RestoreOptions options;
    options.backend = backend();
    options.engine = engine();
    options.call_timeout = absl::Seconds(20);
    testing::UseWorkerWhereAsked(options);
    return options;
  }
  std::unique_ptr<Vm> Boot() {
    VmConfig config;
    config.guest_kind = GuestKind::kLinuxProgram;
    config.backend = backend();
    config.memory_size = 64ull << 20;
    config.call_timeout = absl::Seconds(20);
    testing::UseWorkerWhereAsked(config);
    auto vm = Vm::Create(config);
    EXPECT_TRUE(vm.ok()) << vm.status();
    if (!vm.ok()) return nullptr;
    ProgramOptions options;
    options.files = {{(dir_ / "files").string(), "/files"}};
    options.args = {"server", "--snapshot"};
    EXPECT_TRUE((*vm)->LoadProgram(THAW_TEST_PROGRAM, options).ok());
    absl::Status s = (*vm)->Boot();
    EXPECT_TRUE(s.ok()) << s;
    return s.ok() ? *std::move(vm) : nullptr;
  }
  std::filesystem::path dir_;
};

TEST_P(ProgramSnapshotTest, ARestoredProgramGoesOnWhereItWasSnapshotted) {
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(Call(*vm, "calls"), "1");
  EXPECT_EQ(Call(*vm, "hold", "/files/held.txt"), "4");
  const std::string path = (dir_ / "p.thaw").string();
  ASSERT_TRUE(vm->Snapshot(path).ok());
  auto info = InspectSnapshot(path);
  ASSERT_TRUE(info.ok());
  // The original goes on; so does each clone, from the snapshot's state.
  EXPECT_EQ(Call(*vm, "calls"), "4");  // 2 calls + the before-snapshot hook
  auto a = Vm::Restore(path, Options());
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = Vm::Restore(path, Options());
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(internal::VmAccess::WorkerPid(**a) > 0, Options().worker_process);
  EXPECT_EQ(Call(**a, "calls"), "4");
  EXPECT_EQ(Call(**a, "argv"), "server\n--snapshot\n");
  EXPECT_EQ(Call(**a, "echo", "restored"), "restored");
  EXPECT_EQ(Call(**a, "cat", "/files/held.txt"), "held open");
  EXPECT_EQ(Call(**a, "memory"), "same=1 nonzero=0 heap=1");
  EXPECT_NE(Call(**a, "random"), Call(**b, "random"));
  EXPECT_EQ((*a)->backend(), backend());
  if (engine() == RestoreEngine::kSharedBase) {
    // Reset: the program's memory and its descriptors go back.
    EXPECT_EQ(Call(**b, "calls"), "5");
    ASSERT_TRUE((*b)->Reset().ok());
    EXPECT_EQ(Call(**b, "calls"), "4");
    EXPECT_EQ(Call(**b, "cat", "/files/held.txt"), "held open");
  }
}

TEST_P(ProgramSnapshotTest, TmpFilesAreInTheSnapshotAndReset) {
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(Call(*vm, "tmp_write", "before the snapshot"), "19:0");
  const std::string path = (dir_ / "p.thaw").string();
  ASSERT_TRUE(vm->Snapshot(path).ok());
  auto clone = Vm::Restore(path, Options());
  ASSERT_TRUE(clone.ok()) << clone.status();
  EXPECT_EQ(Call(**clone, "tmp_read"), "before the snapshot|x.txt");
  EXPECT_EQ(Call(**clone, "tmp_write", ", and after"), "11:0");
  EXPECT_EQ(Call(**clone, "tmp_read"), "before the snapshot, and after|x.txt");
  if (engine() == RestoreEngine::kSharedBase) {
    ASSERT_TRUE((*clone)->Reset().ok());
    EXPECT_EQ(Call(**clone, "tmp_read"), "before the snapshot|x.txt");
  }
}

TEST_P(ProgramSnapshotTest, AProgramSnapshotRestoresOnTheOtherBackend) {
  if (!CheckKvm().ok()) {
    // The KVM instance (inside QEMU in CI) covers both directions.
    GTEST_SKIP() << "needs both backends; runs in the KVM suite";
  }
  const BackendKind other = backend() == BackendKind::kKvm
                                ? BackendKind::kEmulated
                                : BackendKind::kKvm;
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(Call(*vm, "tmp_write", "crossing"), "8:0");
  const std::string path = (dir_ / "p.thaw").string();
  ASSERT_TRUE(vm->Snapshot(path).ok());
  RestoreOptions options = Options();
  options.backend = other;
  options.worker_process = false;
  testing::UseWorkerWhereAsked(options);
  auto moved = Vm::Restore(path, options);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ((*moved)->backend(), other);
  EXPECT_EQ(Call(**moved, "tmp_read"), "crossing|x.txt");
  EXPECT_EQ(Call(**moved, "echo", "moved"), "moved");
  // And back.
  const std::string back = (dir_ / "back.thaw").string();
  ASSERT_TRUE((*moved)->Snapshot(back).ok());
  auto again = Vm::Restore(back, Options());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(Call(**again, "getpid"), "1");
  EXPECT_EQ(Call(**again, "tmp_read"), "crossing|x.txt");
}

TEST_P(ProgramSnapshotTest, AFileChangedSinceTheSnapshotIsRefused) {
  auto vm = Boot();
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(Call(*vm, "hold", "/files/held.txt"), "4");
  const std::string path = (dir_ / "p.thaw").string();
  ASSERT_TRUE(vm->Snapshot(path).ok());
  std::ofstream(dir_ / "files" / "held.txt") << "changed, and longer";
  auto restored = Vm::Restore(path, Options());
  EXPECT_EQ(restored.status().code(), absl::StatusCode::kFailedPrecondition)
      << restored.status();
  EXPECT_THAT(restored.status().message(), HasSubstr("/files/held.txt"));
  EXPECT_THAT(restored.status().message(), HasSubstr("changed"));
}

// The SnapStart case: a Python function snapshotted after its init (imports
// done) and restored with this engine.
TEST_P(ProgramSnapshotTest, APythonFunctionRestoresAfterItsInit) {
  VmConfig config;
  config.guest_kind = GuestKind::kLinuxProgram;
  config.backend = backend();
  config.memory_size = 256ull << 20;
  config.call_timeout = absl::Seconds(120);
  testing::UseWorkerWhereAsked(config);
  auto vm = Vm::Create(config);
  ASSERT_TRUE(vm.ok());
  ASSERT_TRUE((*vm)->LoadProgram(THAW_PYTHON, PythonFunction()).ok());
  ASSERT_TRUE((*vm)->Boot().ok()) << (*vm)->console();
  const std::string path = (dir_ / "fn.thaw").string();
  ASSERT_TRUE((*vm)->Snapshot(path).ok());
  RestoreOptions options = Options();
  options.call_timeout = absl::Seconds(120);
  auto a = Vm::Restore(path, options);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = Vm::Restore(path, options);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_THAT(Call(**a, "handle", "a 12 b 30"),
              ::testing::StartsWith("{\"words\": 4, \"sum\": \"42\""));
  // Each clone gets fresh entropy: os.urandom and the reseeded `random`.
  EXPECT_NE(Call(**a, "urandom"), Call(**b, "urandom"));
  EXPECT_NE(Call(**a, "random"), Call(**b, "random"));
  // The restore was far quicker than the boot it replaces (reported, not
  // judged: timings belong to the benchmarks).
  std::cerr << "python3: boot+init "
            << absl::FormatDuration((*vm)->report().boot) << ", restore "
            << absl::FormatDuration((*a)->report().restore) << " ("
            << RestoreEngineName(engine()) << ")\n";
}

INSTANTIATE_TEST_SUITE_P(
    Engines, ProgramSnapshotTest,
    ::testing::Combine(::testing::Values(BackendKind::kEmulated,
                                         BackendKind::kKvm),
                       ::testing::ValuesIn(kRestoreEngines)),
    [](const auto& info) {
      return absl::StrCat(RestoreEngineName(std::get<1>(info.param)), "_",
                          testing::BackendSuffix(std::get<0>(info.param)));
    });

THAW_INSTANTIATE_BACKEND_TESTS(ProgramTest);

}  // namespace
}  // namespace thaw
