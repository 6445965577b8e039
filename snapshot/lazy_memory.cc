#include "snapshot/lazy_memory.h"

namespace thaw::snapshot {

absl::StatusOr<std::unique_ptr<LazyMemory>> LazyMemory::Start(
    std::shared_ptr<const SnapshotImage> image, Options options) {
  const uint64_t size = image->memory_size();
  auto mapping = MapGuestMemory(size, options.huge_pages, "guest memory");
  if (!mapping.ok()) return mapping.status();
  std::unique_ptr<LazyMemory> memory(
      new LazyMemory(mapping->base, size, mapping->backing, image));
  LazyPager::Options pager_options;
  pager_options.prefetch = options.prefetch;
  pager_options.record = options.record;
  pager_options.huge_pages = options.huge_pages;
  LazyMemory* self = memory.get();
  pager_options.on_error = [self](const absl::Status&) { self->NotifyError(); };
  auto pager = LazyPager::Start(std::move(image), memory->base(),
                                memory->counters_, std::move(pager_options));
  if (!pager.ok()) return pager.status();
  memory->pager_ = *std::move(pager);
  return memory;
}

LazyMemory::~LazyMemory() { Stop(); }

void LazyMemory::SetErrorCallback(std::function<void()> on_error) {
  std::lock_guard<std::mutex> lock(mutex_);
  on_error_ = std::move(on_error);
}

void LazyMemory::NotifyError() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (on_error_) on_error_();
}

void LazyMemory::Stop() {
  if (pager_ == nullptr) return;
  stopped_error_ = pager_->error();
  // Joins the pager's threads: no fault is served and no error reported
  // after this, so the monitor may tear its backend down.
  pager_.reset();
  std::lock_guard<std::mutex> lock(mutex_);
  on_error_ = nullptr;
}

absl::Status LazyMemory::error() const {
  return pager_ ? pager_->error() : stopped_error_;
}

absl::Status LazyMemory::WaitForVerification() {
  return pager_ ? pager_->WaitForVerification() : stopped_error_;
}

absl::StatusOr<std::function<ChunkHint(uint64_t)>> LazyMemory::ChunkHints(
    uint32_t chunk_size) {
  if (image_->chunk_size() != chunk_size || pager_ == nullptr) {
    return [](uint64_t) { return ChunkHint::kRead; };
  }
  // Chunks the pager never installed are still the image's.
  LazyPager* pager = pager_.get();
  return [pager](uint64_t c) {
    return pager->installed(c) ? ChunkHint::kRead : ChunkHint::kUnchanged;
  };
}

std::vector<uint32_t> LazyMemory::StopRecording() {
  return pager_ ? pager_->StopRecording() : std::vector<uint32_t>{};
}

}  // namespace thaw::snapshot
