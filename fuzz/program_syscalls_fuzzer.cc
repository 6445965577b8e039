// Fuzz target: the Linux-program system-call layer (lib/linux/), the host
// side of everything a Linux program asks the kernel for. The input is a
// count, that many system calls (number and six argument registers, 56
// bytes each), then the start of guest memory (paths, buffers, iovecs,
// structures the calls point at). They run against a live Syscalls layer
// over 8 MiB of guest memory with a file view of a real directory (a file,
// a subdirectory, a symlink pointing out of the view), the request channel
// fed from the input and replies taken, exactly as a program Vm serves
// them; only the CPU is left out, so each input runs thousands of calls a
// second. Numbers are biased to the ones the layer implements, addresses
// into guest memory. A crash, a sanitizer report, an access outside guest
// memory is a finding.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/call_input.h"
#include "lib/guest_memory.h"
#include "lib/linux/file_view.h"
#include "lib/linux/syscalls.h"

namespace {

constexpr uint64_t kMemory = 8 << 20;
constexpr uint64_t kBrk = 1 << 20;       // the "image" ends here
constexpr uint64_t kStackTop = kMemory;  // mappings go below the stack
constexpr size_t kImage = 64 << 10;

// Negative values (AT_FDCWD, -1) as they come; else mostly addresses inside
// guest memory (often in the first 64 KiB, where the input's bytes are),
// small values (descriptors, flags, sizes), sometimes anything.
uint64_t Argument(uint64_t raw) {
  if (raw >> 63) return raw;
  switch (raw & 3) {
    case 0:
      return (raw >> 2) % kImage;
    case 1:
      return (raw >> 2) % (kMemory + 4096);
    case 2:
      return (raw >> 2) & 0xFFFF;
    default:
      return raw;
  }
}

// The request channel and console, as a program Vm's runtime provides them.
class Host : public thaw::linux_abi::ProgramHost {
 public:
  thaw::backend::SyscallResult ReadRequest(uint64_t, uint64_t) override {
    thaw::backend::SyscallResult r;
    r.value = 0;  // end of requests
    return r;
  }
  int64_t WriteReply(absl::Span<const uint8_t> bytes) override {
    replied_ += bytes.size();
    return static_cast<int64_t>(bytes.size());
  }
  void WriteConsole(absl::string_view text) override {
    console_ += text.size();
  }

 private:
  uint64_t replied_ = 0;
  uint64_t console_ = 0;
};

// A small real directory the view mounts at /data (read-only to the
// program), made once per process.
std::shared_ptr<const thaw::linux_abi::FileView> View() {
  static std::shared_ptr<const thaw::linux_abi::FileView> view = [] {
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() /
        ("thaw-fuzz-view-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir / "sub");
    std::ofstream(dir / "file.txt") << "fuzzing the file view\n";
    std::ofstream(dir / "sub" / "inner") << "inner\n";
    std::error_code ignored;
    std::filesystem::create_symlink("/etc/passwd", dir / "escape", ignored);
    thaw::FileMount mount;
    mount.host_path = dir.string();
    mount.guest_path = "/data";
    auto created = thaw::linux_abi::FileView::Create({mount});
    return created.ok() ? std::shared_ptr<const thaw::linux_abi::FileView>(
                              std::move(*created))
                        : nullptr;
  }();
  return view;
}

// A number as it comes (low 3 bits clear), or else one the layer names
// (its table), so that most calls reach a handler.
uint64_t Number(uint64_t raw) {
  static const std::vector<uint64_t>* known = [] {
    auto* v = new std::vector<uint64_t>;
    for (uint64_t n = 0; n < 512; ++n) {
      if (thaw::linux_abi::Syscalls::Name(n).rfind("syscall_", 0) != 0) {
        v->push_back(n);
      }
    }
    return v;
  }();
  if ((raw & 7) == 0 || known->empty()) return (raw >> 3) % 512;
  return (*known)[(raw >> 3) % known->size()];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using thaw::fuzz::Take;
  const thaw::fuzz::CallInput in =
      thaw::fuzz::SplitCallInput(data, size, /*max_calls=*/64, /*record=*/56);
  if (in.count == 0) return 0;
  thaw::GuestMemory* memory = thaw::fuzz::FreshGuestMemory(kMemory, in, kImage);
  if (memory == nullptr) return 0;
  const uint8_t* call_data = in.calls;
  size_t call_size = in.calls_size;
  const int calls = in.count;

  Host host;
  thaw::linux_abi::Syscalls syscalls(
      *memory, host, {kBrk, kStackTop - (1 << 20), 1 << 20}, View(), "/");
  for (int i = 0; i < calls && call_size > 0 && !syscalls.exited(); ++i) {
    thaw::backend::Syscall call{};
    call.number = Number(Take(call_data, call_size));
    for (uint64_t& arg : call.args) arg = Argument(Take(call_data, call_size));
    call.rip = 0x200000;
    (void)syscalls.Dispatch(call);
    if (!syscalls.fatal().ok()) break;
  }
  return 0;
}
