// The system calls thaw's confined threads need (base/thread_confinement.h),
// shared with the worker process's filter (lib/worker/process_confinement),
// which allows these and the few more a whole process needs. Each is here
// because a confined thread (or the C library and sanitizer runtimes inside
// it) makes it; doc/security.md lists them.
#ifndef THAW_BASE_SECCOMP_CALLS_H_
#define THAW_BASE_SECCOMP_CALLS_H_

#include <linux/userfaultfd.h>
#include <seccomp.h>

namespace thaw {

inline constexpr int kConfinedThreadCalls[] = {
    // Waiting and time.
    SCMP_SYS(futex),
    SCMP_SYS(poll),
    SCMP_SYS(ppoll),
    SCMP_SYS(nanosleep),
    SCMP_SYS(clock_nanosleep),
    SCMP_SYS(clock_gettime),
    SCMP_SYS(gettimeofday),
    SCMP_SYS(sched_yield),
    SCMP_SYS(restart_syscall),
    // Descriptors already open: the userfaultfd, the eventfd that stops the
    // server, the snapshot files, io_uring rings.
    SCMP_SYS(read),
    SCMP_SYS(write),
    SCMP_SYS(pread64),
    SCMP_SYS(preadv),
    SCMP_SYS(close),
    SCMP_SYS(io_uring_setup),
    SCMP_SYS(io_uring_enter),
    SCMP_SYS(io_uring_register),
    // Memory: the allocator, views of a snapshot file, readahead.
    SCMP_SYS(mmap),
    SCMP_SYS(munmap),
    SCMP_SYS(mremap),
    SCMP_SYS(mprotect),
    SCMP_SYS(madvise),
    SCMP_SYS(brk),
    // Signals and identity (stopping a vCPU: pthread_kill; thread exit).
    SCMP_SYS(rt_sigprocmask),
    SCMP_SYS(rt_sigreturn),
    SCMP_SYS(sigaltstack),
    SCMP_SYS(getpid),
    SCMP_SYS(gettid),
    SCMP_SYS(exit),
    SCMP_SYS(exit_group),
    SCMP_SYS(set_robust_list),
    SCMP_SYS(rseq),
    SCMP_SYS(getrandom),
    SCMP_SYS(sched_getaffinity),
    // Sanitizer runtimes (UBSan's vptr check) test whether memory is
    // readable by writing it into a pipe of their own.
    SCMP_SYS(pipe2),
};

// The userfaultfd requests the fault server and prefetcher issue.
inline constexpr unsigned long kConfinedThreadUffdIoctls[] = {
    UFFDIO_COPY, UFFDIO_ZEROPAGE, UFFDIO_WAKE};

}  // namespace thaw

#endif  // THAW_BASE_SECCOMP_CALLS_H_
