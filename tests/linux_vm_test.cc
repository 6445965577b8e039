// Linux VMs (GuestKind::kLinuxVm) as a user sees them: Debian's kernel
// booted to thaw's agent on KVM, calls, SMP, and how a VM ends. The
// kernel and initramfs come from examples/linux-vm/build.sh, in the folder
// THAW_LINUX_VM_DIR names; ctest linux_vm_kvm_in_qemu builds them and runs
// this inside QEMU with a real /dev/kvm (THAW_REQUIRE_KVM=1 fails rather
// than skips). The refusals that need no KVM run everywhere.
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/backend_param.h"
#include "thaw/snapshot.h"
#include "thaw/vm.h"

namespace thaw {
namespace {

using ::testing::HasSubstr;

std::string LinuxVmDir() {
  const char* dir = std::getenv("THAW_LINUX_VM_DIR");
  return dir ? dir : "";
}

VmConfig LinuxConfig(int vcpus = 1) {
  VmConfig config;
  config.guest_kind = GuestKind::kLinuxVm;
  config.backend = BackendKind::kKvm;
  config.memory_size = 256ull << 20;
  config.vcpus = vcpus;
  // A boot takes 10-15 s and a call well under one nested under QEMU; the
  // limits are a few times that, so that a hang is found soon.
  config.call_timeout = absl::Seconds(30);
  return config;
}

TEST(LinuxVmConfigTest, EmulatedBackendIsRefused) {
  VmConfig config = LinuxConfig();
  config.backend = BackendKind::kEmulated;
  auto vm = Vm::Create(config);
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(vm.status().message(), HasSubstr("KVM only"));
}

TEST(LinuxVmConfigTest, OnlyALinuxVmTakesConsoleInput) {
  VmConfig config;
  config.backend = BackendKind::kEmulated;
  auto vm = Vm::Create(config);
  ASSERT_TRUE(vm.ok()) << vm.status();
  auto taken = (*vm)->WriteConsole("x");
  EXPECT_EQ(taken.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(taken.status().message(), HasSubstr("Linux VM"));
}

TEST(LinuxVmConfigTest, BadSettingsAreNamed) {
  VmConfig config = LinuxConfig(17);
  EXPECT_THAT(Vm::Create(config).status().message(),
              HasSubstr("VmConfig.vcpus"));
  config = LinuxConfig();
  config.memory_size = 16ull << 20;
  EXPECT_THAT(Vm::Create(config).status().message(),
              HasSubstr("VmConfig.memory_size"));
  config = LinuxConfig();
  config.worker_process = true;
  EXPECT_THAT(Vm::Create(config).status().message(),
              HasSubstr("VmConfig.worker_process"));
  VmConfig function_guest;
  function_guest.backend = BackendKind::kEmulated;
  function_guest.vcpus = 2;
  EXPECT_THAT(Vm::Create(function_guest).status().message(),
              HasSubstr("VmConfig.vcpus"));
}

// Checks for the test bodies below, which return a status so that a body
// can be run again (RunRetryingPlatformHangs).
#define RETURN_IF_ERROR(expression)            \
  do {                                         \
    const absl::Status status_ = (expression); \
    if (!status_.ok()) return status_;         \
  } while (0)
#define CHECK_OR_RETURN(condition, ...)                           \
  do {                                                            \
    if (!(condition)) {                                           \
      return absl::InternalError(                                 \
          absl::StrCat("line ", __LINE__, ": ", #condition,       \
                       " is false " __VA_OPT__(, ) __VA_ARGS__)); \
    }                                                             \
  } while (0)
#define ASSIGN_OR_RETURN(lhs, expression) \
  auto lhs##_or = (expression);           \
  RETURN_IF_ERROR(lhs##_or.status());     \
  auto lhs = *std::move(lhs##_or)

// The harness's KVM runs nested inside QEMU's software emulation, which now
// and then delivers an interrupt a second time inside its own handler
// (doc/platform-facts.md, "Linux guests under nested KVM"): the guest then
// deadlocks in handle_edge_irq, or faults in an interrupt. A body that ends
// in exactly that — the agent stops answering (DeadlineExceeded) or the
// kernel dies with "Fatal exception in interrupt" — runs again, up to five
// times in all (one attempt in four to eight hangs there, so three were
// not always enough across the suite), and says so; any other failure
// fails the test at once.
bool IsNestedInterruptHang(const absl::Status& s) {
  return s.code() == absl::StatusCode::kDeadlineExceeded ||
         absl::StrContains(s.message(), "Fatal exception in interrupt");
}

void RunRetryingPlatformHangs(const std::function<absl::Status()>& body) {
  absl::Status status;
  for (int attempt = 1; attempt <= 5; ++attempt) {
    status = body();
    if (status.ok() || !IsNestedInterruptHang(status)) break;
    std::cout << "attempt " << attempt
              << " hit the nested-KVM interrupt hang; running again: "
              << status.message().substr(0, 300) << "\n";
  }
  EXPECT_TRUE(status.ok()) << status;
}

class LinuxVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::RequireBackend(BackendKind::kKvm);
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_FALSE(LinuxVmDir().empty())
        << "THAW_LINUX_VM_DIR must name the output of "
           "examples/linux-vm/build.sh";
    kernel_ = LinuxVmDir() + "/vmlinuz";
    initrd_ = LinuxVmDir() + "/initramfs.cpio";
  }

  absl::StatusOr<std::unique_ptr<Vm>> Booted(const VmConfig& config) {
    auto vm = Vm::Create(config);
    if (!vm.ok()) return vm.status();
    LinuxBootOptions options;
    options.boot_timeout = absl::Seconds(60);
    RETURN_IF_ERROR((*vm)->LoadKernel(kernel_, initrd_, options));
    if (absl::Status booted = (*vm)->Boot(); !booted.ok()) {
      return absl::Status(
          booted.code(),
          absl::StrCat(booted.message(), "\nconsole:\n", (*vm)->console()));
    }
    return vm;
  }

  std::string kernel_, initrd_;
};

absl::StatusOr<int64_t> GuestClock(Vm& vm) {
  auto text = vm.Call("clock", "");
  if (!text.ok()) return text.status();
  int64_t seconds = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &seconds)) {
    return absl::InternalError(absl::StrCat("clock said \"", *text, "\""));
  }
  return seconds;
}

TEST_F(LinuxVmTest, BootsToTheAgentAndServesCalls) {
  RunRetryingPlatformHangs([&]() -> absl::Status {
    ASSIGN_OR_RETURN(vm, Booted(LinuxConfig(1)));
    ASSIGN_OR_RETURN(echo, vm->Call("echo", "hello from the host"));
    CHECK_OR_RETURN(echo == "hello from the host", echo);
    // Binary input, larger than a tty or a virtqueue buffer.
    std::string big(300000, '\0');
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
    ASSIGN_OR_RETURN(big_echo, vm->Call("echo", big));
    CHECK_OR_RETURN(big_echo == big, big_echo.size(), " bytes came back");
    ASSIGN_OR_RETURN(cpus, vm->Call("cpus", ""));
    CHECK_OR_RETURN(cpus == "1\n", cpus);

    // A failing function is an error for that call; the Vm goes on.
    auto failed = vm->Call("fail", "");
    CHECK_OR_RETURN(failed.status().code() == absl::StatusCode::kAborted &&
                        absl::StrContains(failed.status().message(),
                                          "exited with status 3"),
                    failed.status().ToString());
    auto missing = vm->Call("no-such-function", "");
    CHECK_OR_RETURN(missing.status().code() == absl::StatusCode::kNotFound,
                    missing.status().ToString());
    CHECK_OR_RETURN(vm->Call("../echo", "x").status().code() ==
                    absl::StatusCode::kInvalidArgument);
    ASSIGN_OR_RETURN(still, vm->Call("echo", "still here"));
    CHECK_OR_RETURN(still == "still here", still);
    // Its standard error went to the console.
    CHECK_OR_RETURN(absl::StrContains(vm->console(), "fail: on purpose"));
    // The host types on the guest's console while a function reads it.
    absl::StatusOr<std::string> line;
    std::thread reader([&] { line = vm->Call("console-line", ""); });
    const absl::Time listen_deadline = absl::Now() + absl::Seconds(20);
    while (!absl::StrContains(vm->console(), "console-line: listening") &&
           absl::Now() < listen_deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    auto taken = vm->WriteConsole("typed on the host\n");
    reader.join();
    RETURN_IF_ERROR(taken.status());
    CHECK_OR_RETURN(*taken == 18u, *taken);
    RETURN_IF_ERROR(line.status());
    CHECK_OR_RETURN(*line == "typed on the host\n", *line);
    // The guest's clock is the host's.
    ASSIGN_OR_RETURN(clock, GuestClock(*vm));
    CHECK_OR_RETURN(clock >= static_cast<int64_t>(time(nullptr)) - 2, clock);

    const PhaseReport report = vm->report();
    CHECK_OR_RETURN(report.backend == BackendKind::kKvm);
    CHECK_OR_RETURN(report.kernel_to_init > absl::ZeroDuration());
    CHECK_OR_RETURN(report.init_to_agent > absl::ZeroDuration());
    CHECK_OR_RETURN(report.boot >=
                    report.kernel_to_init + report.init_to_agent);
    // Eight reached the agent; the bad name was refused before.
    CHECK_OR_RETURN(report.calls == 8u, report.calls);
    std::cout << report.ToString();
    return absl::OkStatus();
  });
}

TEST_F(LinuxVmTest, BootsTheSameKernelAsAnElfVmlinux) {
  kernel_ = LinuxVmDir() + "/vmlinux";
  RunRetryingPlatformHangs([&]() -> absl::Status {
    ASSIGN_OR_RETURN(vm, Booted(LinuxConfig(1)));
    ASSIGN_OR_RETURN(echo, vm->Call("echo", "from vmlinux"));
    CHECK_OR_RETURN(echo == "from vmlinux", echo);
    return absl::OkStatus();
  });
}

TEST_F(LinuxVmTest, TwoVcpus) {
  RunRetryingPlatformHangs([&]() -> absl::Status {
    ASSIGN_OR_RETURN(vm, Booted(LinuxConfig(2)));
    ASSIGN_OR_RETURN(cpus, vm->Call("cpus", ""));
    CHECK_OR_RETURN(cpus == "2\n", cpus);
    // Pause holds every vCPU; calls go on after Resume.
    vm->Pause();
    CHECK_OR_RETURN(vm->paused());
    vm->Resume();
    ASSIGN_OR_RETURN(echo, vm->Call("echo", "after a pause"));
    CHECK_OR_RETURN(echo == "after a pause", echo);
    return absl::OkStatus();
  });
}

TEST_F(LinuxVmTest, AKernelPanicEndsTheVmWithAStatus) {
  RunRetryingPlatformHangs([&]() -> absl::Status {
    ASSIGN_OR_RETURN(vm, Booted(LinuxConfig()));
    auto panicked = vm->Call("panic", "");
    CHECK_OR_RETURN(panicked.status().code() == absl::StatusCode::kAborted &&
                        absl::StrContains(panicked.status().message(),
                                          "Kernel panic - not syncing: sysrq"),
                    panicked.status().ToString());
    auto after = vm->Call("echo", "x");
    CHECK_OR_RETURN(
        after.status().code() == absl::StatusCode::kFailedPrecondition &&
            absl::StrContains(after.status().message(), "Kernel panic"),
        after.status().ToString());
    return absl::OkStatus();
  });
}

TEST_F(LinuxVmTest, ARebootEndsTheVmWithAStatus) {
  RunRetryingPlatformHangs([&]() -> absl::Status {
    ASSIGN_OR_RETURN(vm, Booted(LinuxConfig()));
    auto rebooted = vm->Call("reboot", "");
    CHECK_OR_RETURN(rebooted.status().code() == absl::StatusCode::kAborted &&
                        absl::StrContains(rebooted.status().message(),
                                          "reset the machine") &&
                        absl::StrContains(rebooted.status().message(),
                                          "last console lines"),
                    rebooted.status().ToString());
    return absl::OkStatus();
  });
}

TEST_F(LinuxVmTest, ABootThatNeverReachesTheAgentTimesOut) {
  auto vm = Vm::Create(LinuxConfig());
  ASSERT_TRUE(vm.ok()) << vm.status();
  LinuxBootOptions options;
  // init is a shell waiting on the console, so the agent never comes. The
  // kernel writes to the UART well within the limit (its decompression
  // alone takes seconds nested under QEMU, so a shorter one may see none).
  options.boot_timeout = absl::Seconds(20);
  options.cmdline =
      "console=ttyS0 earlyprintk=serial,ttyS0 reboot=k panic=-1 pci=conf1 "
      "rdinit=/bin/sh";
  ASSERT_TRUE((*vm)->LoadKernel(kernel_, initrd_, options).ok());
  absl::Status booted = (*vm)->Boot();
  EXPECT_EQ(booted.code(), absl::StatusCode::kDeadlineExceeded) << booted;
  EXPECT_THAT(booted.message(), HasSubstr("last console lines"));
  EXPECT_THAT(booted.message(), HasSubstr("vCPU 0 at RIP"));
  EXPECT_THAT(booted.message(),
              ::testing::Not(HasSubstr("(no console output)")));
}

TEST_F(LinuxVmTest, MalformedImagesAreRefusedBeforeAnythingRuns) {
  auto vm = Vm::Create(LinuxConfig());
  ASSERT_TRUE(vm.ok()) << vm.status();
  const std::string garbage = ::testing::TempDir() + "/garbage";
  std::ofstream(garbage) << std::string(4096, 'x');
  absl::Status bad_kernel = (*vm)->LoadKernel(garbage, initrd_);
  EXPECT_EQ(bad_kernel.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_kernel.message(), HasSubstr(garbage));
  absl::Status bad_initrd = (*vm)->LoadKernel(kernel_, garbage);
  EXPECT_EQ(bad_initrd.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_initrd.message(), HasSubstr("initramfs"));
  // Nothing ran: Boot still wants a kernel.
  EXPECT_THAT((*vm)->Boot().message(), HasSubstr("no kernel loaded"));
}

TEST_F(LinuxVmTest, SnapshotsTheWholeMachineAndRestoresItWithEveryEngine) {
  const std::string path = ::testing::TempDir() + "/linux.thaw";
  RunRetryingPlatformHangs([&]() -> absl::Status {
    ASSIGN_OR_RETURN(vm, Booted(LinuxConfig(2)));
    RETURN_IF_ERROR(vm->Snapshot(path));
    // The original goes on.
    ASSIGN_OR_RETURN(after, vm->Call("echo", "after the snapshot"));
    CHECK_OR_RETURN(after == "after the snapshot", after);
    return absl::OkStatus();
  });
  auto info = Snapshot::Open(path);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->Info().guest_kind, "linux-vm");
  EXPECT_EQ(info->Info().format_minor, 4);
  // Neither the emulated backend nor a worker process takes it.
  RestoreOptions emulated;
  emulated.backend = BackendKind::kEmulated;
  auto refused = Vm::Restore(path, emulated);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("KVM only"));
  RestoreOptions in_worker;
  in_worker.worker_process = true;
  refused = Vm::Restore(path, in_worker);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("worker_process"));

  // Time passes between the snapshot and its restores: a guest clock that
  // resumed where it stopped would be this far behind.
  absl::SleepFor(absl::Seconds(3));
  for (RestoreEngine engine : kRestoreEngines) {
    SCOPED_TRACE(RestoreEngineName(engine));
    RunRetryingPlatformHangs([&]() -> absl::Status {
      RestoreOptions options;
      options.engine = engine;
      options.call_timeout = absl::Seconds(30);
      const int64_t host_before = time(nullptr);
      ASSIGN_OR_RETURN(restored, Vm::Restore(path, options));
      ASSIGN_OR_RETURN(echo, restored->Call("echo", "restored"));
      CHECK_OR_RETURN(echo == "restored", echo);
      ASSIGN_OR_RETURN(cpus, restored->Call("cpus", ""));
      CHECK_OR_RETURN(cpus == "2\n", cpus);
      ASSIGN_OR_RETURN(generation, restored->Call("generation", ""));
      CHECK_OR_RETURN(generation == "1\n", generation);
      // Not behind the host's clock (whole seconds: one of slack for the
      // truncation).
      ASSIGN_OR_RETURN(clock, GuestClock(*restored));
      CHECK_OR_RETURN(clock >= host_before - 1, clock, " < ", host_before);
      CHECK_OR_RETURN(restored->restore_stats().engine == engine);
      CHECK_OR_RETURN(restored->report().restore > absl::ZeroDuration());
      std::cout << RestoreEngineName(engine) << ": restore "
                << absl::FormatDuration(restored->report().restore)
                << ", first call "
                << absl::FormatDuration(restored->report().last_call) << "\n";
      return absl::OkStatus();
    });
  }
}

TEST_F(LinuxVmTest, ResetPutsTheWholeMachineBackToItsSnapshot) {
  const std::string path = ::testing::TempDir() + "/reset.thaw";
  RunRetryingPlatformHangs([&]() -> absl::Status {
    {
      ASSIGN_OR_RETURN(vm, Booted(LinuxConfig(2)));
      RETURN_IF_ERROR(vm->Snapshot(path));
    }
    RestoreOptions options;
    options.engine = RestoreEngine::kSharedBase;
    options.call_timeout = absl::Seconds(30);
    ASSIGN_OR_RETURN(vm, Vm::Restore(path, options));
    // The first random bytes after the restore and after the reset come
    // from the same kernel CRNG state but for the reseed in between.
    ASSIGN_OR_RETURN(random_restored, vm->Call("random", ""));
    RETURN_IF_ERROR(vm->Call("put", "written after the restore").status());
    ASSIGN_OR_RETURN(kept, vm->Call("get", ""));
    CHECK_OR_RETURN(kept == "written after the restore", kept);

    const int64_t host_before = time(nullptr);
    RETURN_IF_ERROR(vm->Reset());
    ASSIGN_OR_RETURN(random_reset, vm->Call("random", ""));
    CHECK_OR_RETURN(random_reset.size() == 64u, random_reset);
    CHECK_OR_RETURN(random_reset != random_restored, random_reset);
    ASSIGN_OR_RETURN(gone, vm->Call("get", ""));
    CHECK_OR_RETURN(gone.empty(), "still kept: ", gone);
    ASSIGN_OR_RETURN(cpus, vm->Call("cpus", ""));
    CHECK_OR_RETURN(cpus == "2\n", cpus);
    ASSIGN_OR_RETURN(generation, vm->Call("generation", ""));
    CHECK_OR_RETURN(generation == "1\n", generation);
    ASSIGN_OR_RETURN(clock, GuestClock(*vm));
    CHECK_OR_RETURN(clock >= host_before - 1, clock, " < ", host_before);
    RestoreStats stats = vm->restore_stats();
    CHECK_OR_RETURN(stats.resets == 1u && stats.pages_reset > 0u, stats.resets,
                    " resets, ", stats.pages_reset, " pages");
    CHECK_OR_RETURN(vm->report().reset > absl::ZeroDuration());
    std::cout << "reset: " << stats.pages_reset << " pages in "
              << absl::FormatDuration(vm->report().reset) << "\n";

    // A machine whose kernel panicked comes back too.
    auto panicked = vm->Call("panic", "");
    CHECK_OR_RETURN(!panicked.ok() && !IsNestedInterruptHang(panicked.status()),
                    panicked.status().ToString());
    CHECK_OR_RETURN(!vm->failure().ok());
    RETURN_IF_ERROR(vm->Reset());
    RETURN_IF_ERROR(vm->failure());
    ASSIGN_OR_RETURN(echo, vm->Call("echo", "after the panic"));
    CHECK_OR_RETURN(echo == "after the panic", echo);

    // A Vm paused across a reset stays paused until Resume.
    vm->Pause();
    RETURN_IF_ERROR(vm->Reset());
    CHECK_OR_RETURN(vm->paused());
    vm->Resume();
    ASSIGN_OR_RETURN(resumed, vm->Call("echo", "resumed"));
    CHECK_OR_RETURN(resumed == "resumed", resumed);
    CHECK_OR_RETURN(vm->restore_stats().resets == 3u);
    return absl::OkStatus();
  });
  // Only a shared-base restore keeps what a reset needs.
  RestoreOptions lazy;
  lazy.engine = RestoreEngine::kLazy;
  auto vm = Vm::Restore(path, lazy);
  ASSERT_TRUE(vm.ok()) << vm.status();
  absl::Status refused = (*vm)->Reset();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(), HasSubstr("kSharedBase"));
}

// Runs `command` through the shell; its standard output, or an error with
// its standard error. One that ends in the nested interrupt hang comes back
// as DeadlineExceeded, so that the body runs again.
absl::StatusOr<std::string> Shell(const std::string& command) {
  const std::string out = ::testing::TempDir() + "/shell.out";
  const std::string err = ::testing::TempDir() + "/shell.err";
  const int status = std::system((command + " >" + out + " 2>" + err).c_str());
  auto read = [](const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(file), {});
  };
  if (status == 0) return read(out);
  const std::string text = read(err);
  if (absl::StrContains(text, "no answer from the agent") ||
      absl::StrContains(text, "Fatal exception in interrupt")) {
    return absl::DeadlineExceededError(text);
  }
  return absl::InternalError(
      absl::StrCat(command, " exited with ", status, ": ", text));
}

// The command line reaches Linux VMs too: `thaw snapshot --kernel` boots
// one to its agent and writes its snapshot, `thaw restore` calls into it.
TEST_F(LinuxVmTest, TheCommandLineSnapshotsAndRestoresALinuxVm) {
  const char* cli = std::getenv("THAW_CLI");
  ASSERT_NE(cli, nullptr) << "THAW_CLI must name the thaw command";
  const std::string path = ::testing::TempDir() + "/cli.thaw";
  RunRetryingPlatformHangs([&]() -> absl::Status {
    ASSIGN_OR_RETURN(written,
                     Shell(absl::StrCat(cli, " snapshot --kernel ", kernel_,
                                        " --initrd ", initrd_, " --vcpus 2 -o ",
                                        path, " --boot-timeout-ms 60000")));
    ASSIGN_OR_RETURN(info, Shell(absl::StrCat(cli, " inspect ", path)));
    CHECK_OR_RETURN(absl::StrContains(info, "linux-vm"), info);
    ASSIGN_OR_RETURN(reply, Shell(absl::StrCat(
                                "echo from-the-cli | ", cli, " restore ", path,
                                " --call echo --input - --engine lazy "
                                "--timeout-ms 30000")));
    CHECK_OR_RETURN(reply == "from-the-cli\n", reply);
    ASSIGN_OR_RETURN(cpus, Shell(absl::StrCat(cli, " restore ", path,
                                              " --call cpus --timeout-ms 30000 "
                                              "--input /dev/null")));
    CHECK_OR_RETURN(cpus == "2\n", cpus);
    return absl::OkStatus();
  });
}

TEST_F(LinuxVmTest, ClonesOfOneSnapshotReadDifferentRandomBytes) {
  RunRetryingPlatformHangs([&]() -> absl::Status {
    const std::string path = ::testing::TempDir() + "/clone.thaw";
    {
      ASSIGN_OR_RETURN(vm, Booted(LinuxConfig()));
      RETURN_IF_ERROR(vm->Snapshot(path));
    }
    ASSIGN_OR_RETURN(snapshot, Snapshot::Open(path));
    RestoreOptions options;
    options.engine = RestoreEngine::kSharedBase;
    options.call_timeout = absl::Seconds(30);
    ASSIGN_OR_RETURN(a, snapshot.Restore(options));
    ASSIGN_OR_RETURN(b, snapshot.Restore(options));
    ASSIGN_OR_RETURN(random_a, a->Call("random", ""));
    ASSIGN_OR_RETURN(random_b, b->Call("random", ""));
    CHECK_OR_RETURN(random_a.size() == 64u, random_a);
    CHECK_OR_RETURN(random_a != random_b, random_a);
    return absl::OkStatus();
  });
}

TEST_F(LinuxVmTest, WorkingSetsAndDiffSnapshots) {
  RunRetryingPlatformHangs([&]() -> absl::Status {
    const std::string path = ::testing::TempDir() + "/base.thaw";
    {
      ASSIGN_OR_RETURN(vm, Booted(LinuxConfig()));
      RETURN_IF_ERROR(vm->Snapshot(path));
    }
    RestoreOptions record;
    record.engine = RestoreEngine::kLazy;
    record.record_working_set = true;
    record.call_timeout = absl::Seconds(30);
    const std::string diff = ::testing::TempDir() + "/diff.thaw";
    {
      ASSIGN_OR_RETURN(recorded, Vm::Restore(path, record));
      ASSIGN_OR_RETURN(x, recorded->Call("echo", "x"));
      CHECK_OR_RETURN(x == "x", x);
      RETURN_IF_ERROR(recorded->WriteWorkingSet());
      // A diff against the file it came from holds only what changed.
      SnapshotOptions diff_options;
      diff_options.parent = path;
      RETURN_IF_ERROR(recorded->Snapshot(diff, diff_options));
    }
    RestoreOptions prefetch;
    prefetch.engine = RestoreEngine::kLazyPrefetch;
    prefetch.call_timeout = absl::Seconds(30);
    {
      ASSIGN_OR_RETURN(fast, Vm::Restore(path, prefetch));
      ASSIGN_OR_RETURN(echo, fast->Call("echo", "prefetched"));
      CHECK_OR_RETURN(echo == "prefetched", echo);
      CHECK_OR_RETURN(fast->restore_stats().mapped > 0u);
    }
    ASSIGN_OR_RETURN(from_diff, Vm::Restore(diff, prefetch));
    ASSIGN_OR_RETURN(echo, from_diff->Call("echo", "diff"));
    CHECK_OR_RETURN(echo == "diff", echo);
    ASSIGN_OR_RETURN(generation, from_diff->Call("generation", ""));
    CHECK_OR_RETURN(generation == "2\n", generation);
    return absl::OkStatus();
  });
}

}  // namespace
}  // namespace thaw
