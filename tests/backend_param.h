// Runs one test body against every backend (crosvm's model).
//
// The emulated instances always run. The KVM instances run where /dev/kvm
// can run guests; elsewhere they skip with a reason, and CI runs them for
// real inside QEMU (tests/kvm-vm/run.sh) with THAW_REQUIRE_KVM=1, which
// turns a missing KVM into a failure instead of a skip.
#ifndef THAW_TESTS_BACKEND_PARAM_H_
#define THAW_TESTS_BACKEND_PARAM_H_

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"
#include "lib/backend/backend.h"
#include "thaw/vm.h"

namespace thaw::testing {

// Skips the current test where `kind` cannot run here (fails instead under
// THAW_REQUIRE_KVM=1). Callers check IsSkipped() / HasFatalFailure() after.
inline void RequireBackend(BackendKind kind) {
  if (kind != BackendKind::kKvm) return;
  absl::Status usable = backend::KvmRunsGuests();
  if (usable.ok()) return;
  const char* require = std::getenv("THAW_REQUIRE_KVM");
  if (require && std::string(require) == "1") {
    FAIL() << "THAW_REQUIRE_KVM=1 but KVM cannot run guests: " << usable;
  }
  GTEST_SKIP() << "no usable /dev/kvm here (" << usable.message()
               << "); CI runs these inside QEMU via tests/kvm-vm/run.sh";
}

// THAW_TEST_WORKER_PROCESS=1 puts the emulated instances' Vms in worker
// processes (VmSettings::worker_process): the test command runs a suite so
// once more (ctest programs_worker) to show that a worker changes nothing a
// user can observe.
inline void UseWorkerWhereAsked(VmSettings& settings) {
  const char* worker = std::getenv("THAW_TEST_WORKER_PROCESS");
  if (worker != nullptr && std::string(worker) == "1" &&
      settings.backend == BackendKind::kEmulated) {
    settings.worker_process = true;
  }
}

class BackendTest : public ::testing::TestWithParam<BackendKind> {
 protected:
  void SetUp() override { RequireBackend(GetParam()); }
};

// Test names end in the backend ("...Kvm", "...Emulated"): the test command
// selects each backend's instances with --gtest_filter=*Kvm / *Emulated.
inline std::string BackendSuffix(BackendKind kind) {
  return kind == BackendKind::kKvm ? "Kvm" : "Emulated";
}

inline std::string BackendTestName(
    const ::testing::TestParamInfo<BackendKind>& info) {
  return BackendSuffix(info.param);
}

#define THAW_INSTANTIATE_BACKEND_TESTS(suite)                              \
  INSTANTIATE_TEST_SUITE_P(Backends, suite,                                \
                           ::testing::Values(thaw::BackendKind::kEmulated, \
                                             thaw::BackendKind::kKvm),     \
                           thaw::testing::BackendTestName)

}  // namespace thaw::testing

#endif  // THAW_TESTS_BACKEND_PARAM_H_
