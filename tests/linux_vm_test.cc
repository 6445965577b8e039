// Linux VMs (GuestKind::kLinuxVm) as a user sees them: Debian's kernel
// booted to thaw's agent on KVM, calls, SMP, and how a VM ends. The
// kernel and initramfs come from examples/linux-vm/build.sh, in the folder
// THAW_LINUX_VM_DIR names; ctest linux_vm_kvm_in_qemu builds them and runs
// this inside QEMU with a real /dev/kvm (THAW_REQUIRE_KVM=1 fails rather
// than skips). The refusals that need no KVM run everywhere.
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/backend_param.h"
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
  config.call_timeout = absl::Seconds(60);
  return config;
}

TEST(LinuxVmConfigTest, EmulatedBackendIsRefused) {
  VmConfig config = LinuxConfig();
  config.backend = BackendKind::kEmulated;
  auto vm = Vm::Create(config);
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(vm.status().message(), HasSubstr("KVM only"));
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

  std::unique_ptr<Vm> Booted(const VmConfig& config) {
    auto vm = Vm::Create(config);
    EXPECT_TRUE(vm.ok()) << vm.status();
    if (!vm.ok()) return nullptr;
    absl::Status loaded = (*vm)->LoadKernel(kernel_, initrd_);
    EXPECT_TRUE(loaded.ok()) << loaded;
    absl::Status booted = (*vm)->Boot();
    EXPECT_TRUE(booted.ok()) << booted << "\nconsole:\n" << (*vm)->console();
    if (!booted.ok()) return nullptr;
    return *std::move(vm);
  }

  std::string kernel_, initrd_;
};

TEST_F(LinuxVmTest, BootsToTheAgentAndServesCalls) {
  auto vm = Booted(LinuxConfig(1));
  ASSERT_NE(vm, nullptr);
  auto echo = vm->Call("echo", "hello from the host");
  ASSERT_TRUE(echo.ok()) << echo.status();
  EXPECT_EQ(*echo, "hello from the host");
  // Binary input, larger than a tty or a virtqueue buffer.
  std::string big(300000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
  auto big_echo = vm->Call("echo", big);
  ASSERT_TRUE(big_echo.ok()) << big_echo.status();
  EXPECT_TRUE(*big_echo == big) << "echoed " << big_echo->size() << " bytes";
  EXPECT_EQ(*vm->Call("cpus", ""), "1\n");

  // A failing function is an error for that call; the Vm goes on.
  auto failed = vm->Call("fail", "");
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(failed.status().message(), HasSubstr("exited with status 3"));
  auto missing = vm->Call("no-such-function", "");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(vm->Call("../echo", "x").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*vm->Call("echo", "still here"), "still here");
  // Its standard error went to the console.
  EXPECT_THAT(vm->console(), HasSubstr("fail: on purpose"));

  const PhaseReport report = vm->report();
  EXPECT_EQ(report.backend, BackendKind::kKvm);
  EXPECT_GT(report.kernel_to_init, absl::ZeroDuration());
  EXPECT_GT(report.init_to_agent, absl::ZeroDuration());
  EXPECT_GE(report.boot, report.kernel_to_init + report.init_to_agent);
  // Six reached the agent; the bad name was refused before.
  EXPECT_EQ(report.calls, 6u);
  std::cout << report.ToString();
}

TEST_F(LinuxVmTest, TwoVcpus) {
  auto vm = Booted(LinuxConfig(2));
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(*vm->Call("cpus", ""), "2\n");
  EXPECT_EQ(*vm->Call("echo", "smp"), "smp");
  // Pause holds every vCPU; a call waits for Resume.
  vm->Pause();
  EXPECT_TRUE(vm->paused());
  vm->Resume();
  EXPECT_EQ(*vm->Call("echo", "after a pause"), "after a pause");
}

TEST_F(LinuxVmTest, AKernelPanicEndsTheVmWithAStatus) {
  auto vm = Booted(LinuxConfig());
  ASSERT_NE(vm, nullptr);
  auto panicked = vm->Call("panic", "");
  EXPECT_EQ(panicked.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(panicked.status().message(), HasSubstr("Kernel panic"));
  auto after = vm->Call("echo", "x");
  EXPECT_EQ(after.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(after.status().message(), HasSubstr("Kernel panic"));
}

TEST_F(LinuxVmTest, ARebootEndsTheVmWithAStatus) {
  auto vm = Booted(LinuxConfig());
  ASSERT_NE(vm, nullptr);
  auto rebooted = vm->Call("reboot", "");
  EXPECT_EQ(rebooted.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(rebooted.status().message(), HasSubstr("reset the machine"));
  EXPECT_THAT(rebooted.status().message(), HasSubstr("last console lines"));
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

}  // namespace
}  // namespace thaw
