#include "lib/function_guest.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/errno_status.h"
#include "lib/elf_loader.h"
#include "lib/x86/boot_state.h"

namespace thaw {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMinMemory = 4ull << 20;

uint64_t AlignDown(uint64_t value, uint64_t alignment) {
  return value & ~(alignment - 1);
}
uint64_t AlignUp(uint64_t value, uint64_t alignment) {
  return AlignDown(value + alignment - 1, alignment);
}

absl::Status FillEntropy(thaw_boot_info& info) {
  if (getrandom(info.entropy, sizeof(info.entropy), 0) !=
      static_cast<ssize_t>(sizeof(info.entropy))) {
    return ErrnoStatus("getrandom for guest entropy", errno);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<FunctionGuestLayout> ComputeLayout(const VmConfig& c) {
  if (c.memory_size < kMinMemory || c.memory_size > x86::kMaxMemorySize ||
      c.memory_size % (2ull << 20) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "VmConfig.memory_size %d: must be a multiple of 2 MiB from 4 MiB to "
        "64 GiB",
        c.memory_size));
  }
  if (c.call_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("VmConfig.call_timeout must be positive");
  }
  if (c.stack_size < kPage || c.input_buffer_size == 0 ||
      c.output_buffer_size == 0 || c.console_limit == 0) {
    return absl::InvalidArgumentError(
        "VmConfig: stack_size must be at least 4 KiB, and the buffer sizes "
        "and console_limit must be positive");
  }
  const uint64_t room = c.memory_size - THAW_IMAGE_BASE;
  const uint64_t wanted = AlignUp(c.stack_size, kPage) +
                          AlignUp(c.input_buffer_size, kPage) +
                          AlignUp(c.output_buffer_size, kPage);
  if (c.stack_size > room || c.input_buffer_size > room ||
      c.output_buffer_size > room || wanted >= room) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "VmConfig: stack (%d) + input buffer (%d) + output buffer (%d) bytes "
        "do not fit in %d bytes of guest memory above the image base",
        c.stack_size, c.input_buffer_size, c.output_buffer_size, room));
  }
  FunctionGuestLayout layout;
  layout.stack_top = c.memory_size;
  layout.input_addr = AlignDown(
      layout.stack_top - AlignUp(c.stack_size, kPage) - c.input_buffer_size,
      kPage);
  layout.output_addr =
      AlignDown(layout.input_addr - c.output_buffer_size, kPage);
  return layout;
}

absl::Status FunctionGuest::Load(absl::Span<const uint8_t> elf,
                                 absl::string_view name,
                                 const ProgramOptions& options,
                                 backend::Backend& backend) {
  if (!options.args.empty() || !options.env.empty()) {
    return absl::InvalidArgumentError(
        "a function guest takes no arguments or environment");
  }
  // The host-owned page tables and descriptor tables below THAW_IMAGE_BASE;
  // the stack's lowest page is its guard when it has more than one.
  const uint64_t stack_bottom =
      layout_.stack_top - AlignUp(config_.stack_size, kPage);
  const uint64_t guard =
      AlignUp(config_.stack_size, kPage) >= 2 * kPage ? stack_bottom : 0;
  auto boot_state =
      x86::BuildLongModeBootState(memory_, /*user_pages=*/false, guard);
  if (!boot_state.ok()) return boot_state.status();
  auto image =
      LoadElf(elf, name, memory_, THAW_IMAGE_BASE, layout_.output_addr);
  if (!image.ok()) return image.status();
  {
    std::lock_guard<std::mutex> lock(symbols_mutex_);
    symbols_ = std::move(image->symbols);
  }
  guest_name_ = std::string(name);

  auto info = memory_.As<thaw_boot_info>(THAW_BOOT_INFO_ADDR, "boot info");
  if (!info.ok()) return info.status();
  boot_info_ = *info;
  *boot_info_ = thaw_boot_info{};
  boot_info_->magic = THAW_BOOT_INFO_MAGIC;
  boot_info_->abi_version = THAW_ABI_VERSION;
  boot_info_->memory_size = config_.memory_size;
  boot_info_->heap_start = AlignUp(image->image_end, kPage);
  boot_info_->heap_end = layout_.output_addr;
  boot_info_->input_addr = layout_.input_addr;
  boot_info_->input_capacity = config_.input_buffer_size;
  boot_info_->output_addr = layout_.output_addr;
  boot_info_->output_capacity = config_.output_buffer_size;
  boot_info_->stack_top = layout_.stack_top;
  boot_info_->restore_generation = 0;
  if (absl::Status s = FillEntropy(*boot_info_); !s.ok()) return s;

  VcpuState state = *boot_state;
  state.rip = image->entry;
  state.rsp = layout_.stack_top;
  state.rdi = THAW_BOOT_INFO_ADDR;
  return backend.SetState(state);
}

absl::Status FunctionGuest::BeginBoot() {
  request_ = Request::kBoot;
  dispatcher_.Begin(/*in_call=*/false);
  return absl::OkStatus();
}

absl::Status FunctionGuest::BeginCall(absl::string_view function,
                                      absl::string_view input) {
  if (function.empty() || function.size() > THAW_FUNCTION_NAME_MAX ||
      function.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "function name \"%s\": must be 1 to %d bytes without NUL",
        function.substr(0, 80), THAW_FUNCTION_NAME_MAX));
  }
  if (input.size() > config_.input_buffer_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "call \"%s\": input of %d bytes exceeds the input buffer size of %d "
        "bytes (VmConfig::input_buffer_size)",
        function, input.size(), config_.input_buffer_size));
  }
  if (!input.empty()) {
    if (absl::Status s = memory_.Write(
            layout_.input_addr,
            absl::Span<const uint8_t>(
                reinterpret_cast<const uint8_t*>(input.data()), input.size()),
            "call input");
        !s.ok()) {
      return s;
    }
  }
  boot_info_->request = THAW_REQUEST_CALL;
  std::memset(boot_info_->function_name, 0, sizeof(boot_info_->function_name));
  std::memcpy(boot_info_->function_name, function.data(), function.size());
  boot_info_->input_size = input.size();
  request_ = Request::kCall;
  function_ = std::string(function);
  dispatcher_.Begin(/*in_call=*/true);
  return absl::OkStatus();
}

absl::Status FunctionGuest::BeginBeforeSnapshot() {
  boot_info_->request = THAW_REQUEST_BEFORE_SNAPSHOT;
  std::memset(boot_info_->function_name, 0, sizeof(boot_info_->function_name));
  boot_info_->input_size = 0;
  request_ = Request::kBeforeSnapshot;
  dispatcher_.Begin(/*in_call=*/true);
  return absl::OkStatus();
}

GuestRuntime::Outcome FunctionGuest::Finish(absl::string_view what) {
  const Request request = std::exchange(request_, Request::kNone);
  if (request == Request::kBeforeSnapshot) {
    boot_info_->request = THAW_REQUEST_CALL;
  }
  const auto& outcome = dispatcher_.outcome();
  if (outcome.kind == HypercallDispatcher::Outcome::Kind::kFailed) {
    absl::Status error = outcome.error;
    if (request != Request::kBoot) {
      error =
          absl::Status(error.code(), absl::StrCat(what, ": ", error.message()));
    }
    return {error, outcome.vm_usable};
  }
  switch (request) {
    case Request::kBoot:
    case Request::kNone:
      return {std::string(), true};
    case Request::kBeforeSnapshot:
      if (outcome.reply_status != 0) {
        return {absl::AbortedError(absl::StrFormat(
                    "before-snapshot hook replied with status %d",
                    outcome.reply_status)),
                true};
      }
      return {std::string(), true};
    case Request::kCall:
      break;
  }
  if (outcome.reply_status == THAW_REPLY_NO_SUCH_FUNCTION) {
    return {absl::NotFoundError(
                absl::StrCat("guest has no function \"", function_, "\"")),
            true};
  }
  if (outcome.reply_status != 0) {
    return {
        absl::AbortedError(absl::StrFormat(
            "call \"%s\": guest function failed with status %d: %s", function_,
            outcome.reply_status, outcome.reply.substr(0, 1024))),
        true};
  }
  return {outcome.reply, true};
}

absl::Status FunctionGuest::Save(snapshot::proto::Manifest& m) const {
  m.mutable_config()->set_memory_size(config_.memory_size);
  m.mutable_config()->set_input_buffer_size(config_.input_buffer_size);
  m.mutable_config()->set_output_buffer_size(config_.output_buffer_size);
  m.mutable_config()->set_stack_size(config_.stack_size);
  m.mutable_config()->set_guest_kind(0);
  m.mutable_abi()->set_abi_version(THAW_ABI_VERSION);
  m.mutable_abi()->set_restore_generation(generation());
  m.mutable_abi()->set_guest_name(guest_name_);
  std::lock_guard<std::mutex> lock(symbols_mutex_);
  for (const auto& [name, address] : symbols_) {
    (*m.mutable_abi()->mutable_symbols())[name] = address;
  }
  return absl::OkStatus();
}

absl::Status FunctionGuest::Restore(const snapshot::proto::Manifest& m,
                                    absl::string_view path) {
  {
    std::lock_guard<std::mutex> lock(symbols_mutex_);
    for (const auto& [name, address] : m.abi().symbols()) {
      symbols_[name] = address;
    }
  }
  guest_name_ = m.abi().guest_name();
  auto info = memory_.As<thaw_boot_info>(THAW_BOOT_INFO_ADDR, "boot info");
  if (!info.ok()) return info.status();
  thaw_boot_info* boot_info = *info;
  if (boot_info->magic != THAW_BOOT_INFO_MAGIC ||
      boot_info->abi_version != THAW_ABI_VERSION ||
      boot_info->memory_size != config_.memory_size ||
      boot_info->input_addr != layout_.input_addr ||
      boot_info->output_addr != layout_.output_addr) {
    return absl::DataLossError(absl::StrCat(
        "restore \"", path,
        "\": the boot-info page in the snapshot's memory does not match its "
        "manifest"));
  }
  boot_info_ = boot_info;
  return absl::OkStatus();
}

absl::Status FunctionGuest::NewIdentity(uint64_t generation) {
  boot_info_->restore_generation = generation;
  if (absl::Status s = FillEntropy(*boot_info_); !s.ok()) return s;
  boot_info_->request = THAW_REQUEST_CALL;
  return absl::OkStatus();
}

PageRuns FunctionGuest::HostOwnedPages() const {
  return {{THAW_BOOT_INFO_ADDR / kPage, THAW_BOOT_INFO_ADDR / kPage + 1}};
}

absl::StatusOr<uint64_t> FunctionGuest::FindSymbol(
    absl::string_view name) const {
  std::lock_guard<std::mutex> lock(symbols_mutex_);
  auto it = symbols_.find(name);
  if (it == symbols_.end()) {
    return absl::NotFoundError(
        absl::StrCat("guest symbol \"", name, "\" not found"));
  }
  return it->second;
}

}  // namespace thaw
