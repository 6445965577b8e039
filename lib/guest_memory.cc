#include "lib/guest_memory.h"

#include <sys/mman.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/errno_status.h"

namespace thaw {

absl::StatusOr<std::unique_ptr<GuestMemory>> GuestMemory::Create(
    uint64_t size) {
  // MAP_NORESERVE: guest memory is touched sparsely; commit it page by page.
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    return ErrnoStatus(absl::StrCat("mmap ", size, " bytes of guest memory"),
                       errno);
  }
  return std::unique_ptr<GuestMemory>(
      new GuestMemory(static_cast<uint8_t*>(base), size, true));
}

std::unique_ptr<GuestMemory> GuestMemory::View(uint8_t* base, uint64_t size) {
  return std::unique_ptr<GuestMemory>(new GuestMemory(base, size, false));
}

GuestMemory::~GuestMemory() {
  if (owned_) munmap(base_, size_);
}

absl::StatusOr<absl::Span<uint8_t>> GuestMemory::Slice(
    uint64_t address, uint64_t length, absl::string_view what) const {
  // Written so that no sum can overflow: address <= size_ first.
  if (address > size_ || length > size_ - address) {
    return absl::OutOfRangeError(absl::StrFormat(
        "%s: guest range [0x%x, +0x%x) is outside guest memory of 0x%x bytes",
        what, address, length, size_));
  }
  return absl::Span<uint8_t>(base_ + address, length);
}

absl::Status GuestMemory::Write(uint64_t address,
                                absl::Span<const uint8_t> bytes,
                                absl::string_view what) {
  auto slice = Slice(address, bytes.size(), what);
  if (!slice.ok()) return slice.status();
  if (!bytes.empty()) std::memcpy(slice->data(), bytes.data(), bytes.size());
  NoteHostWrite(address, bytes.size());
  return absl::OkStatus();
}

absl::Status GuestMemory::Read(uint64_t address, absl::Span<uint8_t> out,
                               absl::string_view what) const {
  auto slice = Slice(address, out.size(), what);
  if (!slice.ok()) return slice.status();
  if (!out.empty()) std::memcpy(out.data(), slice->data(), out.size());
  return absl::OkStatus();
}

}  // namespace thaw
