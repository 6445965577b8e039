#include "lib/worker/worker_client.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/errno_status.h"
#include "lib/linux/linux_program.h"
#include "lib/signing_access.h"
#include "lib/snapshot_state.h"
#include "lib/vm_internal.h"
#include "lib/worker/status_proto.h"
#include "lib/worker/worker_launcher.h"
#include "snapshot/atomic_file.h"
#include "snapshot/writer.h"

namespace thaw::internal {
namespace {

worker::proto::Settings SettingsOf(const VmSettings& s) {
  worker::proto::Settings out;
  out.set_call_timeout_ns(absl::ToInt64Nanoseconds(s.call_timeout));
  out.set_console_limit(s.console_limit);
  out.set_huge_pages(s.huge_pages);
  out.set_trace_syscalls(s.trace_syscalls);
  out.set_console_sink(static_cast<bool>(s.console_sink));
  return out;
}

absl::Status CheckSettings(const VmSettings& s) {
  if (s.backend == BackendKind::kKvm) {
    return absl::InvalidArgumentError(
        "worker_process is for the emulated backend (a KVM guest is already "
        "isolated by the hardware); use backend kEmulated or kAuto");
  }
  return absl::OkStatus();
}

// The payload memory holds both buffers; each is at most 1 GiB.
absl::Status CheckBufferSizes(uint64_t input, uint64_t output) {
  if (input > (1ull << 30) || output > (1ull << 30)) {
    return absl::InvalidArgumentError(
        "worker_process: buffers over 1 GiB are not supported");
  }
  return absl::OkStatus();
}

std::string DescribeWait(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return absl::StrFormat(
        "was killed by signal %d (%s)%s", sig, strsignal(sig),
        sig == SIGSYS ? ": a system call outside its seccomp allow-list" : "");
  }
  if (WIFEXITED(status)) {
    return absl::StrCat(
        "exited with status ",
        WEXITSTATUS(status));  // e.g. 3: could not confine itself
  }
  return "gone";
}

}  // namespace

WorkerClient::~WorkerClient() {
  channel_.reset();  // the worker sees the connection close and exits
  if (payload_ != nullptr) munmap(payload_, payload_size_);
  if (payload_fd_ >= 0) close(payload_fd_);
  if (pid_ > 0) {
    if (paused_.load()) kill(pid_, SIGCONT);
    int status;
    // A worker that does not exit at once (a guest still running) is killed.
    for (int i = 0; i < 100; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) return;
      usleep(1000);
    }
    KillWorker();
  }
}

absl::Status WorkerClient::Start() {
  auto started = worker::WorkerLauncher::Get().Take();
  if (!started.ok()) return started.status();
  pid_ = started->pid;
  channel_ = std::make_unique<worker::Channel>(started->fd);
  LimitWaits();
  return absl::OkStatus();
}

// The worker's own watchdog ends a guest at call_timeout, so a worker
// always has something to say within that and some slack; one that does
// not (taken over, or stuck) is cut off rather than left to hang the
// calling thread.
void WorkerClient::LimitWaits() {
  if (config_.call_timeout == absl::InfiniteDuration()) return;
  answer_limit_ = config_.call_timeout + answer_slack_;
  const timeval limit = absl::ToTimeval(answer_limit_);
  (void)setsockopt(channel_->fd(), SOL_SOCKET, SO_RCVTIMEO, &limit,
                   sizeof(limit));
}

absl::Status WorkerClient::AttachPayloadMemory(uint64_t size) {
  payload_fd_ = memfd_create("thaw-worker-payload", MFD_CLOEXEC);
  if (payload_fd_ < 0) return ErrnoStatus("worker: memfd_create", errno);
  if (ftruncate(payload_fd_, size) != 0) {
    return ErrnoStatus("worker: size the payload memory", errno);
  }
  void* p =
      mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, payload_fd_, 0);
  if (p == MAP_FAILED)
    return ErrnoStatus("worker: map the payload memory", errno);
  payload_ = static_cast<uint8_t*>(p);
  payload_size_ = size;
  return absl::OkStatus();
}

void WorkerClient::KillWorker() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

absl::Status WorkerClient::Died(absl::string_view what,
                                const absl::Status& receive) {
  if (receive.code() == absl::StatusCode::kDeadlineExceeded) {  // LimitWaits
    KillWorker();
    dead_ = absl::UnavailableError(absl::StrFormat(
        "%s: the Vm's worker process did not answer within %s (its call "
        "timeout and %s) and was killed",
        what, absl::FormatDuration(answer_limit_),
        absl::FormatDuration(answer_slack_)));
    return dead_;
  }
  std::string how = "is gone";
  int status;
  for (int i = 0; i < 200 && pid_ > 0; ++i) {  // it closed the socket
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      how = DescribeWait(status);
      pid_ = -1;
    } else if (r < 0) {
      break;
    } else {
      usleep(1000);
    }
  }
  if (pid_ > 0) {
    // Alive but out of protocol: it is not trusted to go on.
    KillWorker();
    how = "broke the protocol and was killed";
  }
  dead_ = absl::UnavailableError(
      absl::StrFormat("%s: the Vm's worker process %s", what, how));
  return dead_;
}

absl::StatusOr<worker::proto::Response> WorkerClient::Exchange(
    const worker::proto::Request& request, std::vector<int> fds,
    absl::string_view what) {
  if (!dead_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": this Vm failed earlier: ", dead_.message()));
  }
  if (!channel_->Send(request, std::move(fds)).ok()) return Died(what);
  while (true) {
    worker::proto::Response response;
    if (absl::Status s = channel_->Receive(response); !s.ok()) {
      return Died(what, s);
    }
    if (response.has_console_output()) {
      // The sink runs here, on the thread that made the request.
      if (config_.console_sink) config_.console_sink(response.console_output());
      continue;
    }
    if (response.has_file_request()) {
      if (!ServeFile(response.file_request()).ok()) return Died(what);
      continue;
    }
    if (response.has_host_call()) {
      if (!ServeHostCall(response.host_call()).ok()) return Died(what);
      continue;
    }
    return response;
  }
}

absl::StatusOr<worker::proto::Response> WorkerClient::ExchangeOk(
    const worker::proto::Request& request, std::vector<int> fds,
    absl::string_view what) {
  auto response = Exchange(request, std::move(fds), what);
  if (!response.ok()) return response.status();
  if (absl::Status s = worker::GetStatus(*response); !s.ok()) return s;
  return response;
}

// The guest calls a host function: run it here and answer the worker.
absl::Status WorkerClient::ServeHostCall(const worker::proto::HostCall& call) {
  worker::proto::Request answer;
  worker::proto::HostReply& reply = *answer.mutable_host_reply();
  auto fn = host_functions_.find(call.name());
  if (fn == host_functions_.end()) {
    reply.set_code(static_cast<int>(absl::StatusCode::kNotFound));
    reply.set_message("no such host function");
  } else {
    absl::StatusOr<std::string> out = fn->second(call.input());
    if (out.ok()) {
      reply.set_output(*std::move(out));
    } else {
      reply.set_code(static_cast<int>(out.status().code()));
      reply.set_message(std::string(out.status().message()));
    }
  }
  return channel_->Send(answer);
}

absl::Status WorkerClient::MakeFileView(const std::vector<FileMount>& mounts) {
  file_view_.reset();
  if (mounts.empty()) return absl::OkStatus();
  auto view = linux_abi::FileView::Create(mounts);
  if (!view.ok()) return view.status();
  file_view_ = *std::move(view);
  return absl::OkStatus();
}

absl::Status WorkerClient::ServeFile(const worker::proto::FileRequest& r) {
  worker::proto::Request answer;
  worker::proto::FileReply& reply = *answer.mutable_file_reply();
  auto refuse = [&](const absl::Status& status) {
    reply.set_error(linux_abi::ErrnoOf(status));
    reply.set_message(std::string(status.message()));
  };
  linux_abi::HostFd fd;
  if (file_view_ == nullptr) {
    refuse(linux_abi::ErrnoError(ENOENT, "no file view"));
  } else if (r.cwd().size() > linux_abi::kMaxPath ||
             r.path().size() > linux_abi::kMaxPath) {
    refuse(linux_abi::ErrnoError(ENAMETOOLONG, "path"));
  } else if (r.read_link()) {
    auto target = file_view_->ReadLink(r.cwd(), r.path());
    if (target.ok()) {
      reply.set_target(*std::move(target));
    } else {
      refuse(target.status());
    }
  } else {
    // Read-only whatever the worker asks: only these flags pass.
    const int flags = O_RDONLY | (r.flags() & (O_DIRECTORY | O_PATH));
    auto opened = file_view_->Open(r.cwd(), r.path(), flags, r.follow_last());
    if (opened.ok()) {
      reply.set_path(opened->path);
      reply.set_virtual_dir(opened->virtual_dir);
      fd = std::move(opened->fd);
    } else {
      refuse(opened.status());
    }
  }
  std::vector<int> fds;
  if (fd.get() >= 0) fds.push_back(fd.get());
  return channel_->Send(answer, std::move(fds));  // `fd` closes after it
}

absl::Status WorkerClient::Apply(const worker::proto::Response& r) {
  if (r.memory_size() == 0 || r.memory_size() > (64ull << 30) ||
      r.input_buffer_size() + r.output_buffer_size() > payload_size_) {
    return Died("Create (a layout that does not fit)");
  }
  self_test_ = r.self_test();
  config_.memory_size = r.memory_size();
  config_.input_buffer_size = r.input_buffer_size();
  config_.output_buffer_size = r.output_buffer_size();
  config_.stack_size = r.stack_size();
  config_.backend = BackendKind::kEmulated;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<WorkerClient>> WorkerClient::AdoptForTesting(
    int fd, const VmConfig& config, const std::vector<FileMount>& mounts,
    absl::Duration slack) {
  std::unique_ptr<WorkerClient> client(new WorkerClient);
  client->channel_ = std::make_unique<worker::Channel>(fd);
  client->config_ = config;
  client->answer_slack_ = slack;
  client->LimitWaits();
  if (absl::Status s = client->AttachPayloadMemory(config.input_buffer_size +
                                                   config.output_buffer_size);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = client->MakeFileView(mounts); !s.ok()) return s;
  return client;
}

absl::StatusOr<std::unique_ptr<WorkerClient>> WorkerClient::Create(
    const VmConfig& config) {
  if (absl::Status s = CheckSettings(config); !s.ok()) return s;
  std::unique_ptr<WorkerClient> client(new WorkerClient);
  client->config_ = config;
  if (absl::Status s =
          CheckBufferSizes(config.input_buffer_size, config.output_buffer_size);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = client->AttachPayloadMemory(config.input_buffer_size +
                                                   config.output_buffer_size);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = client->Start(); !s.ok()) return s;
  worker::proto::Request request;
  worker::proto::Create& c = *request.mutable_create();
  *c.mutable_settings() = SettingsOf(config);
  c.set_memory_size(config.memory_size);
  c.set_input_buffer_size(config.input_buffer_size);
  c.set_output_buffer_size(config.output_buffer_size);
  c.set_stack_size(config.stack_size);
  c.set_guest_kind(static_cast<uint32_t>(config.guest_kind));
  auto response = client->ExchangeOk(request, {client->payload_fd_}, "Create");
  if (!response.ok()) return response.status();
  if (absl::Status s = client->Apply(*response); !s.ok()) return s;
  return client;
}

absl::StatusOr<std::unique_ptr<WorkerClient>> WorkerClient::Restore(
    const SnapshotState& snapshot, const RestoreOptions& options) {
  if (absl::Status s = CheckSettings(options); !s.ok()) return s;
  const snapshot::SnapshotImage& image = *snapshot.image();
  const auto& m = image.manifest();
  std::unique_ptr<WorkerClient> client(new WorkerClient);
  static_cast<VmSettings&>(client->config_) = options;
  // The program's view, from the mounts in the file the host checked.
  if (absl::Status s = client->MakeFileView(SavedMounts(m.program()));
      !s.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("restore \"", snapshot.info().path, "\": ", s.message()));
  }
  const uint64_t in = m.config().input_buffer_size();
  const uint64_t out = m.config().output_buffer_size();
  if (absl::Status s = CheckBufferSizes(in, out); !s.ok()) return s;
  if (absl::Status s = client->AttachPayloadMemory(in + out); !s.ok()) {
    return s;
  }
  if (absl::Status s = client->Start(); !s.ok()) return s;
  // The worker gets the very files the host checked (the snapshot and its
  // diff parents), as descriptors.
  std::vector<int> fds = {client->payload_fd_};
  std::vector<int> files;
  auto close_files = [&files] {
    for (int fd : files) close(fd);
  };
  worker::proto::Request request;
  worker::proto::Restore& r = *request.mutable_restore();
  for (const auto& file : image.files()) {
    const int fd = fcntl(file->fd(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
      const int error = errno;
      close_files();
      return ErrnoStatus("worker: duplicate the snapshot file", error);
    }
    files.push_back(fd);
    fds.push_back(fd);
    if (files.size() > 1) r.add_parent_names(file->path());
  }
  *r.mutable_settings() = SettingsOf(options);
  r.set_engine(static_cast<uint32_t>(options.engine));
  r.set_record_working_set(options.record_working_set);
  r.set_name(snapshot.info().path);
  if (snapshot.verify_key().has_value()) {
    const auto& key = KeyAccess::Public(*snapshot.verify_key());
    r.set_verify_key(key.data(), key.size());
  }
  auto response = client->ExchangeOk(request, std::move(fds), "Restore");
  close_files();
  if (!response.ok()) return response.status();
  if (absl::Status s = client->Apply(*response); !s.ok()) return s;
  if (client->config_.input_buffer_size != in ||
      client->config_.output_buffer_size != out) {
    return absl::InternalError("worker: restored a different layout");
  }
  client->restored_from_ = snapshot.image();
  return client;
}

absl::Status WorkerClient::LoadGuestImage(absl::Span<const uint8_t> elf,
                                          absl::string_view name) {
  std::lock_guard<std::mutex> lock(mutex_);
  worker::proto::Request request;
  request.mutable_load_guest()->set_elf(elf.data(), elf.size());
  request.mutable_load_guest()->set_name(std::string(name));
  return ExchangeOk(request, {}, "LoadGuest").status();
}

absl::Status WorkerClient::LoadProgram(absl::Span<const uint8_t> elf,
                                       absl::string_view name,
                                       const ProgramOptions& options) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = MakeFileView(options.files); !s.ok()) return s;
  worker::proto::Request request;
  worker::proto::LoadProgram& p = *request.mutable_load_program();
  p.set_elf(elf.data(), elf.size());
  p.set_name(std::string(name));
  for (const FileMount& mount : options.files) {
    worker::proto::Mount& m = *p.add_files();
    m.set_host_path(mount.host_path);
    m.set_guest_path(mount.guest_path);
  }
  p.set_cwd(options.cwd);
  for (const std::string& arg : options.args) p.add_args(arg);
  for (const std::string& var : options.env) p.add_env(var);
  return ExchangeOk(request, {}, "LoadProgram").status();
}

absl::Status WorkerClient::Boot() {
  std::lock_guard<std::mutex> lock(mutex_);
  worker::proto::Request request;
  request.set_boot(true);
  return ExchangeOk(request, {}, "Boot").status();
}

absl::StatusOr<std::string> WorkerClient::Call(absl::string_view function,
                                               absl::string_view input) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (input.size() > config_.input_buffer_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Call: input of %d bytes exceeds input_buffer_size %d",
                        input.size(), config_.input_buffer_size));
  }
  if (dead_.ok()) std::memcpy(payload_, input.data(), input.size());
  worker::proto::Request request;
  request.mutable_call()->set_function(std::string(function));
  request.mutable_call()->set_input_size(input.size());
  auto response = ExchangeOk(request, {}, "Call");
  if (!response.ok()) return response.status();
  if (response->reply_size() > payload_size_) {
    return Died("Call (a reply larger than the payload memory)");
  }
  return std::string(reinterpret_cast<const char*>(payload_),
                     response->reply_size());
}

absl::Status WorkerClient::RegisterHostFunction(std::string name,
                                                HostFunction fn) {
  std::lock_guard<std::mutex> lock(mutex_);
  worker::proto::Request request;
  request.set_register_host_function(name);
  auto response = ExchangeOk(request, {}, "RegisterHostFunction");
  if (!response.ok()) return response.status();
  host_functions_[std::move(name)] = std::move(fn);
  return absl::OkStatus();
}

absl::Status WorkerClient::Snapshot(const std::string& path,
                                    const SnapshotOptions& options) {
  std::lock_guard<std::mutex> lock(mutex_);
  worker::proto::Request request;
  worker::proto::Snapshot& s = *request.mutable_snapshot();
  if (!options.parent.empty()) {
    // The host checks the parent (the worker can open no file).
    if (restored_from_ == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("Snapshot: a diff snapshot against \"", options.parent,
                       "\" needs a Vm restored from it; this one was booted"));
    }
    auto recorded = CheckDiffParent(path, options.parent, *restored_from_);
    if (!recorded.ok()) return recorded.status();
    s.set_parent_path(*recorded);
  }
  auto file = snapshot::AtomicFile::Create(path);
  if (!file.ok()) return file.status();
  s.set_compression_level(options.compression_level);
  s.set_chunk_size(options.chunk_size);
  s.set_threads(options.threads);
  auto response = ExchangeOk(request, {(*file)->fd()}, "Snapshot");
  if (!response.ok()) return response.status();
  // The worker wrote it; the host checks it before putting it in place.
  auto check = snapshot::SnapshotFile::OpenDescriptor(
      fcntl((*file)->fd(), F_DUPFD_CLOEXEC, 0), path);
  if (!check.ok()) return check.status();
  if (!options.signing_key.has_value()) return (*file)->Commit();
  // Signed here: the key never enters the worker. The checked file's
  // frames are copied as they are (not recompressed) into a signed one,
  // which takes the path; the unsigned one is dropped.
  const snapshot::proto::Manifest& m = (*check)->manifest();
  return snapshot::RewriteWithWorkingSet(
      **check, {m.working_set().begin(), m.working_set().end()},
      {m.working_set_written_pages().begin(),
       m.working_set_written_pages().end()},
      &KeyAccess::Secret(*options.signing_key));
}

absl::Status WorkerClient::WriteWorkingSet(const snapshot::SecretKey* key) {
  std::lock_guard<std::mutex> lock(mutex_);
  worker::proto::Request request;
  request.set_working_set(true);
  auto response = ExchangeOk(request, {}, "WriteWorkingSet");
  if (!response.ok()) return response.status();
  if (restored_from_ == nullptr) {
    return Died("WriteWorkingSet (a working set for a Vm never restored)");
  }
  // The worker's list only orders frames (out-of-range chunks are
  // ignored); the host rewrites its own file.
  return snapshot::RewriteWithWorkingSet(
      restored_from_->top(),
      {response->working_set().begin(), response->working_set().end()},
      {response->written_pages().begin(), response->written_pages().end()},
      key);
}

absl::Status WorkerClient::Reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  worker::proto::Request request;
  request.set_reset(true);
  return ExchangeOk(request, {}, "Reset").status();
}

absl::StatusOr<std::string> WorkerClient::ReadMemory(uint64_t address,
                                                     uint64_t size) {
  std::lock_guard<std::mutex> lock(mutex_);
  worker::proto::Request request;
  request.mutable_read_memory()->set_address(address);
  request.mutable_read_memory()->set_size(size);
  auto response = ExchangeOk(request, {}, "ReadGuestMemory");
  if (!response.ok()) return response.status();
  if (response->bytes().size() != size) {
    return Died("ReadGuestMemory (an answer of the wrong size)");
  }
  return response->bytes();
}

absl::StatusOr<uint64_t> WorkerClient::FindSymbol(absl::string_view name) {
  std::lock_guard<std::mutex> lock(mutex_);
  worker::proto::Request request;
  request.set_find_symbol(std::string(name));
  auto response = ExchangeOk(request, {}, "FindGuestSymbol");
  if (!response.ok()) return response.status();
  return response->value();
}

absl::StatusOr<worker::proto::Response> WorkerClient::State() {
  std::lock_guard<std::mutex> lock(mutex_);
  worker::proto::Request request;
  request.set_state(true);
  return Exchange(request, {}, "state");
}

std::string WorkerClient::console() {
  auto state = State();
  return state.ok() ? state->console() : std::string();
}

absl::Status WorkerClient::failure() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!dead_.ok()) return dead_;
  }
  auto state = State();
  if (!state.ok()) return state.status();
  return worker::StatusFromCode(state->failure_code(),
                                state->failure_message());
}

PhaseReport WorkerClient::report() {
  PhaseReport r;
  r.backend = BackendKind::kEmulated;
  auto state = State();
  if (!state.ok()) return r;
  const worker::proto::Report& p = state->report();
  r.create = absl::Nanoseconds(p.create_ns());
  r.load = absl::Nanoseconds(p.load_ns());
  r.boot = absl::Nanoseconds(p.boot_ns());
  r.restore = absl::Nanoseconds(p.restore_ns());
  r.snapshot = absl::Nanoseconds(p.snapshot_ns());
  r.reset = absl::Nanoseconds(p.reset_ns());
  r.calls = p.calls();
  r.last_call = absl::Nanoseconds(p.last_call_ns());
  r.total_calls = absl::Nanoseconds(p.total_calls_ns());
  return r;
}

RestoreStats WorkerClient::restore_stats() {
  RestoreStats s;
  auto state = State();
  if (!state.ok()) return s;
  const worker::proto::Stats& p = state->stats();
  s.engine = static_cast<RestoreEngine>(p.engine() & 7);
  s.faults = p.faults();
  s.chunks_read = p.chunks_read();
  s.bytes_read = p.bytes_read();
  s.mapped = p.mapped();
  s.resets = p.resets();
  s.pages_reset = p.pages_reset();
  s.prefetch_waits = p.prefetch_waits();
  s.zero_chunks = p.zero_chunks();
  s.prefetched = p.prefetched();
  s.populated_pages = p.populated_pages();
  s.pages_made_private = p.pages_made_private();
  s.reads_without_io_uring = p.reads_without_io_uring();
  s.memory_pages = p.memory_pages();
  s.shared_base_built = p.shared_base_built();
  s.reset_uses_dirty_log = p.reset_uses_dirty_log();
  return s;
}

ProgramStats WorkerClient::program_stats() {
  ProgramStats s;
  auto state = State();
  if (!state.ok()) return s;
  s.syscalls = state->syscalls();
  for (const auto& [name, count] : state->unsupported()) {
    s.unsupported[name] = count;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  s.path_escapes = file_view_ ? file_view_->escapes() : 0;  // counted here
  return s;
}

// The whole worker stops (SIGSTOP) and goes on (SIGCONT): the guest and
// every thread of its monitor. Its call timeout still counts the pause.
void WorkerClient::Pause() {
  if (pid_ > 0 && !paused_.exchange(true)) kill(pid_, SIGSTOP);
}

void WorkerClient::Resume() {
  if (pid_ > 0 && paused_.exchange(false)) kill(pid_, SIGCONT);
}

}  // namespace thaw::internal
