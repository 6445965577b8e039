// The settings of thaw's operations, one struct per operation (LevelDB's
// Options): VmConfig for Vm::Create, RestoreOptions for a restore,
// SnapshotOptions for Vm::Snapshot. What a created and a restored Vm share
// (backend, timeout, console) is declared once, in VmSettings, which both
// VmConfig and RestoreOptions extend.
//
// Thread safety: plain values; copy them freely.
#ifndef THAW_OPTIONS_H_
#define THAW_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "thaw/kinds.h"
#include "thaw/signing.h"

namespace thaw {

// How a Vm runs, whether it was created or restored.
struct VmSettings {
  BackendKind backend = BackendKind::kAuto;
  // Wall-clock limit for Boot() and for each Call(); time spent paused does
  // not count.
  absl::Duration call_timeout = absl::Seconds(10);
  // Console bytes kept by Vm::console(); older output is dropped beyond it.
  uint64_t console_limit = 1ull << 20;
  // Optional: receives console output as the guest writes it, on the thread
  // running the guest.
  std::function<void(absl::string_view)> console_sink;
  // Back guest memory with 2 MiB pages: reserved huge pages (hugetlbfs)
  // when enough are free (sysctl vm.nr_hugepages), else transparent huge
  // pages; ResourceExhausted naming both when neither can be had. Fewer,
  // larger pages: a lazy restore fills 2 MiB per fault. The eager and lazy
  // engines take it; the shared base (whose clones share 4 KiB pages of
  // one base) refuses it. RestoreStats::memory_pages says what was used.
  bool huge_pages = false;
  // Linux programs: write every system call to the console, strace-style
  // ("openat(AT_FDCWD, "/etc/x", 0x0) = -2 ENOENT"), to see what a program
  // needs.
  bool trace_syscalls = false;
  // Run the Vm in a worker process of its own (emulated backend): a
  // `thaw-worker` started for it, confined by a seccomp allow-list and
  // namespaces, so that a bug in the emulator a guest exploits reaches that
  // process and not this one (doc/security.md). The Vm and Snapshot API is
  // the same; a Linux program's file view is resolved here, in the host,
  // which hands the worker each opened file; console_sink runs here, on
  // the calling thread; a snapshot is signed here (the key never enters
  // the worker). A worker that dies, or does not answer within
  // call_timeout + 30 s (an operation that legitimately takes longer, such
  // as snapshotting tens of GiB, needs a longer call_timeout), makes the
  // operation fail with Unavailable, and the host goes on. Opt-in: it
  // costs ~10-16 µs per call and a few ms per restore (doc/security.md).
  bool worker_process = false;
};

// A new Vm. Its memory layout is fixed here; a restored Vm takes its layout
// from the snapshot.
struct VmConfig : VmSettings {
  // Function guests (the default) or Linux programs.
  GuestKind guest_kind = GuestKind::kFunction;
  // Guest memory in bytes: a multiple of 2 MiB, from 4 MiB to 64 GiB.
  uint64_t memory_size = 64ull << 20;
  // Largest request and reply a Call() carries, in bytes.
  uint64_t input_buffer_size = 1ull << 20;
  uint64_t output_buffer_size = 1ull << 20;
  // A function guest's stack; a Linux program's stack (RLIMIT_STACK, at
  // least 1 MiB is used).
  uint64_t stack_size = 256ull << 10;
  // Virtual CPUs: 1 to 16 for a Linux VM (GuestKind::kLinuxVm), each on a
  // thread of its own; function guests and Linux programs run on one.
  int vcpus = 1;
};

// How Vm::LoadKernel boots a Linux VM (GuestKind::kLinuxVm).
struct LinuxBootOptions {
  // The kernel command line; empty for kDefaultLinuxCmdline. The machine
  // has a UART at ttyS0, an i8042 used only for reset, PCI through
  // configuration mechanism 1 and no ACPI, so a command line of one's own
  // keeps "reboot=k" (a reboot then ends the VM cleanly) and no "pci=off".
  std::string cmdline;
  // How long Boot() waits for the agent to say it is ready; past it, Boot
  // fails with DeadlineExceeded naming the last console line.
  absl::Duration boot_timeout = absl::Minutes(2);
};

// The command line a Linux VM boots with unless LinuxBootOptions::cmdline
// says otherwise: the console on the UART, a reboot or panic ends the VM,
// PCI found without firmware, the i8042 driver told not to probe.
inline constexpr char kDefaultLinuxCmdline[] =
    "console=ttyS0 reboot=k panic=-1 pci=conf1 nokaslr quiet "
    "i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd "
    "initcall_blacklist=cmos_init";

// A host directory a Linux program may read, and where it sees it.
struct FileMount {
  std::string host_path;   // an existing host directory
  std::string guest_path;  // absolute, e.g. "/usr"; default: host_path
};

// How Vm::LoadProgram starts a Linux program.
struct ProgramOptions {
  // The read-only file view: the only host files the program can open.
  // Paths resolve in the program's own namespace (its symlinks included),
  // and every step on the host is taken beneath a mount's directory with
  // openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS),
  // so "..", symlinks and /proc tricks cannot leave the view. Writes are
  // EROFS.
  std::vector<FileMount> files;
  // The program's working directory in its namespace.
  std::string cwd = "/";
  // argv; empty means the program's path alone.
  std::vector<std::string> args;
  // The environment, "KEY=VALUE" each.
  std::vector<std::string> env;
};

struct SnapshotOptions {
  // zstd level (1-19; 3 is the measured balance of speed and size).
  int compression_level = 3;
  // Memory is stored in chunks of this many bytes: a power of two from
  // 4 KiB to 4 MiB. Each chunk is one independent zstd frame.
  uint32_t chunk_size = 64u << 10;
  // Diff snapshot: the path of the snapshot this Vm was restored from.
  // Only chunks that differ from it are stored; a restore needs it too.
  std::string parent;
  // Threads that hash and compress chunks: 0 for one per core this process
  // may run on (its CPU affinity), 1 for the caller's thread alone. The
  // file's contents do not depend on it.
  unsigned threads = 0;
  // Called now and then with (chunks written, chunks in all).
  std::function<void(uint64_t done, uint64_t total)> progress;
  // Sign the file (thaw/signing.h): restores that require this key's
  // VerifyKey accept it, and nothing in it can change unnoticed.
  std::optional<SigningKey> signing_key;
};

// A restore. The backend may differ from the one the snapshot was taken on.
struct RestoreOptions : VmSettings {
  RestoreEngine engine = RestoreEngine::kLazyPrefetch;
  // kLazy only (InvalidArgument with other engines): record the chunks the
  // restore and the first call touch, in first-touch order, for
  // Vm::WriteWorkingSet().
  bool record_working_set = false;
  // Vm::Restore(path, ...): open the file requiring a signature by this key
  // (thaw/signing.h). Snapshot::Restore: the handle must have been opened
  // with it (FailedPrecondition otherwise), so a caller can insist on it
  // where handles are passed around.
  std::optional<VerifyKey> verify_key;
};

}  // namespace thaw

#endif  // THAW_OPTIONS_H_
