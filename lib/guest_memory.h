// GuestMemory: the host mapping that backs guest-physical memory.
//
// Guest-physical address 0 maps to the start of one host mapping, which a
// MemorySource (snapshot/memory_source.h) owns for a Vm; GuestMemory is the
// checked view of it that the backends, the loader and the guest runtimes
// use.
// Every access to guest memory by an address the guest (or a file) supplied
// goes through Slice(), the single place where such addresses are checked,
// so a hostile guest can never make the host touch memory outside it.
//
// Thread safety: the mapping is fixed for the object's lifetime; concurrent
// reads and writes of guest bytes are the caller's business (the vCPU and the
// host only touch guest memory while the vCPU is stopped).
#ifndef THAW_LIB_GUEST_MEMORY_H_
#define THAW_LIB_GUEST_MEMORY_H_

#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace thaw {

class GuestMemory {
 public:
  // Maps `size` bytes of zeroed memory (lazily allocated by the kernel),
  // owned by the result.
  static absl::StatusOr<std::unique_ptr<GuestMemory>> Create(uint64_t size);
  // A view of [base, base + size), which the caller keeps mapped for the
  // view's lifetime.
  static std::unique_ptr<GuestMemory> View(uint8_t* base, uint64_t size);
  ~GuestMemory();
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  uint64_t size() const { return size_; }
  uint8_t* host_base() const { return base_; }

  // Host view of guest range [address, address + length). OutOfRange, naming
  // `what`, if any byte of it lies outside guest memory (overflow-safe).
  absl::StatusOr<absl::Span<uint8_t>> Slice(uint64_t address, uint64_t length,
                                            absl::string_view what) const;

  absl::Status Write(uint64_t address, absl::Span<const uint8_t> bytes,
                     absl::string_view what);
  absl::Status Read(uint64_t address, absl::Span<uint8_t> out,
                    absl::string_view what) const;

  // Host writes into guest memory, journaled while enabled (Vm::Reset on
  // KVM: the dirty log sees only the guest's writes). Write() records its
  // range; code that writes through a Slice() calls NoteHostWrite().
  void StartHostWriteJournal() {
    journal_enabled_ = true;
    host_writes_.clear();
  }
  void StopHostWriteJournal() {
    journal_enabled_ = false;
    host_writes_.clear();
  }
  void NoteHostWrite(uint64_t address, uint64_t length) {
    if (journal_enabled_ && length > 0)
      host_writes_.emplace_back(address, length);
  }
  // The (address, length) ranges written since the last take.
  std::vector<std::pair<uint64_t, uint64_t>> TakeHostWrites() {
    return std::exchange(host_writes_, {});
  }

  // Typed access to a host-owned structure at a known-good address (for
  // example the boot-info page). The layout code guarantees the range; this
  // still checks it.
  template <typename T>
  absl::StatusOr<T*> As(uint64_t address, absl::string_view what) const {
    auto slice = Slice(address, sizeof(T), what);
    if (!slice.ok()) return slice.status();
    // Safe: the range is inside the mapping, which is page-aligned, and the
    // host-owned structures live at addresses aligned for T.
    return reinterpret_cast<T*>(slice->data());
  }

 private:
  GuestMemory(uint8_t* base, uint64_t size, bool owned)
      : base_(base), size_(size), owned_(owned) {}
  uint8_t* base_;
  uint64_t size_;
  bool owned_;  // unmapped by the destructor
  bool journal_enabled_ = false;
  std::vector<std::pair<uint64_t, uint64_t>> host_writes_;
};

}  // namespace thaw

#endif  // THAW_LIB_GUEST_MEMORY_H_
