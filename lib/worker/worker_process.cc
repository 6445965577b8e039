#include "lib/worker/worker_process.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "lib/signing_access.h"
#include "lib/vm_internal.h"
#include "lib/worker/status_proto.h"

namespace thaw::worker {
namespace {

uint64_t Ns(absl::Duration d) { return absl::ToInt64Nanoseconds(d); }

}  // namespace

WorkerProcess::WorkerProcess(Channel& channel, std::string self_test)
    : channel_(channel), self_test_(std::move(self_test)) {
  HostLink& host = *this;
  linux_abi::SetFileSourceFactory([&host](const std::vector<FileMount>&) {
    return absl::StatusOr<std::shared_ptr<const linux_abi::FileSource>>(
        std::make_shared<BrokeredFiles>(host));
  });
}

WorkerProcess::~WorkerProcess() {
  linux_abi::SetFileSourceFactory(nullptr);
  if (payload_ != nullptr) munmap(payload_, payload_size_);
}

absl::Status WorkerProcess::AttachPayloadMemory(int fd, uint64_t size) {
  if (payload_ != nullptr) munmap(payload_, payload_size_);
  payload_ = nullptr;
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    return absl::InternalError(
        absl::StrCat("worker: map the payload memory: ", std::strerror(errno)));
  }
  payload_ = static_cast<uint8_t*>(p);
  payload_size_ = size;
  return absl::OkStatus();
}

VmSettings WorkerProcess::SettingsFrom(const proto::Settings& s) {
  VmSettings settings;
  settings.backend = BackendKind::kEmulated;
  settings.call_timeout = absl::Nanoseconds(s.call_timeout_ns());
  settings.console_limit = s.console_limit();
  settings.huge_pages = s.huge_pages();
  settings.trace_syscalls = s.trace_syscalls();
  if (s.console_sink()) {
    // Output goes to the host as it is written, one message each.
    settings.console_sink = [this](absl::string_view text) {
      proto::Response out;
      out.set_console_output(std::string(text));
      std::lock_guard<std::mutex> lock(ask_mutex_);
      if (!channel_.Send(out).ok()) broken_ = true;
    };
  }
  return settings;
}

void WorkerProcess::Describe(proto::Response& r) const {
  r.set_self_test(self_test_);
  const VmConfig& c = vm_->config();
  r.set_memory_size(c.memory_size);
  r.set_input_buffer_size(c.input_buffer_size);
  r.set_output_buffer_size(c.output_buffer_size);
  r.set_stack_size(c.stack_size);
  r.set_backend(static_cast<uint32_t>(vm_->backend()));
}

absl::StatusOr<proto::Request> WorkerProcess::Ask(
    const proto::Response& question, std::vector<int>* fds) {
  std::lock_guard<std::mutex> lock(ask_mutex_);
  proto::Request answer;
  if (absl::Status s = channel_.Send(question); !s.ok()) {
    broken_ = true;
    return s;
  }
  if (absl::Status s = channel_.Receive(answer, fds); !s.ok()) {
    broken_ = true;
    return s;
  }
  return answer;
}

absl::StatusOr<std::string> WorkerProcess::CallHost(const std::string& name,
                                                    absl::string_view input) {
  proto::Response ask;
  ask.mutable_host_call()->set_name(name);
  ask.mutable_host_call()->set_input(std::string(input));
  std::vector<int> fds;
  auto answer = Ask(ask, &fds);
  for (int fd : fds) close(fd);
  if (!answer.ok()) return answer.status();
  if (!answer->has_host_reply()) {
    broken_ = true;
    return absl::InternalError("worker: expected the host function's reply");
  }
  const proto::HostReply& reply = answer->host_reply();
  if (reply.code() != 0) {
    return StatusFromCode(reply.code(), reply.message());
  }
  return reply.output();
}

proto::Response WorkerProcess::Handle(const proto::Request& request,
                                      std::vector<int>& fds) {
  proto::Response response;
  auto take_fd = [&fds]() {
    if (fds.empty()) return -1;
    int fd = fds.front();
    fds.erase(fds.begin());
    return fd;
  };
  auto fail = [&](const absl::Status& status) {
    SetStatus(status, response);
    return response;
  };
  if (!vm_ && !request.has_create() && !request.has_restore()) {
    return fail(absl::FailedPreconditionError("worker: no Vm yet"));
  }
  switch (request.op_case()) {
    case proto::Request::kCreate: {
      const proto::Create& c = request.create();
      VmConfig config;
      static_cast<VmSettings&>(config) = SettingsFrom(c.settings());
      config.memory_size = c.memory_size();
      config.input_buffer_size = c.input_buffer_size();
      config.output_buffer_size = c.output_buffer_size();
      config.stack_size = c.stack_size();
      config.guest_kind = static_cast<GuestKind>(c.guest_kind());
      const int memory = take_fd();
      if (memory < 0)
        return fail(absl::InternalError("worker: no payload memory"));
      if (absl::Status s = AttachPayloadMemory(
              memory, config.input_buffer_size + config.output_buffer_size);
          !s.ok()) {
        return fail(s);
      }
      auto vm = Vm::Create(config);
      if (!vm.ok()) return fail(vm.status());
      vm_ = *std::move(vm);
      Describe(response);
      return response;
    }
    case proto::Request::kRestore: {
      const proto::Restore& r = request.restore();
      const int memory = take_fd();
      std::vector<std::string> names = {r.name()};
      names.insert(names.end(), r.parent_names().begin(),
                   r.parent_names().end());
      if (memory < 0 || fds.size() != names.size()) {
        if (memory >= 0) close(memory);
        return fail(absl::InternalError("worker: restore without its files"));
      }
      std::vector<int> files;
      files.swap(fds);
      std::optional<VerifyKey> key;
      if (!r.verify_key().empty()) {
        auto parsed = internal::KeyAccess::FromBytes(r.verify_key());
        if (!parsed.ok()) {
          for (int fd : files) close(fd);
          close(memory);
          return fail(parsed.status());
        }
        key = *parsed;
      }
      auto snapshot = internal::VmAccess::OpenDescriptors(
          std::move(files), names, key.has_value() ? &*key : nullptr);
      if (!snapshot.ok()) {
        close(memory);
        return fail(snapshot.status());
      }
      RestoreOptions options;
      static_cast<VmSettings&>(options) = SettingsFrom(r.settings());
      options.engine = static_cast<RestoreEngine>(r.engine());
      options.record_working_set = r.record_working_set();
      auto vm = snapshot->Restore(options);
      if (!vm.ok()) {
        close(memory);
        return fail(vm.status());
      }
      vm_ = *std::move(vm);
      const VmConfig& c = vm_->config();
      if (absl::Status s = AttachPayloadMemory(
              memory, c.input_buffer_size + c.output_buffer_size);
          !s.ok()) {
        return fail(s);
      }
      Describe(response);
      return response;
    }
    case proto::Request::kLoadGuest: {
      const std::string& elf = request.load_guest().elf();
      return fail(vm_->LoadGuestImage(
          absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(elf.data()),
                              elf.size()),
          request.load_guest().name()));
    }
    case proto::Request::kWorkingSet: {
      auto recorded = internal::VmAccess::WorkingSet(*vm_);
      if (!recorded.ok()) return fail(recorded.status());
      response.mutable_working_set()->Assign(recorded->chunks.begin(),
                                             recorded->chunks.end());
      response.mutable_written_pages()->Assign(recorded->written_pages.begin(),
                                               recorded->written_pages.end());
      return response;
    }
    case proto::Request::kLoadProgram:
      return LoadProgram(request.load_program());
    case proto::Request::kBoot:
      return fail(vm_->Boot());
    case proto::Request::kCall: {
      const uint64_t size = request.call().input_size();
      if (size > payload_size_) {
        return fail(absl::InvalidArgumentError(
            "worker: input past the payload memory"));
      }
      auto reply = vm_->Call(
          request.call().function(),
          absl::string_view(reinterpret_cast<const char*>(payload_), size));
      if (!reply.ok()) return fail(reply.status());
      if (reply->size() > payload_size_) {
        return fail(absl::ResourceExhaustedError(
            "worker: reply past the payload memory"));
      }
      std::memcpy(payload_, reply->data(), reply->size());
      response.set_reply_size(reply->size());
      return response;
    }
    case proto::Request::kSnapshot: {
      const proto::Snapshot& s = request.snapshot();
      const int file = take_fd();
      if (file < 0)
        return fail(absl::InternalError("worker: snapshot without its file"));
      SnapshotOptions options;
      options.compression_level = s.compression_level();
      options.chunk_size = s.chunk_size();
      options.threads = s.threads();
      options.parent = s.parent_path();
      absl::Status status = internal::VmAccess::SnapshotToDescriptor(
          *vm_, file, "(the host's file)", options);
      close(file);
      return fail(status);
    }
    case proto::Request::kReset:
      return fail(vm_->Reset());
    case proto::Request::kReadMemory: {
      auto bytes = vm_->ReadGuestMemory(request.read_memory().address(),
                                        request.read_memory().size());
      if (!bytes.ok()) return fail(bytes.status());
      response.set_bytes(*std::move(bytes));
      return response;
    }
    case proto::Request::kFindSymbol: {
      auto address = vm_->FindGuestSymbol(request.find_symbol());
      if (!address.ok()) return fail(address.status());
      response.set_value(*address);
      return response;
    }
    case proto::Request::kRegisterHostFunction: {
      const std::string name = request.register_host_function();
      return fail(vm_->RegisterHostFunction(
          name, [this, name](absl::string_view input) {
            return CallHost(name, input);
          }));
    }
    case proto::Request::kState: {
      response.set_console(vm_->console());
      const absl::Status failure = vm_->failure();
      response.set_failure_code(static_cast<int>(failure.code()));
      response.set_failure_message(std::string(failure.message()));
      const PhaseReport r = vm_->report();
      proto::Report& report = *response.mutable_report();
      report.set_create_ns(Ns(r.create));
      report.set_load_ns(Ns(r.load));
      report.set_boot_ns(Ns(r.boot));
      report.set_restore_ns(Ns(r.restore));
      report.set_snapshot_ns(Ns(r.snapshot));
      report.set_reset_ns(Ns(r.reset));
      report.set_calls(r.calls);
      report.set_last_call_ns(Ns(r.last_call));
      report.set_total_calls_ns(Ns(r.total_calls));
      const RestoreStats st = vm_->restore_stats();
      proto::Stats& stats = *response.mutable_stats();
      stats.set_engine(static_cast<uint32_t>(st.engine));
      stats.set_faults(st.faults);
      stats.set_chunks_read(st.chunks_read);
      stats.set_bytes_read(st.bytes_read);
      stats.set_mapped(st.mapped);
      stats.set_resets(st.resets);
      stats.set_pages_reset(st.pages_reset);
      stats.set_prefetch_waits(st.prefetch_waits);
      stats.set_zero_chunks(st.zero_chunks);
      stats.set_prefetched(st.prefetched);
      stats.set_populated_pages(st.populated_pages);
      stats.set_pages_made_private(st.pages_made_private);
      stats.set_reads_without_io_uring(st.reads_without_io_uring);
      stats.set_memory_pages(st.memory_pages);
      stats.set_shared_base_built(st.shared_base_built);
      stats.set_reset_uses_dirty_log(st.reset_uses_dirty_log);
      const ProgramStats program = vm_->program_stats();
      response.set_syscalls(program.syscalls);
      for (const auto& [name, count] : program.unsupported) {
        (*response.mutable_unsupported())[name] = count;
      }
      return response;
    }
    default:
      return fail(absl::InvalidArgumentError("worker: unknown request"));
  }
}

proto::Response WorkerProcess::LoadProgram(const proto::LoadProgram& r) {
  ProgramOptions options;
  for (const proto::Mount& m : r.files()) {
    options.files.push_back({m.host_path(), m.guest_path()});
  }
  options.cwd = r.cwd();
  options.args.assign(r.args().begin(), r.args().end());
  options.env.assign(r.env().begin(), r.env().end());
  proto::Response response;
  SetStatus(
      internal::VmAccess::LoadProgramImage(
          *vm_,
          absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(r.elf().data()),
                              r.elf().size()),
          r.name(), options),
      response);
  return response;
}

int WorkerProcess::Serve() {
  while (true) {
    proto::Request request;
    std::vector<int> fds;
    if (absl::Status s = channel_.Receive(request, &fds); !s.ok()) {
      return s.code() == absl::StatusCode::kUnavailable ? 0 : 1;
    }
    proto::Response response = Handle(request, fds);
    for (int fd : fds) close(fd);  // any not used
    if (broken_) return 1;
    if (!channel_.Send(response).ok()) return 1;
  }
}

}  // namespace thaw::worker
