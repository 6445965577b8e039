#include "lib/worker/process_confinement.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/seccomp_calls.h"

namespace thaw::worker {
namespace {

// What the worker allows besides what a confined thread may do
// (base/seccomp_calls.h). Each is here because an emulated Vm, its
// engines, its threads or the C library and sanitizer runtimes under them
// make it (doc/security.md).
constexpr int kWorkerCalls[] = {
    // Descriptors the worker was given or made itself.
    SCMP_SYS(pwrite64),
    SCMP_SYS(readv),
    SCMP_SYS(writev),
    SCMP_SYS(pwritev),
    SCMP_SYS(lseek),
    SCMP_SYS(getdents64),  // a directory the host opened for a program
    SCMP_SYS(fstat),
    SCMP_SYS(fsync),
    SCMP_SYS(fdatasync),
    SCMP_SYS(sync_file_range),
    SCMP_SYS(ftruncate),
    SCMP_SYS(fcntl),
    SCMP_SYS(dup),
    SCMP_SYS(sendmsg),
    SCMP_SYS(recvmsg),
    SCMP_SYS(sendto),
    SCMP_SYS(recvfrom),
    SCMP_SYS(eventfd2),
    SCMP_SYS(memfd_create),
    SCMP_SYS(userfaultfd),
    // Memory.
    SCMP_SYS(mincore),
    // Threads, signals, time.
    SCMP_SYS(rt_sigaction),
    SCMP_SYS(getcpu),
    SCMP_SYS(getrusage),
    // Its own threads confine themselves further (base/thread_confinement).
    SCMP_SYS(seccomp),
};

// userfaultfd's, and PAGEMAP_SCAN (Linux 6.7; 'f' 16 on a 96-byte
// argument) on the kept /proc/self/pagemap.
constexpr unsigned long kPagemapScan =
    _IOC(_IOC_READ | _IOC_WRITE, 'f', 16, 96);
constexpr unsigned long kIoctls[] = {
    UFFDIO_API,      UFFDIO_REGISTER, UFFDIO_UNREGISTER, UFFDIO_COPY,
    UFFDIO_ZEROPAGE, UFFDIO_WAKE,     kPagemapScan};

absl::Status Add(scmp_filter_ctx ctx, int call, unsigned count,
                 const scmp_arg_cmp* args) {
  const int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, call, count, args);
  if (rc < 0) {
    return absl::InternalError(absl::StrCat("worker filter: allow syscall ",
                                            call, ": ", std::strerror(-rc)));
  }
  return absl::OkStatus();
}

// THAW_WORKER_SECCOMP_DEBUG=1: a refused call names itself on stderr
// before the worker exits, instead of a silent kill (for extending the
// list).
void OnRefused(int, siginfo_t* info, void*) {
  char message[64];
  const int n =
      snprintf(message, sizeof(message),
               "thaw-worker: refused system call %d\n", info->si_syscall);
  (void)!write(2, message, n);
  _exit(99);
}

absl::Status InstallFilter() {
  const bool debug = std::getenv("THAW_WORKER_SECCOMP_DEBUG") != nullptr;
  // Refused calls fail with EPERM rather than kill: the C library has
  // paths that try a file now and then (glibc's malloc reads
  // /proc/sys/vm/overcommit_memory when a thread's arena shrinks) and cope
  // with a refusal; compromised code gets nothing from one either.
  scmp_filter_ctx ctx =
      seccomp_init(debug ? SCMP_ACT_TRAP : SCMP_ACT_ERRNO(EPERM));
  if (ctx == nullptr) return absl::InternalError("seccomp_init failed");
  struct Release {
    scmp_filter_ctx ctx;
    ~Release() { seccomp_release(ctx); }
  } release{ctx};
  // Every thread, now and later.
  if (int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1); rc < 0) {
    return absl::InternalError("worker filter: TSYNC not supported");
  }
  for (int call : kConfinedThreadCalls) {
    if (absl::Status s = Add(ctx, call, 0, nullptr); !s.ok()) return s;
  }
  for (int call : kWorkerCalls) {
    if (absl::Status s = Add(ctx, call, 0, nullptr); !s.ok()) return s;
  }
  for (unsigned long request : kIoctls) {
    const scmp_arg_cmp is{1, SCMP_CMP_EQ, request, 0};
    if (absl::Status s = Add(ctx, SCMP_SYS(ioctl), 1, &is); !s.ok()) return s;
  }
  // stat of a descriptor only (glibc's fstat is newfstatat(fd, "",
  // AT_EMPTY_PATH)); never of a path.
  const scmp_arg_cmp empty_path{3, SCMP_CMP_MASKED_EQ, AT_EMPTY_PATH,
                                AT_EMPTY_PATH};
  if (absl::Status s = Add(ctx, SCMP_SYS(newfstatat), 1, &empty_path);
      !s.ok()) {
    return s;
  }
  // Threads, never processes: clone with CLONE_THREAD; clone3 (whose flags
  // a filter cannot see) answers ENOSYS so that the C library uses clone.
  const scmp_arg_cmp thread{0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD};
  if (absl::Status s = Add(ctx, SCMP_SYS(clone), 1, &thread); !s.ok()) {
    return s;
  }
  if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) < 0) {
    return absl::InternalError("worker filter: clone3");
  }
  // Signals to its own threads; thread names and no_new_privs.
  const scmp_arg_cmp self{0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(getpid()),
                          0};
  if (absl::Status s = Add(ctx, SCMP_SYS(tgkill), 1, &self); !s.ok()) return s;
  for (int option : {PR_SET_NAME, PR_SET_NO_NEW_PRIVS}) {
    const scmp_arg_cmp is{0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(option), 0};
    if (absl::Status s = Add(ctx, SCMP_SYS(prctl), 1, &is); !s.ok()) return s;
  }
  if (debug) {
    struct sigaction action {};
    action.sa_sigaction = OnRefused;
    action.sa_flags = SA_SIGINFO;
    sigaction(SIGSYS, &action, nullptr);
  }
  if (int rc = seccomp_load(ctx); rc < 0) {
    return absl::InternalError(
        absl::StrCat("worker filter: seccomp_load: ", std::strerror(-rc)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ConfineWorkerProcess(std::string* namespaces) {
  const int wanted = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
  if (unshare(wanted) == 0) {
    *namespaces = "mount, network, IPC, UTS";
  } else if (unshare(wanted | CLONE_NEWUSER) == 0) {
    *namespaces = "user, mount, network, IPC, UTS";
  } else {
    *namespaces = absl::StrCat("none (unshare: ", std::strerror(errno), ")");
  }
  // Mounts made on the host from now on do not reach the worker, and its
  // root becomes an empty read-only tmpfs (mounted over /tmp in its own
  // namespace only): should an open ever get past the filter, there is
  // nothing to find.
  if (namespaces->find("mount") != std::string::npos) {
    (void)mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr);
    if (mount("thaw-worker-root", "/tmp", "tmpfs",
              MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k") == 0 &&
        chroot("/tmp") == 0 && chdir("/") == 0) {
      absl::StrAppend(namespaces, "; root: an empty read-only tmpfs");
    } else {
      absl::StrAppend(namespaces, "; root: the host's (", std::strerror(errno),
                      ")");
    }
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return absl::InternalError(
        absl::StrCat("worker: no_new_privs: ", std::strerror(errno)));
  }
  return InstallFilter();
}

}  // namespace thaw::worker
