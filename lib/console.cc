#include "lib/console.h"

namespace thaw {

void Console::Write(absl::string_view text) {
  if (settings_.console_sink) settings_.console_sink(text);
  std::lock_guard<std::mutex> lock(mutex_);
  const uint64_t limit = settings_.console_limit;
  if (text.size() >= limit) {
    absl::string_view tail = text.substr(text.size() - limit);
    text_.assign(tail.data(), tail.size());
    return;
  }
  if (text_.size() + text.size() > limit) {
    text_.erase(0, text_.size() + text.size() - limit);
  }
  text_.append(text.data(), text.size());
}

std::string Console::Contents() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return text_;
}

}  // namespace thaw
