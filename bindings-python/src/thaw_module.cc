// The Python binding: `import thaw`. One thin layer over include/thaw/:
// statuses become exceptions in one place (RaiseStatus), bytes stay bytes,
// the GIL is released whenever a guest runs or a file is read or written,
// and Python callables serve as host functions.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "thaw/errors.h"
#include "thaw/pool.h"
#include "thaw/remote.h"
#include "thaw/security.h"
#include "thaw/signing.h"
#include "thaw/snapshot.h"
#include "thaw/vm.h"

namespace py = pybind11;

namespace thaw::python {
namespace {

// The exception classes, created at import (see PYBIND11_MODULE below).
struct Exceptions {
  py::object error, corrupt, timeout, guest_fault, invalid_argument, throttled,
      signature;
};
Exceptions& Classes() {
  static auto* classes = new Exceptions;  // lives as long as the module
  return *classes;
}

// The one place a non-OK status becomes a Python exception.
[[noreturn]] void RaiseStatus(const absl::Status& status) {
  Exceptions& c = Classes();
  py::object type = c.error;
  std::optional<GuestFault> fault = GetGuestFault(status);
  if (fault) {
    type = c.guest_fault;
  } else if (status.code() == absl::StatusCode::kDataLoss) {
    type = c.corrupt;
  } else if (status.code() == absl::StatusCode::kPermissionDenied) {
    type = c.signature;  // a snapshot not signed by the key (thaw/signing.h)
  } else if (status.code() == absl::StatusCode::kDeadlineExceeded) {
    type = c.timeout;
  } else if (status.code() == absl::StatusCode::kResourceExhausted &&
             absl::StartsWith(status.message(), "throttled")) {
    type = c.throttled;  // Pool.acquire at its deadline (thaw/pool.h)
  } else if (status.code() == absl::StatusCode::kInvalidArgument ||
             status.code() == absl::StatusCode::kOutOfRange) {
    type = c.invalid_argument;
  }
  py::object error = type(std::string(status.message()));
  error.attr("code") = absl::StatusCodeToString(status.code());
  if (fault) {
    error.attr("vector") = fault->vector;
    error.attr("rip") = fault->rip;
    error.attr("cr2") = fault->cr2;
    error.attr("error_code") = fault->error_code;
    error.attr("triple_fault") = fault->triple_fault;
  }
  PyErr_SetObject(type.ptr(), error.ptr());
  throw py::error_already_set();
}

void Check(const absl::Status& status) {
  if (!status.ok()) RaiseStatus(status);
}

template <typename T>
T Value(absl::StatusOr<T> value) {
  if (!value.ok()) RaiseStatus(value.status());
  return *std::move(value);
}

BackendKind Backend(const std::string& name) {
  return Value(ParseBackendName(name));
}

absl::Duration Seconds(double seconds) {
  if (!(seconds > 0)) {
    RaiseStatus(absl::InvalidArgumentError(absl::StrCat(
        "timeout must be a positive number of seconds, not ", seconds)));
  }
  return absl::Seconds(seconds);
}

py::dict ReportDict(const PhaseReport& r) {
  auto ms = [](absl::Duration d) { return absl::ToDoubleMilliseconds(d); };
  py::dict d;
  d["backend"] = std::string(BackendName(r.backend));
  d["create_ms"] = ms(r.create);
  d["load_ms"] = ms(r.load);
  d["boot_ms"] = ms(r.boot);
  d["restore_ms"] = ms(r.restore);
  d["snapshot_ms"] = ms(r.snapshot);
  d["reset_ms"] = ms(r.reset);
  d["calls"] = r.calls;
  d["last_call_ms"] = ms(r.last_call);
  d["total_calls_ms"] = ms(r.total_calls);
  return d;
}

py::dict StatsDict(const RestoreStats& s) {
  py::dict d;
  d["engine"] = std::string(RestoreEngineName(s.engine));
  d["faults"] = s.faults;
  d["prefetch_waits"] = s.prefetch_waits;
  d["chunks_read"] = s.chunks_read;
  d["bytes_read"] = s.bytes_read;
  d["zero_chunks"] = s.zero_chunks;
  d["prefetched"] = s.prefetched;
  d["mapped"] = s.mapped;
  d["populated_pages"] = s.populated_pages;
  d["memory_pages"] = s.memory_pages;
  d["pages_made_private"] = s.pages_made_private;
  d["reads_without_io_uring"] = s.reads_without_io_uring;
  d["resets"] = s.resets;
  d["pages_reset"] = s.pages_reset;
  d["shared_base_built"] = s.shared_base_built;
  d["reset_uses_dirty_log"] = s.reset_uses_dirty_log;
  return d;
}

py::dict InfoDict(const SnapshotInfo& i) {
  py::dict d;
  d["path"] = i.path;
  d["format"] = absl::StrCat(i.format_major, ".", i.format_minor);
  d["snapshot_id"] = i.snapshot_id;
  d["signer"] =
      i.signer.empty() ? py::object(py::none()) : py::object(py::str(i.signer));
  d["signature_verified"] = i.signature_verified;
  d["parent"] = i.parent_path.empty() ? py::object(py::none())
                                      : py::object(py::str(i.parent_path));
  d["source_backend"] = i.source_backend;
  d["guest"] = i.guest_name;
  d["created_unix_ns"] = absl::ToUnixNanos(i.created);
  d["file_size"] = i.file_size;
  d["memory_size"] = i.memory_size;
  d["chunk_size"] = i.chunk_size;
  d["chunks"] = i.chunks;
  d["zero_chunks"] = i.zero_chunks;
  d["parent_chunks"] = i.parent_chunks;
  d["frames"] = i.frames;
  d["stored_bytes"] = i.stored_bytes;
  d["working_set_chunks"] = i.working_set_chunks;
  d["packed_working_set_bytes"] = i.packed_working_set_bytes;
  d["compression_level"] = i.compression_level;
  d["compression_ratio"] = i.compression_ratio();
  d["restore_generation"] = i.restore_generation;
  return d;
}

// Runs `f` with the GIL released (a guest running, a file read or written)
// and returns its result; statuses are turned into exceptions afterwards,
// with the GIL held again.
template <typename F>
auto WithoutGil(F&& f) {
  py::gil_scoped_release release;
  return f();
}

// A Python callable kept alive by a Vm's host function. Its last reference
// may be dropped on a thread without the GIL (the Vm's destructor), so the
// deleter takes the GIL.
std::shared_ptr<py::object> KeepCallable(py::object callable) {
  return std::shared_ptr<py::object>(new py::object(std::move(callable)),
                                     [](py::object* o) {
                                       py::gil_scoped_acquire gil;
                                       delete o;
                                     });
}

// thaw.Vm: owns a thaw::Vm until close() (or the end of a `with` block).
//
// thaw::Vm itself runs one operation at a time, makes a second thread's
// operation wait its turn, refuses a host function that re-enters its own
// Vm, and keeps stats, console, report and symbol lookups safe from any
// thread (include/thaw/vm.h). What is left here is the Python object's own
// lifetime: operations hold `close_mutex_` shared, so close() waits for
// running calls before it frees the Vm, and the pointer is only taken under
// `pointer_mutex_`, so nothing sees a Vm that close() freed.
class PyVm {
 public:
  explicit PyVm(std::unique_ptr<Vm> vm) : vm_(std::move(vm)) {}

  static std::unique_ptr<PyVm> Create(const VmConfig& config) {
    return std::make_unique<PyVm>(
        Value(WithoutGil([&] { return Vm::Create(config); })));
  }

  // The Vm for a thread-safe method; raises if closed.
  std::shared_ptr<Vm> Shared() {
    std::shared_ptr<Vm> vm = Current();
    if (!vm) RaiseStatus(Closed());
    return vm;
  }
  bool closed() { return Current() == nullptr; }

  // Runs f(Vm&) -> Status or StatusOr with the GIL released; close() waits
  // until it is done.
  template <typename F>
  auto Exclusive(F&& f) {
    RefuseReentry();
    py::gil_scoped_release release;
    std::shared_lock<std::shared_mutex> open(close_mutex_);
    std::shared_ptr<Vm> vm = Current();
    using Result = decltype(f(*vm));
    if (!vm) return Result(Closed());
    Inside().push_back(this);
    Result result = f(*vm);
    Inside().pop_back();
    return result;
  }

  void Close() {
    RefuseReentry();
    std::shared_ptr<Vm> vm;
    py::gil_scoped_release release;  // host functions' deleters take it
    std::unique_lock<std::shared_mutex> closing(close_mutex_);
    {
      std::lock_guard<std::mutex> lock(pointer_mutex_);
      vm.swap(vm_);
    }
    vm.reset();
  }

  void LoadGuest(const std::string& path) {
    Check(Exclusive([&](Vm& v) { return v.LoadGuest(path); }));
  }
  void LoadProgram(const std::string& path, std::vector<std::string> args,
                   std::vector<std::string> env,
                   std::vector<std::pair<std::string, std::string>> files,
                   const std::string& cwd) {
    ProgramOptions options;
    options.args = std::move(args);
    options.env = std::move(env);
    for (auto& [host, guest] : files) options.files.push_back({host, guest});
    options.cwd = cwd;
    Check(Exclusive([&](Vm& v) { return v.LoadProgram(path, options); }));
  }
  void LoadKernel(const std::string& kernel, const std::string& initrd,
                  const std::string& cmdline, double boot_timeout) {
    LinuxBootOptions options;
    options.cmdline = cmdline;
    options.boot_timeout = Seconds(boot_timeout);
    Check(Exclusive(
        [&](Vm& v) { return v.LoadKernel(kernel, initrd, options); }));
  }
  py::dict ProgramStatsDict() {
    ProgramStats stats;
    {
      std::shared_ptr<Vm> vm = Shared();
      py::gil_scoped_release release;
      stats = vm->program_stats();
    }
    py::dict d;
    d["syscalls"] = stats.syscalls;
    d["unsupported"] = stats.unsupported;
    d["path_escapes"] = stats.path_escapes;
    return d;
  }
  void LoadGuestImage(py::bytes image, const std::string& name) {
    std::string bytes = image;
    Check(Exclusive([&](Vm& v) {
      return v.LoadGuestImage(
          absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()),
                              bytes.size()),
          name);
    }));
  }
  void Boot() {
    Check(Exclusive([](Vm& v) { return v.Boot(); }));
  }
  py::bytes Call(const std::string& function, py::bytes data) {
    std::string input = data;
    // Other Python threads run meanwhile; host functions take the GIL back
    // while they run.
    return py::bytes(
        Value(Exclusive([&](Vm& v) { return v.Call(function, input); })));
  }
  void RegisterHostFunction(const std::string& name, py::object callable) {
    if (!PyCallable_Check(callable.ptr())) {
      RaiseStatus(absl::InvalidArgumentError(
          absl::StrCat("host function \"", name, "\" is not callable")));
    }
    std::shared_ptr<py::object> fn = KeepCallable(std::move(callable));
    HostFunction host =
        [fn, name](absl::string_view input) -> absl::StatusOr<std::string> {
      py::gil_scoped_acquire gil;
      try {
        py::object result = (*fn)(py::bytes(input.data(), input.size()));
        if (py::isinstance<py::bytes>(result)) {
          return std::string(result.cast<py::bytes>());
        }
        if (py::isinstance<py::str>(result)) {
          return result.cast<std::string>();
        }
        if (result.is_none()) return std::string();
        return absl::InvalidArgumentError(absl::StrCat(
            "host function \"", name, "\" returned ",
            std::string(py::str(result.get_type().attr("__name__"))),
            ", not bytes"));
      } catch (py::error_already_set& e) {
        // The guest sees THAW_ERR_HOST with this message; the Python
        // exception stops here.
        return absl::InternalError(
            absl::StrCat("host function \"", name, "\" raised ", e.what()));
      }
    };
    Check(Exclusive(
        [&](Vm& v) { return v.RegisterHostFunction(name, std::move(host)); }));
  }
  void Snapshot(const std::string& path, int compression_level,
                uint32_t chunk_size, std::optional<std::string> parent,
                unsigned threads, std::optional<SigningKey> signing_key) {
    SnapshotOptions options;
    options.signing_key = std::move(signing_key);
    options.compression_level = compression_level;
    options.chunk_size = chunk_size;
    options.threads = threads;
    if (parent) options.parent = *parent;
    Check(Exclusive([&](Vm& v) { return v.Snapshot(path, options); }));
  }
  void Reset() {
    Check(Exclusive([](Vm& v) { return v.Reset(); }));
  }
  void WriteWorkingSet(std::optional<SigningKey> signing_key) {
    Check(Exclusive([&](Vm& v) {
      return signing_key.has_value() ? v.WriteWorkingSet(*signing_key)
                                     : v.WriteWorkingSet();
    }));
  }
  py::bytes ReadMemory(uint64_t address, uint64_t size) {
    return py::bytes(Value(
        Exclusive([&](Vm& v) { return v.ReadGuestMemory(address, size); })));
  }

 private:
  std::shared_ptr<Vm> Current() {
    std::lock_guard<std::mutex> lock(pointer_mutex_);
    return vm_;
  }
  static absl::Status Closed() {
    return absl::FailedPreconditionError("this Vm is closed");
  }
  // The Vms whose operation this thread is inside (a host function runs on
  // the thread of the call that invoked it).
  static std::vector<const PyVm*>& Inside() {
    thread_local std::vector<const PyVm*> inside;
    return inside;
  }
  // thaw::Vm refuses re-entry too, but close() must not wait for itself,
  // and an operation must not take close_mutex_ twice on one thread.
  void RefuseReentry() {
    for (const PyVm* vm : Inside()) {
      if (vm == this) {
        RaiseStatus(absl::FailedPreconditionError(
            "this Vm is running a call on this thread: a host function "
            "cannot call into, change or close its own Vm"));
      }
    }
  }

  std::shared_mutex close_mutex_;  // shared by operations, unique by close
  std::mutex pointer_mutex_;
  std::shared_ptr<Vm> vm_;
};

// A console sink calling `callable(bytes)` on the thread that runs the
// guest, with the GIL taken for it. An exception it raises is reported as
// unraisable (sys.unraisablehook) and does not stop the guest.
std::function<void(absl::string_view)> ConsoleSink(py::object callable) {
  if (callable.is_none()) return nullptr;
  if (!PyCallable_Check(callable.ptr())) {
    RaiseStatus(absl::InvalidArgumentError("console_sink is not callable"));
  }
  std::shared_ptr<py::object> fn = KeepCallable(std::move(callable));
  return [fn](absl::string_view text) {
    py::gil_scoped_acquire gil;
    try {
      (*fn)(py::bytes(text.data(), text.size()));
    } catch (py::error_already_set& e) {
      e.discard_as_unraisable("thaw console_sink");
    }
  };
}

GuestKind Kind(const std::string& name) {
  if (name == "function") return GuestKind::kFunction;
  if (name == "program") return GuestKind::kLinuxProgram;
  if (name == "linux-vm") return GuestKind::kLinuxVm;
  RaiseStatus(absl::InvalidArgumentError(
      absl::StrCat("guest_kind \"", name,
                   "\": expected 'function', 'program' or 'linux-vm'")));
}

VmConfig MakeConfig(uint64_t memory_size, const std::string& backend,
                    double call_timeout, uint64_t input_buffer_size,
                    uint64_t output_buffer_size, uint64_t stack_size,
                    uint64_t console_limit, py::object console_sink,
                    const std::string& guest_kind, bool trace_syscalls,
                    bool huge_pages, bool worker_process, int vcpus) {
  VmConfig c;
  c.vcpus = vcpus;
  c.worker_process = worker_process;
  c.guest_kind = Kind(guest_kind);
  c.trace_syscalls = trace_syscalls;
  c.huge_pages = huge_pages;
  c.console_sink = ConsoleSink(std::move(console_sink));
  c.memory_size = memory_size;
  c.backend = Backend(backend);
  c.call_timeout = Seconds(call_timeout);
  c.input_buffer_size = input_buffer_size;
  c.output_buffer_size = output_buffer_size;
  c.stack_size = stack_size;
  c.console_limit = console_limit;
  return c;
}

RestoreOptions MakeRestoreOptions(const std::string& engine,
                                  const std::string& backend,
                                  double call_timeout, bool record_working_set,
                                  uint64_t console_limit,
                                  py::object console_sink, bool huge_pages,
                                  bool worker_process) {
  RestoreOptions options;
  options.worker_process = worker_process;
  options.huge_pages = huge_pages;
  options.console_sink = ConsoleSink(std::move(console_sink));
  options.engine = Value(ParseRestoreEngine(engine));
  options.backend = Backend(backend);
  options.call_timeout = Seconds(call_timeout);
  options.record_working_set = record_working_set;
  options.console_limit = console_limit;
  return options;
}

// thaw.Lease: one Vm of a Pool, held until release() (or the end of a
// `with` block). A call holds `release_mutex_` shared, so release() from
// another thread waits for it instead of freeing the Vm under it.
class PyLease {
 public:
  explicit PyLease(Lease lease) : lease_(std::move(lease)) {}
  ~PyLease() {
    py::gil_scoped_release release;
    std::unique_lock<std::shared_mutex> lock(release_mutex_);
    lease_.reset();
  }

  py::bytes Call(const std::string& function, py::bytes data) {
    std::string input = data;
    absl::StatusOr<std::string> reply;
    {
      py::gil_scoped_release release;
      std::shared_lock<std::shared_mutex> lock(release_mutex_);
      reply = lease_ ? (*lease_)->Call(function, input)
                     : absl::StatusOr<std::string>(Released());
    }
    return py::bytes(Value(std::move(reply)));
  }
  void Discard() {
    std::shared_lock<std::shared_mutex> lock(release_mutex_);
    if (lease_) lease_->Discard();
  }
  void Release() {
    absl::Status status;
    {
      py::gil_scoped_release release;
      std::unique_lock<std::shared_mutex> lock(release_mutex_);
      if (lease_) status = lease_->Release();
      lease_.reset();
    }
    Check(status);
  }
  std::string Start() {
    std::shared_lock<std::shared_mutex> lock(release_mutex_);
    if (!lease_) RaiseStatus(Released());
    return std::string(StartKindName(lease_->start()));
  }
  double StartSeconds() {
    std::shared_lock<std::shared_mutex> lock(release_mutex_);
    if (!lease_) RaiseStatus(Released());
    return absl::ToDoubleSeconds(lease_->start_time());
  }
  double QueueWaitSeconds() {
    std::shared_lock<std::shared_mutex> lock(release_mutex_);
    if (!lease_) RaiseStatus(Released());
    return absl::ToDoubleSeconds(lease_->queue_wait());
  }
  std::string Console() {
    std::shared_lock<std::shared_mutex> lock(release_mutex_);
    if (!lease_) RaiseStatus(Released());
    return (*lease_)->console();
  }
  bool released() {
    std::shared_lock<std::shared_mutex> lock(release_mutex_);
    return !lease_.has_value();
  }

 private:
  static absl::Status Released() {
    return absl::FailedPreconditionError("this lease was released");
  }
  std::shared_mutex release_mutex_;
  std::optional<Lease> lease_;
};

PoolPolicy MakePolicy(int max_concurrency, int provisioned,
                      const std::string& isolation, double idle_reclaim,
                      const std::string& engine, const std::string& backend,
                      double call_timeout) {
  PoolPolicy policy;
  policy.max_concurrency = max_concurrency;
  policy.provisioned = provisioned;
  policy.isolation = Value(ParseIsolation(isolation));
  policy.idle_reclaim = Seconds(idle_reclaim);
  policy.restore.engine = Value(ParseRestoreEngine(engine));
  policy.restore.backend = Backend(backend);
  policy.restore.call_timeout = Seconds(call_timeout);
  return policy;
}

py::dict PoolStatsDict(const PoolStats& s) {
  py::dict d;
  d["warm_starts"] = s.warm_starts;
  d["restored_starts"] = s.restored_starts;
  d["cold_starts"] = s.cold_starts;
  d["background_restores"] = s.background_restores;
  d["queue_waits"] = s.queue_waits;
  d["queue_wait_s"] = absl::ToDoubleSeconds(s.queue_wait_time);
  d["throttles"] = s.throttles;
  d["resets"] = s.resets;
  d["discards"] = s.discards;
  d["reclaimed"] = s.reclaimed;
  d["start_failures"] = s.start_failures;
  d["idle"] = s.idle;
  d["leased"] = s.leased;
  d["starting"] = s.starting;
  return d;
}

}  // namespace
}  // namespace thaw::python

PYBIND11_MODULE(_thaw, m) {
  using namespace thaw;
  using namespace thaw::python;
  m.doc() =
      "thaw: micro-VM sandboxes that boot a function guest, snapshot it after "
      "its init and restore it far faster than it boots.\n\n"
      "    with thaw.Vm(thaw.VmConfig(memory_size=64 << 20)) as vm:\n"
      "        vm.load_guest('echo.elf')\n"
      "        vm.boot()\n"
      "        vm.snapshot('fn.thaw')\n"
      "    with thaw.restore('fn.thaw', engine='prefetch') as clone:\n"
      "        clone.call('echo', b'hi')\n\n"
      "Errors raise thaw.Error or a subclass: CorruptSnapshot, Timeout, "
      "GuestFault (with vector, rip, cr2), InvalidArgument, SignatureError.";

  Exceptions& c = Classes();
  py::object builtins = py::module_::import("builtins");
  auto make = [&](const char* name, py::tuple bases, const char* doc) {
    py::dict attrs;
    attrs["__doc__"] = doc;
    attrs["__module__"] = "thaw";
    py::object type = py::reinterpret_borrow<py::object>(
        reinterpret_cast<PyObject*>(&PyType_Type))(name, bases, attrs);
    m.attr(name) = type;
    return type;
  };
  c.error = make("Error", py::make_tuple(builtins.attr("Exception")),
                 "Any thaw failure. `code` is the status code name "
                 "(e.g. 'FAILED_PRECONDITION'); the message says what failed, "
                 "on what, and why.");
  c.corrupt = make("CorruptSnapshot", py::make_tuple(c.error),
                   "A snapshot file is damaged (truncated, a flipped bit, a "
                   "bad index); the message names the file and the damage.");
  c.timeout = make("Timeout", py::make_tuple(c.error),
                   "A boot or call ran past its timeout.");
  c.guest_fault = make(
      "GuestFault", py::make_tuple(c.error),
      "The guest took a CPU exception. Attributes: vector (14 = page fault), "
      "rip, cr2, error_code, triple_fault. The Vm refuses further calls.");
  c.throttled =
      make("Throttled", py::make_tuple(c.error),
           "Pool.acquire found every sandbox of the pool in use until its "
           "timeout (max_concurrency reached).");
  c.signature = make(
      "SignatureError",
      py::make_tuple(c.error, builtins.attr("PermissionError")),
      "A snapshot opened with a key is unsigned, signed by another key, or "
      "its signature does not verify; the message names the file and keys.");
  c.invalid_argument = make(
      "InvalidArgument", py::make_tuple(c.error, builtins.attr("ValueError")),
      "An argument was out of range or malformed (including guest addresses "
      "a hypercall passed).");

  py::class_<VmConfig>(
      m, "VmConfig", "How a Vm is built. Sizes in bytes, timeouts in seconds.")
      .def(
          py::init(&MakeConfig), py::arg("memory_size") = 64ull << 20,
          py::arg("backend") = "auto", py::arg("call_timeout") = 10.0,
          py::arg("input_buffer_size") = 1ull << 20,
          py::arg("output_buffer_size") = 1ull << 20,
          py::arg("stack_size") = 256ull << 10,
          py::arg("console_limit") = 1ull << 20,
          py::arg("console_sink") = py::none(),
          py::arg("guest_kind") = "function", py::arg("trace_syscalls") = false,
          py::arg("huge_pages") = false, py::arg("worker_process") = false,
          py::arg("vcpus") = 1,
          "memory_size: a multiple of 2 MiB from 4 MiB to 64 GiB; backend: "
          "'auto', 'kvm' or 'emulated'; call_timeout: seconds per boot or "
          "call; console_sink: called with each piece of console output "
          "(bytes) as the guest writes it; guest_kind: 'function' (load_guest) "
          "or 'program' (load_program, an unmodified Linux program) or "
          "'linux-vm' (load_kernel: a Linux kernel on KVM, doc/linux-vm.md); "
          "vcpus: 1-16 for a Linux VM; "
          "trace_syscalls: write a program's system calls to the console; "
          "huge_pages: back guest memory with 2 MiB pages; worker_process: "
          "run the Vm in a confined worker process of its own (emulated "
          "backend, function guests).")
      .def_readwrite("worker_process", &VmConfig::worker_process,
                     "Run the Vm in a confined worker process.")
      .def_property_readonly(
          "guest_kind",
          [](const VmConfig& c) {
            return std::string(c.guest_kind == GuestKind::kFunction ? "function"
                               : c.guest_kind == GuestKind::kLinuxProgram
                                   ? "program"
                                   : "linux-vm");
          },
          "'function', 'program' or 'linux-vm'.")
      .def_readwrite("vcpus", &VmConfig::vcpus,
                     "Virtual CPUs (a Linux VM: 1 to 16).")
      .def_readwrite("memory_size", &VmConfig::memory_size,
                     "Guest memory in bytes (a multiple of 2 MiB).")
      .def_property(
          "backend",
          [](const VmConfig& c) { return std::string(BackendName(c.backend)); },
          [](VmConfig& c, const std::string& name) {
            c.backend = Backend(name);
          },
          "'auto' (KVM where it can run guests, else emulated), 'kvm' or "
          "'emulated'.")
      .def_property(
          "call_timeout",
          [](const VmConfig& c) {
            return absl::ToDoubleSeconds(c.call_timeout);
          },
          [](VmConfig& c, double s) { c.call_timeout = Seconds(s); },
          "Seconds a boot or a call may run; time paused does not count.")
      .def_readwrite("input_buffer_size", &VmConfig::input_buffer_size,
                     "Largest call input, in bytes.")
      .def_readwrite("output_buffer_size", &VmConfig::output_buffer_size,
                     "Largest reply, in bytes.")
      .def_readwrite("stack_size", &VmConfig::stack_size,
                     "The guest's stack, in bytes.")
      .def_readwrite("console_limit", &VmConfig::console_limit,
                     "Console bytes kept (the most recent).")
      .def("__repr__", [](const VmConfig& c) {
        return absl::StrCat(
            "thaw.VmConfig(memory_size=", c.memory_size, ", backend='",
            BackendName(c.backend),
            "', call_timeout=", absl::ToDoubleSeconds(c.call_timeout), ")");
      });

  py::class_<VerifyKey>(m, "VerifyKey",
                        "The public half of a SigningKey: what a host that "
                        "restores signed snapshots needs.")
      .def_static(
          "load",
          [](const std::string& path) { return Value(VerifyKey::Load(path)); },
          py::arg("path"), "Reads a key file ('thaw-verify-key ed25519 ...').")
      .def_static(
          "parse",
          [](const std::string& text) { return Value(VerifyKey::Parse(text)); },
          py::arg("text"), "Parses 'thaw-verify-key ed25519 <64 hex>'.")
      .def(
          "save",
          [](const VerifyKey& self, const std::string& path) {
            Check(self.Save(path));
          },
          py::arg("path"), "Writes the key file atomically.")
      .def_property_readonly("name", &VerifyKey::Name,
                             "'ed25519:<hex>', as errors name the key.")
      .def("__str__", &VerifyKey::ToString)
      .def("__eq__",
           [](const VerifyKey& a, const VerifyKey& b) { return a == b; })
      .def("__repr__", [](const VerifyKey& self) {
        return absl::StrCat("thaw.VerifyKey('", self.Name(), "')");
      });
  m.attr("VerifyKey").attr("__module__") = "thaw";
  py::class_<SigningKey>(m, "SigningKey",
                         "An ed25519 key that signs snapshots "
                         "(Vm.snapshot(..., signing_key=key)).")
      .def_static(
          "generate", []() { return Value(SigningKey::Generate()); },
          "A new key from the system's random source.")
      .def_static(
          "load",
          [](const std::string& path) { return Value(SigningKey::Load(path)); },
          py::arg("path"),
          "Reads a secret key file; refuses one group or others may read.")
      .def(
          "save",
          [](const SigningKey& self, const std::string& path) {
            Check(self.Save(path));
          },
          py::arg("path"),
          "Writes the secret key, mode 0600; never replaces a file.")
      .def_property_readonly("verify_key", &SigningKey::verify_key,
                             "The public key that checks its signatures.")
      .def("__repr__", [](const SigningKey& self) {
        return absl::StrCat("thaw.SigningKey(", self.verify_key().Name(), ")");
      });
  m.attr("SigningKey").attr("__module__") = "thaw";

  py::class_<PyVm>(m, "Vm",
                   "A micro-VM running one function guest. Use it as a context "
                   "manager (or call close()) to release it. Calls release the "
                   "GIL while the guest runs, so Vms in different threads run "
                   "at once.")
      .def(py::init([](std::optional<VmConfig> config) {
             return PyVm::Create(config ? *config : VmConfig{});
           }),
           py::arg("config") = py::none(),
           "Creates guest memory and a vCPU (thaw.VmConfig() if no config).")
      .def("load_kernel", &PyVm::LoadKernel, py::arg("kernel"),
           py::arg("initrd"), py::arg("cmdline") = "",
           py::arg("boot_timeout") = 120.0,
           "Loads a Linux kernel (bzImage or vmlinux) and an initramfs whose "
           "/init is thaw's agent into a Vm made with guest_kind='linux-vm' "
           "(KVM only); boot() then waits up to boot_timeout seconds for the "
           "agent, and call(name, input) runs /thaw/functions/NAME in the "
           "guest. cmdline: empty for thaw's default.")
      .def(
          "load_program", &PyVm::LoadProgram, py::arg("path"),
          py::arg("args") = std::vector<std::string>(),
          py::arg("env") = std::vector<std::string>(),
          py::arg("files") = std::vector<std::pair<std::string, std::string>>(),
          py::arg("cwd") = "/",
          "Loads an unmodified Linux program (a Vm made with "
          "guest_kind='program'): args is argv (default: the path), env "
          "'KEY=VALUE' strings, files (host_dir, guest_dir) pairs it may "
          "read. boot() runs it until it first reads its request channel.")
      .def_property_readonly(
          "program_stats", &PyVm::ProgramStatsDict,
          "A program's system calls so far: syscalls, unsupported {name: "
          "count}, path_escapes.")
      .def("load_guest", &PyVm::LoadGuest, py::arg("path"),
           "Loads a function-guest ELF file. Once, before boot().")
      .def("load_guest_image", &PyVm::LoadGuestImage, py::arg("image"),
           py::arg("name") = "<memory>", "Loads a guest ELF from bytes.")
      .def("boot", &PyVm::Boot,
           "Runs the guest's init until it parks, ready for calls.")
      .def("call", &PyVm::Call, py::arg("function"),
           py::arg("data") = py::bytes(),
           "Calls the guest function and returns its reply (bytes).")
      .def("register_host_function", &PyVm::RegisterHostFunction,
           py::arg("name"), py::arg("function"),
           "Makes function(data: bytes) -> bytes callable by the guest as "
           "`name`. An exception it raises reaches the guest as an error "
           "(THAW_ERR_HOST with the message); the host goes on.")
      .def("snapshot", &PyVm::Snapshot, py::arg("path"),
           py::arg("compression_level") = 3, py::arg("chunk_size") = 64u << 10,
           py::arg("parent") = py::none(), py::arg("threads") = 0,
           py::arg("signing_key") = py::none(),
           "Writes a snapshot of this parked Vm atomically. parent: the "
           "snapshot this Vm was restored from, for a diff snapshot. "
           "threads: compressing threads (0: one per core). signing_key: a "
           "thaw.SigningKey to sign the file with.")
      .def("reset", &PyVm::Reset,
           "Returns a Vm restored with engine='shared' to its snapshot.")
      .def("write_working_set", &PyVm::WriteWorkingSet,
           py::arg("signing_key") = py::none(),
           "After a restore with record_working_set=True and one call: "
           "stores the chunks it touched in the snapshot, for "
           "engine='prefetch'. A signed snapshot needs its signing_key.")
      .def("read_memory", &PyVm::ReadMemory, py::arg("address"),
           py::arg("size"), "Copies guest memory out (bytes).")
      .def(
          "find_symbol",
          [](PyVm& self, const std::string& name) {
            return Value(self.Shared()->FindGuestSymbol(name));
          },
          py::arg("name"), "The address of a symbol of the guest's ELF.")
      .def(
          "pause", [](PyVm& self) { self.Shared()->Pause(); },
          "Stops the guest at its next instruction until resume().")
      .def(
          "resume", [](PyVm& self) { self.Shared()->Resume(); },
          "Lets a paused guest run again.")
      .def_property_readonly(
          "paused", [](PyVm& self) { return self.Shared()->paused(); },
          "Whether pause() is in effect.")
      .def_property_readonly(
          "backend",
          [](PyVm& self) {
            return std::string(BackendName(self.Shared()->backend()));
          },
          "'kvm' or 'emulated'.")
      .def_property_readonly(
          "console",
          [](PyVm& self) { return py::bytes(self.Shared()->console()); },
          "The guest's console output so far (bytes).")
      .def(
          "write_console",
          [](PyVm& self, py::bytes data) {
            return Value(self.Shared()->WriteConsole(std::string(data)));
          },
          py::arg("data"),
          "A Linux VM: queues bytes for its console (ttyS0); returns how "
          "many were taken (the UART holds 64 KiB).")
      .def_property_readonly(
          "report",
          [](PyVm& self) { return ReportDict(self.Shared()->report()); },
          "Where the time went: a dict of *_ms durations and counts.")
      .def_property_readonly(
          "restore_stats",
          [](PyVm& self) { return StatsDict(self.Shared()->restore_stats()); },
          "What a restore did, counted (faults, chunks read, ...).")
      .def_property_readonly("closed", &PyVm::closed,
                             "Whether close() has released the Vm.")
      .def("close", &PyVm::Close, "Releases the Vm. Idempotent.")
      .def(
          "__enter__", [](py::object self) { return self; },
          "Returns the Vm; the `with` block closes it.")
      .def(
          "__exit__", [](PyVm& self, py::args) { self.Close(); },
          "Closes the Vm.");

  // help() shows the package the user imported, not the extension inside.
  m.attr("Vm").attr("__module__") = "thaw";
  m.attr("VmConfig").attr("__module__") = "thaw";

  py::class_<Snapshot>(
      m, "Snapshot",
      "A snapshot file opened once (header and manifest checked) and "
      "restored many times. With engine='shared' the decompressed image is "
      "built by the first restore and kept while this object (or a Vm "
      "restored from it) lives.")
      .def(py::init([](const std::string& path, std::optional<VerifyKey> key) {
             return Value(WithoutGil([&] {
               return key.has_value() ? Snapshot::Open(path, *key)
                                      : Snapshot::Open(path);
             }));
           }),
           py::arg("path"), py::arg("key") = py::none(),
           "Opens and checks a snapshot file; raises CorruptSnapshot for a "
           "damaged one. key: a thaw.VerifyKey the file (and each diff "
           "parent) must be signed by; raises SignatureError otherwise.")
      .def(
          "restore",
          [](const Snapshot& self, const std::string& engine,
             const std::string& backend, double call_timeout,
             bool record_working_set, uint64_t console_limit,
             py::object console_sink, bool huge_pages, bool worker_process) {
            RestoreOptions options = MakeRestoreOptions(
                engine, backend, call_timeout, record_working_set,
                console_limit, std::move(console_sink), huge_pages,
                worker_process);
            return std::make_unique<PyVm>(
                Value(WithoutGil([&] { return self.Restore(options); })));
          },
          py::arg("engine") = "prefetch", py::arg("backend") = "auto",
          py::arg("call_timeout") = 10.0, py::arg("record_working_set") = false,
          py::arg("console_limit") = 1ull << 20,
          py::arg("console_sink") = py::none(), py::arg("huge_pages") = false,
          py::arg("worker_process") = false,
          "A new Vm restored from this snapshot. engine: 'eager', 'lazy', "
          "'prefetch' or 'shared'; worker_process: in a confined worker "
          "process of its own.")
      .def_property_readonly(
          "info", [](const Snapshot& self) { return InfoDict(self.Info()); },
          "The header and manifest summarized (a dict), read at open.")
      .def(
          "verify",
          [](const Snapshot& self) {
            Check(WithoutGil([&] { return self.Verify(); }));
          },
          "Checks every frame's checksums and the padding; raises "
          "CorruptSnapshot if the file (or a parent) is not intact.")
      .def_property_readonly("path", &Snapshot::path,
                             "The file (or URL) opened.")
      .def_property_readonly(
          "remote_stats",
          [](const Snapshot& self) {
            const RemoteStats r = self.remote_stats();
            py::dict d;
            d["requests"] = r.requests;
            d["retries"] = r.retries;
            d["bytes_fetched"] = r.bytes_fetched;
            d["frames_fetched"] = r.frames_fetched;
            d["cache_hits"] = r.cache_hits;
            d["cache_misses"] = r.cache_misses;
            d["bytes_deduplicated"] = r.bytes_deduplicated;
            d["frames_on_host"] = r.frames_on_host;
            return d;
          },
          "For a snapshot opened by URL: what reading it has cost (a dict: "
          "requests, retries, bytes_fetched, frames_fetched, cache_hits, "
          "cache_misses, bytes_deduplicated, frames_on_host); zeros for a "
          "local file.")
      .def("__repr__", [](const Snapshot& self) {
        return absl::StrCat("thaw.Snapshot('", self.path(), "')");
      });
  m.attr("Snapshot").attr("__module__") = "thaw";

  m.def(
      "restore",
      [](const std::string& path, const std::string& engine,
         const std::string& backend, double call_timeout,
         bool record_working_set, uint64_t console_limit,
         py::object console_sink, bool huge_pages,
         std::optional<VerifyKey> verify_key, bool worker_process) {
        RestoreOptions options = MakeRestoreOptions(
            engine, backend, call_timeout, record_working_set, console_limit,
            std::move(console_sink), huge_pages, worker_process);
        options.verify_key = std::move(verify_key);
        return std::make_unique<PyVm>(
            Value(WithoutGil([&] { return Vm::Restore(path, options); })));
      },
      py::arg("path"), py::arg("engine") = "prefetch",
      py::arg("backend") = "auto", py::arg("call_timeout") = 10.0,
      py::arg("record_working_set") = false,
      py::arg("console_limit") = 1ull << 20,
      py::arg("console_sink") = py::none(), py::arg("huge_pages") = false,
      py::arg("verify_key") = py::none(), py::arg("worker_process") = false,
      "Restores a snapshot into a new Vm (thaw.Snapshot(path).restore(...) "
      "without keeping the handle). engine: 'eager', 'lazy', 'prefetch' or "
      "'shared'. Raises CorruptSnapshot for a damaged file; with "
      "verify_key, SignatureError for a file not signed by it.");
  py::class_<PyLease>(m, "Lease",
                      "One sandbox of a Pool, held until release() or the "
                      "end of a `with` block, when the pool's isolation "
                      "applies (reset, reuse, or drop).")
      .def("call", &PyLease::Call, py::arg("function"),
           py::arg("input") = py::bytes(),
           "Calls the guest function; raises like Vm.call. A lease whose "
           "call faulted or timed out is dropped by the pool, never reused.")
      .def("discard", &PyLease::Discard,
           "Drop this sandbox when the lease ends, whatever the policy.")
      .def("release", &PyLease::Release,
           "Returns the sandbox to the pool now. Idempotent.")
      .def_property_readonly("start", &PyLease::Start,
                             "'warm' (was idle), 'restored' (restored for "
                             "this lease) or 'cold' (booted for it).")
      .def_property_readonly("start_seconds", &PyLease::StartSeconds,
                             "Time spent restoring or booting for this "
                             "lease (0 for a warm start).")
      .def_property_readonly("queue_wait_seconds", &PyLease::QueueWaitSeconds,
                             "Time acquire() waited for a returned sandbox.")
      .def_property_readonly("console", &PyLease::Console,
                             "The sandbox's console output so far.")
      .def_property_readonly("released", &PyLease::released)
      .def(
          "__enter__", [](py::object self) { return self; },
          "Returns the lease; the `with` block releases it.")
      .def(
          "__exit__", [](PyLease& self, py::args) { self.Release(); },
          "Releases the lease.");
  m.attr("Lease").attr("__module__") = "thaw";

  py::class_<Pool>(
      m, "Pool",
      "Sandboxes of one snapshot kept ready and leased one request at a "
      "time (include/thaw/pool.h). isolation: 'reset' (Vm.reset after each "
      "lease; engine 'shared'), 'reuse' (kept as it is), 'restore' (a fresh "
      "restore per lease) or 'boot' (Pool.boot only).")
      .def(py::init([](const Snapshot& snapshot, int max_concurrency,
                       int provisioned, const std::string& isolation,
                       double idle_reclaim, const std::string& engine,
                       const std::string& backend, double call_timeout) {
             PoolPolicy policy =
                 MakePolicy(max_concurrency, provisioned, isolation,
                            idle_reclaim, engine, backend, call_timeout);
             return Value(
                 WithoutGil([&] { return Pool::Create(snapshot, policy); }));
           }),
           py::arg("snapshot"), py::arg("max_concurrency") = 8,
           py::arg("provisioned") = 0, py::arg("isolation") = "reset",
           py::arg("idle_reclaim") = 600.0, py::arg("engine") = "shared",
           py::arg("backend") = "auto", py::arg("call_timeout") = 10.0,
           "A pool restoring from `snapshot` (a thaw.Snapshot); the "
           "provisioned sandboxes are restored before it returns.")
      .def_static(
          "boot",
          [](const std::string& guest, const std::string& snapshot_path,
             std::optional<VmConfig> config, int max_concurrency,
             int provisioned, const std::string& isolation, double idle_reclaim,
             const std::string& engine, const std::string& backend,
             double call_timeout) {
            GuestRecipe recipe;
            if (config) recipe.config = *config;
            recipe.path = guest;
            PoolPolicy policy =
                MakePolicy(max_concurrency, provisioned, isolation,
                           idle_reclaim, engine, backend, call_timeout);
            return Value(WithoutGil(
                [&] { return Pool::Boot(recipe, snapshot_path, policy); }));
          },
          py::arg("guest"), py::arg("snapshot_path"),
          py::arg("config") = py::none(), py::arg("max_concurrency") = 8,
          py::arg("provisioned") = 0, py::arg("isolation") = "reset",
          py::arg("idle_reclaim") = 600.0, py::arg("engine") = "shared",
          py::arg("backend") = "auto", py::arg("call_timeout") = 10.0,
          "Boots the function guest `guest` once (its init runs), snapshots "
          "it to snapshot_path and makes a pool from it. A failed init "
          "raises with the guest's console in the message.")
      .def(
          "acquire",
          [](Pool& self, double timeout) {
            if (!(timeout >= 0)) {
              RaiseStatus(absl::InvalidArgumentError(
                  absl::StrCat("timeout must be >= 0 seconds, not ", timeout)));
            }
            return std::make_unique<PyLease>(Value(WithoutGil([&] {
              return self.Acquire(absl::Now() + absl::Seconds(timeout));
            })));
          },
          py::arg("timeout") = 0.0,
          "A sandbox for one request, waiting up to `timeout` seconds for "
          "one when max_concurrency are in use; raises thaw.Throttled then.")
      .def_property_readonly(
          "stats", [](const Pool& self) { return PoolStatsDict(self.stats()); },
          "Counters since the pool was made (warm/restored/cold starts, "
          "queue waits, throttles, resets, discards, reclaimed) and the "
          "idle/leased/starting sandboxes now.");
  m.attr("Pool").attr("__module__") = "thaw";

  m.def(
      "inspect",
      [](const std::string& path) {
        return InfoDict(
            Value(WithoutGil([&] { return InspectSnapshot(path); })));
      },
      py::arg("path"), "A snapshot's header and manifest summarized (a dict).");
  m.def(
      "verify",
      [](const std::string& path, std::optional<VerifyKey> key) {
        Check(WithoutGil([&] {
          return VerifySnapshot(path, nullptr,
                                key.has_value() ? &*key : nullptr);
        }));
      },
      py::arg("path"), py::arg("key") = py::none(),
      "Checks every checksum of a snapshot; raises CorruptSnapshot if not "
      "intact, and with key SignatureError if not signed by it.");
  m.def(
      "push",
      [](const std::string& path, const std::string& url) {
        Check(WithoutGil([&] { return PushSnapshot(path, url); }));
      },
      py::arg("path"), py::arg("url"),
      "Uploads a snapshot file (checked first) to a store: http(s)://... "
      "(PUT) or s3://bucket/key (AWS_* environment variables; multipart "
      "for large files).");
  m.def(
      "pull",
      [](const std::string& url, const std::string& path) {
        Check(WithoutGil([&] { return PullSnapshot(url, path); }));
      },
      py::arg("url"), py::arg("path"),
      "Downloads a snapshot from a store into path, checked end to end "
      "before it takes the name.");
  m.def(
      "set_thread_confinement",
      [](bool enabled) { SetThreadConfinement(enabled); }, py::arg("enabled"),
      "Whether thaw's own threads (fault server, prefetcher, verifier, "
      "watchdog) started from now on run under their seccomp allow-list "
      "(on by default).");
  m.def(
      "check_kvm",
      []() -> std::optional<std::string> {
        absl::Status status = CheckKvm();
        if (status.ok()) return std::nullopt;
        return std::string(status.message());
      },
      "None if KVM can run guests here, else why not.");
}
