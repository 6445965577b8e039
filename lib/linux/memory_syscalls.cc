// brk, mmap and friends inside the Vm's memory. Guest memory is identity-
// mapped, so a mapping is a stretch of guest-physical pages: brk grows up
// from the end of the program image, mappings are placed down from the
// stack, and the two may not meet. Memory a program gets is zero: fresh
// guest memory is, and memory given back is zeroed before it is reused.
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "lib/linux/syscalls.h"

namespace thaw::linux_abi {
namespace {
constexpr uint64_t kPage = 4096;
// Room kept free between the brk heap and the lowest mapping.
constexpr uint64_t kGap = 1ull << 20;
uint64_t PageUp(uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }
}  // namespace

void Syscalls::ZeroRange(uint64_t address, uint64_t size) {
  auto range = UserSlice(address, size);
  if (range.ok()) std::memset(range->data(), 0, range->size());
}

backend::SyscallResult Syscalls::Brk(const uint64_t* a) {
  const uint64_t wanted = a[0];
  if (wanted < layout_.brk_start || wanted + kGap > mmap_low_) {
    return Result(static_cast<int64_t>(brk_));  // unchanged: Linux's "no"
  }
  // Memory given back is zero when it is handed out again.
  if (wanted < brk_) ZeroRange(PageUp(wanted), PageUp(brk_) - PageUp(wanted));
  brk_ = wanted;
  return Result(static_cast<int64_t>(brk_));
}

uint64_t Syscalls::FindFree(uint64_t size) {
  // Highest gap below mmap_top that fits, first among the mappings, then
  // below the lowest one (never into the brk heap's room).
  uint64_t top = layout_.mmap_top;
  for (auto it = mappings_.rbegin(); it != mappings_.rend(); ++it) {
    const uint64_t end = it->first + it->second;
    if (top >= end && top - end >= size) return top - size;
    top = it->first;
  }
  if (top < size || top - size < PageUp(brk_) + kGap) return 0;
  return top - size;
}

backend::SyscallResult Syscalls::Mmap(const uint64_t* a) {
  const uint64_t address = a[0], length = a[1];
  const int flags = static_cast<int>(a[3]);
  const int fd = static_cast<int>(a[4]);
  if (length == 0 || length > memory_.size()) return Result(-EINVAL);
  // A file mapping is a copy of the file's bytes (the files are read-only
  // and private mappings never write back, so a copy is what the program
  // can observe).
  OpenFile* file = nullptr;
  if (!(flags & MAP_ANONYMOUS)) {
    file = File(fd);
    if (file == nullptr) return Result(-EBADF);
    if (file->kind == OpenFile::Kind::kNull) {
      file = nullptr;  // /dev/null maps as zeros
    } else if (file->kind != OpenFile::Kind::kFile) {
      return Result(-ENODEV);
    }
    if (a[5] % kPage != 0) return Result(-EINVAL);
  }
  const uint64_t size = PageUp(length);
  uint64_t start = 0;
  if (flags & MAP_FIXED) {
    if (address % kPage != 0 || address < PageUp(brk_) ||
        address + size > layout_.mmap_top || address + size < address) {
      return Result(-ENOMEM);
    }
    start = address;
    // Replace whatever was mapped there.
    const uint64_t end = start + size;
    for (auto it = mappings_.begin(); it != mappings_.end();) {
      const uint64_t m_end = it->first + it->second;
      if (m_end <= start || it->first >= end) {
        ++it;
        continue;
      }
      const uint64_t m_start = it->first;
      it = mappings_.erase(it);
      if (m_start < start) mappings_[m_start] = start - m_start;
      if (m_end > end) mappings_[end] = m_end - end;
    }
    ZeroRange(start, size);
  } else {
    start = FindFree(size);
    if (start == 0) return Result(-ENOMEM);
    // Below every earlier mapping the memory was never handed out: zero.
    if (start < mmap_low_) {
      if (start + size > mmap_low_)
        ZeroRange(mmap_low_, start + size - mmap_low_);
    } else {
      ZeroRange(start, size);
    }
  }
  mappings_[start] = size;
  mmap_low_ = std::min(mmap_low_, start);
  if (file != nullptr) {
    auto target = UserSlice(start, length);
    if (!target.ok()) return Result(-EFAULT);
    uint64_t done = 0;
    while (done < length) {
      ssize_t n = pread(file->host.get(), target->data() + done, length - done,
                        static_cast<off_t>(a[5] + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Result(-EIO);
      if (n == 0) break;  // past the end of the file: zeros, as Linux maps
      done += static_cast<uint64_t>(n);
    }
  }
  return Result(static_cast<int64_t>(start));
}

uint64_t Syscalls::Reserve(uint64_t size) {
  size = PageUp(size);
  const uint64_t start = FindFree(size);
  if (start == 0) return 0;
  mappings_[start] = size;
  mmap_low_ = std::min(mmap_low_, start);
  return start;
}

backend::SyscallResult Syscalls::Munmap(const uint64_t* a) {
  const uint64_t start = a[0], size = PageUp(a[1]);
  if (start % kPage != 0 || size == 0) return Result(-EINVAL);
  const uint64_t end = start + size;
  for (auto it = mappings_.begin(); it != mappings_.end();) {
    const uint64_t m_start = it->first, m_end = it->first + it->second;
    if (m_end <= start || m_start >= end) {
      ++it;
      continue;
    }
    it = mappings_.erase(it);
    if (m_start < start) mappings_[m_start] = start - m_start;
    if (m_end > end) mappings_[end] = m_end - end;
  }
  return Result(0);
}

backend::SyscallResult Syscalls::Mprotect(const uint64_t*) {
  // One address space the program owns entirely; protections are not
  // enforced between its own pages.
  return Result(0);
}

backend::SyscallResult Syscalls::Madvise(const uint64_t* a) {
  // MADV_DONTNEED on private anonymous memory reads back as zeros.
  if (static_cast<int>(a[2]) == MADV_DONTNEED) {
    auto range = UserSlice(a[0], PageUp(a[1]));
    if (!range.ok()) return Result(-EINVAL);
    std::memset(range->data(), 0, range->size());
  }
  return Result(0);
}

backend::SyscallResult Syscalls::Mremap(const uint64_t*) {
  // Allocators fall back to allocate-copy-free.
  return Result(-ENOMEM);
}

}  // namespace thaw::linux_abi
