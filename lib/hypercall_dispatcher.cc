#include "lib/hypercall_dispatcher.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "thaw/abi.h"

namespace thaw {
namespace {
// An abort message longer than this is cut: the guest does not get to make
// the host allocate without bound.
constexpr uint64_t kMaxAbortMessage = 4096;
}  // namespace

HypercallDispatcher::HypercallDispatcher(GuestMemory& memory,
                                         const VmSettings& settings,
                                         uint64_t output_capacity)
    : memory_(memory), output_capacity_(output_capacity), console_(settings) {}

void HypercallDispatcher::Begin(bool in_call) {
  in_call_ = in_call;
  outcome_ = Outcome{};
}

void HypercallDispatcher::Register(std::string name, HostFunction fn) {
  host_functions_[std::move(name)] = std::move(fn);
}

std::string HypercallDispatcher::console() const { return console_.Contents(); }

backend::HypercallResult HypercallDispatcher::Fail(absl::Status error,
                                                   bool vm_usable) {
  outcome_.kind = Outcome::Kind::kFailed;
  outcome_.error = std::move(error);
  outcome_.vm_usable = vm_usable;
  return {0, true};
}

backend::HypercallResult HypercallDispatcher::Handle(
    const backend::Hypercall& call) {
  switch (call.number) {
    case THAW_HC_CONSOLE_WRITE:
      return ConsoleWrite(call.arg0, call.arg1);
    case THAW_HC_WAIT:
      if (in_call_) {
        return Fail(absl::InvalidArgumentError(
            "guest parked (wait hypercall) without replying to the call"));
      }
      outcome_.kind = Outcome::Kind::kParked;
      return {0, true};
    case THAW_HC_REPLY:
      return Reply(call.arg0, call.arg1, call.arg2);
    case THAW_HC_HOST_CALL:
      return HostCall(call.arg0);
    case THAW_HC_ABORT:
      return Abort(call.arg0, call.arg1);
    default:
      return Fail(absl::InvalidArgumentError(
          absl::StrFormat("guest made unknown hypercall %d", call.number)));
  }
}

backend::HypercallResult HypercallDispatcher::ConsoleWrite(uint64_t address,
                                                           uint64_t size) {
  auto bytes = memory_.Slice(address, size, "console_write hypercall");
  if (!bytes.ok())
    return Fail(absl::InvalidArgumentError(bytes.status().message()));
  console_.Write(absl::string_view(reinterpret_cast<const char*>(bytes->data()),
                                   bytes->size()));
  return {0, false};
}

backend::HypercallResult HypercallDispatcher::Reply(uint64_t status,
                                                    uint64_t address,
                                                    uint64_t size) {
  if (!in_call_) {
    return Fail(absl::InvalidArgumentError(
        "guest sent a reply while no call was in progress"));
  }
  // The guest is parked again after a reply, so the Vm stays usable even
  // when the reply itself is refused.
  if (size > output_capacity_) {
    return Fail(absl::ResourceExhaustedError(absl::StrFormat(
                    "guest reply of %d bytes exceeds the output buffer size "
                    "of %d bytes (VmConfig::output_buffer_size)",
                    size, output_capacity_)),
                /*vm_usable=*/true);
  }
  auto bytes = memory_.Slice(address, size, "reply hypercall");
  if (!bytes.ok())
    return Fail(absl::InvalidArgumentError(bytes.status().message()));
  outcome_.kind = Outcome::Kind::kReplied;
  outcome_.reply_status = static_cast<uint32_t>(status);
  outcome_.reply.assign(reinterpret_cast<const char*>(bytes->data()),
                        bytes->size());
  return {0, true};
}

backend::HypercallResult HypercallDispatcher::HostCall(uint64_t args_address) {
  thaw_host_call args;
  if (absl::Status s = memory_.Read(
          args_address,
          absl::Span<uint8_t>(reinterpret_cast<uint8_t*>(&args), sizeof(args)),
          "host_call hypercall arguments");
      !s.ok()) {
    return Fail(absl::InvalidArgumentError(s.message()));
  }
  auto name = memory_.Slice(args.name_addr, args.name_size,
                            "host_call hypercall function name");
  auto input = memory_.Slice(args.input_addr, args.input_size,
                             "host_call hypercall input");
  auto output = memory_.Slice(args.output_addr, args.output_capacity,
                              "host_call hypercall output buffer");
  for (const auto* slice : {&name, &input, &output}) {
    if (!slice->ok()) {
      return Fail(absl::InvalidArgumentError(slice->status().message()));
    }
  }
  std::string function(reinterpret_cast<const char*>(name->data()),
                       name->size());
  auto it = host_functions_.find(function);
  if (it == host_functions_.end())
    return {static_cast<uint64_t>(THAW_ERR_NOT_FOUND), false};
  absl::StatusOr<std::string> result = it->second(absl::string_view(
      reinterpret_cast<const char*>(input->data()), input->size()));
  int64_t code = THAW_OK;
  uint64_t written = 0;
  if (!result.ok()) {
    // The error text goes to the guest's buffer, cut to fit, so it can log it.
    std::string message(result.status().message());
    written = std::min<uint64_t>(message.size(), output->size());
    std::copy_n(message.data(), written, output->data());
    code = THAW_ERR_HOST;
  } else if (result->size() > output->size()) {
    code = THAW_ERR_TOO_LARGE;
    written = result->size();  // tells the guest how much room it needs
  } else {
    std::copy(result->begin(), result->end(), output->data());
    written = result->size();
  }
  memory_.NoteHostWrite(args.output_addr,
                        std::min<uint64_t>(written, output->size()));
  args.output_size = written;
  uint64_t size_field = args_address + offsetof(thaw_host_call, output_size);
  if (absl::Status s =
          memory_.Write(size_field,
                        absl::Span<const uint8_t>(
                            reinterpret_cast<const uint8_t*>(&args.output_size),
                            sizeof(args.output_size)),
                        "host_call hypercall output size");
      !s.ok()) {
    return Fail(absl::InvalidArgumentError(s.message()));
  }
  return {static_cast<uint64_t>(code), false};
}

backend::HypercallResult HypercallDispatcher::Abort(uint64_t address,
                                                    uint64_t size) {
  auto bytes = memory_.Slice(address, std::min(size, kMaxAbortMessage),
                             "abort hypercall message");
  std::string message =
      bytes.ok() ? std::string(reinterpret_cast<const char*>(bytes->data()),
                               bytes->size())
                 : "<message outside guest memory>";
  return Fail(
      absl::AbortedError(absl::StrFormat("guest aborted: %s", message)));
}

}  // namespace thaw
