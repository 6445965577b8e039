#include "base/thread_confinement.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/seccomp_calls.h"

namespace thaw {
namespace {

struct Filter {
  absl::Status status;
  std::vector<sock_filter> program;
};

absl::Status Build(std::vector<sock_filter>& program) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
  if (ctx == nullptr) return absl::InternalError("seccomp_init failed");
  auto fail = [&](const char* what, int rc) {
    seccomp_release(ctx);
    return absl::InternalError(
        absl::StrCat("thread filter: ", what, ": ", std::strerror(-rc)));
  };
  for (int call : kConfinedThreadCalls) {
    if (int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, call, 0); rc < 0) {
      return fail("allow a call", rc);
    }
  }
  for (unsigned long request : kConfinedThreadUffdIoctls) {
    // Spelled out rather than SCMP_A1(): its initializer leaves datum_b to
    // a default, which clang's -Wmissing-field-initializers refuses.
    const scmp_arg_cmp is_request{1, SCMP_CMP_EQ, request, 0};
    if (int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                                  is_request);
        rc < 0) {
      return fail("allow a userfaultfd ioctl", rc);
    }
  }
  // Signals to threads of this process only.
  const scmp_datum_t self = static_cast<scmp_datum_t>(getpid());
  const scmp_arg_cmp is_self{0, SCMP_CMP_EQ, self, 0};
  if (int rc =
          seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1, is_self);
      rc < 0) {
    return fail("allow tgkill", rc);
  }
  // The compiled program, read back through a memfd (libseccomp 2.5 exports
  // only to a descriptor).
  int fd = memfd_create("thaw-thread-filter", MFD_CLOEXEC);
  if (fd < 0) {
    seccomp_release(ctx);
    return ErrnoStatus("memfd_create for the thread filter", errno);
  }
  int rc = seccomp_export_bpf(ctx, fd);
  seccomp_release(ctx);
  if (rc < 0) {
    close(fd);
    return absl::InternalError(absl::StrCat(
        "thread filter: seccomp_export_bpf: ", std::strerror(-rc)));
  }
  const off_t size = lseek(fd, 0, SEEK_END);
  if (size <= 0 || size % sizeof(sock_filter) != 0) {
    close(fd);
    return absl::InternalError("thread filter: bad exported program size");
  }
  program.resize(size / sizeof(sock_filter));
  const ssize_t n = pread(fd, program.data(), size, 0);
  close(fd);
  if (n != size) return absl::InternalError("thread filter: short read");
  return absl::OkStatus();
}

const Filter& TheFilter() {
  static const Filter* filter = [] {
    auto* f = new Filter;
    f->status = Build(f->program);
    return f;
  }();
  return *filter;
}

#if defined(__SANITIZE_THREAD__)
// ThreadSanitizer's runtime reads /proc/self/maps when a thread maps
// memory (an io_uring ring); under the filter it cannot, and it then
// reports races that are not there. TSan builds start with confinement
// off; the tests that check confinement turn it on.
constexpr bool kOnByDefault = false;
#else
constexpr bool kOnByDefault = true;
#endif

std::atomic<bool>& Enabled() {
  static std::atomic<bool> enabled = [] {
    const char* env = std::getenv("THAW_THREAD_CONFINEMENT");
    if (env == nullptr) return kOnByDefault;
    return std::string(env) != "off";
  }();
  return enabled;
}

}  // namespace

void SetConfineThreads(bool enabled) { Enabled().store(enabled); }
bool ConfineThreads() { return Enabled().load(); }

absl::Status ConfinementFilterStatus() {
  if (!ConfineThreads()) return absl::OkStatus();
  return TheFilter().status;
}

void EnterThawThread(const char* name) {
  pthread_setname_np(pthread_self(), name);
  (void)ConfineThisThread();
}

absl::Status ConfineThisThread() {
  if (!ConfineThreads()) return absl::OkStatus();
  const Filter& filter = TheFilter();
  if (!filter.status.ok()) return filter.status;
  // no_new_privs is per thread, as the filter is: the caller's threads keep
  // neither.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return ErrnoStatus("prctl(PR_SET_NO_NEW_PRIVS)", errno);
  }
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(filter.program.size());
  prog.filter = const_cast<sock_filter*>(filter.program.data());
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
    return ErrnoStatus("seccomp(SECCOMP_SET_MODE_FILTER)", errno);
  }
  return absl::OkStatus();
}

}  // namespace thaw
