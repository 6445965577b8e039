#include "examples/faas/event_queue.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "examples/faas/durable_file.h"

namespace thaw::faas {
namespace {

using Json = nlohmann::json;

}  // namespace

EventQueue::EventQueue(std::string dir, Invoker& invoker, Metrics& metrics,
                       LogSink& log, EventQueueOptions options)
    : dir_(std::move(dir)),
      invoker_(invoker),
      metrics_(metrics),
      log_(log),
      options_(options) {
  std::filesystem::create_directories(dir_ + "/pending");
  std::filesystem::create_directories(dir_ + "/dead-letter");
  std::vector<Event> found;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator(dir_ + "/pending", error)) {
    if (entry.path().extension() != ".json") continue;  // *.tmp: never stored
    auto text = ReadWholeFile(entry.path().string());
    Json body = Json::parse(text.ok() ? *text : "", nullptr, false);
    std::string payload;
    if (body.is_discarded() || !body.contains("id") ||
        !body.contains("payload_base64") ||
        !absl::Base64Unescape(body["payload_base64"].get<std::string>(),
                              &payload)) {
      log_.Write(absl::StrCat("event queue: ", entry.path().string(),
                              " is damaged; left in place"));
      continue;
    }
    Event event;
    event.id = body["id"].get<std::string>();
    event.function = body.value("function", "");
    event.payload = std::move(payload);
    event.attempts = body.value("attempts", 0);
    event.not_before = absl::FromUnixMillis(body.value("not_before_ms", 0));
    found.push_back(std::move(event));
  }
  std::sort(found.begin(), found.end(), [](const Event& a, const Event& b) {
    return a.not_before < b.not_before;
  });
  for (Event& e : found) events_.push_back(std::move(e));
}

EventQueue::~EventQueue() { Stop(); }

std::string EventQueue::PendingPath(const std::string& id) const {
  return absl::StrCat(dir_, "/pending/", id, ".json");
}

absl::Status EventQueue::Persist(const Event& event,
                                 const std::string& path) const {
  Json body{{"id", event.id},
            {"function", event.function},
            {"payload_base64", absl::Base64Escape(event.payload)},
            {"attempts", event.attempts},
            {"not_before_ms", absl::ToUnixMillis(event.not_before)}};
  if (!event.last_error.empty()) body["last_error"] = event.last_error;
  return WriteFileDurably(path, body.dump());
}

absl::StatusOr<std::string> EventQueue::Enqueue(const std::string& function,
                                                const std::string& payload) {
  Event event;
  event.id = NewRequestId();
  event.function = function;
  event.payload = payload;
  event.not_before = absl::Now();
  if (absl::Status s = Persist(event, PendingPath(event.id)); !s.ok()) {
    return s;
  }
  const std::string id = event.id;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back(std::move(event));
  }
  wake_.notify_one();
  return id;
}

void EventQueue::Start() {
  for (int i = 0; i < options_.workers; ++i) {
    workers_.emplace_back([this] { Work(); });
  }
}

void EventQueue::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
}

size_t EventQueue::pending() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return events_.size();
}

void EventQueue::Work() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    // The first event that is due; else sleep until the earliest one is.
    const absl::Time now = absl::Now();
    auto due =
        std::find_if(events_.begin(), events_.end(),
                     [&](const Event& e) { return e.not_before <= now; });
    if (due == events_.end()) {
      absl::Time next = absl::InfiniteFuture();
      for (const Event& e : events_) next = std::min(next, e.not_before);
      if (next == absl::InfiniteFuture()) {
        wake_.wait(lock);
      } else {
        wake_.wait_until(lock, absl::ToChronoTime(next));
      }
      continue;
    }
    Event event = std::move(*due);
    events_.erase(due);
    lock.unlock();
    HttpReply reply = invoker_.Invoke(event.function, event.payload, event.id);
    Finish(std::move(event), reply);
    lock.lock();
  }
}

void EventQueue::Finish(Event event, const HttpReply& reply) {
  if (reply.succeeded()) {
    metrics_.AsyncEvent(event.function, "delivered");
    std::filesystem::remove(PendingPath(event.id));
    return;
  }
  event.last_error = absl::StrCat(reply.status, " ", reply.body);
  // A throttle is not the function's failure: try again later without
  // using up an attempt. A function that is gone never will succeed.
  const bool throttled = reply.status == 429;
  if (!throttled) ++event.attempts;
  if (reply.status == 404 || event.attempts >= options_.max_attempts) {
    metrics_.AsyncEvent(event.function, "dead_letter");
    const std::string dead =
        absl::StrCat(dir_, "/dead-letter/", event.id, ".json");
    if (Persist(event, dead).ok()) {
      std::filesystem::remove(PendingPath(event.id));
    }
    log_.Write(absl::StrCat("ASYNC_DEAD_LETTER RequestId: ", event.id,
                            "\tFunction: ", event.function, "\tAttempts: ",
                            event.attempts, "\tError: ", event.last_error));
    return;
  }
  metrics_.AsyncEvent(event.function, throttled ? "throttled" : "retried");
  event.not_before =
      absl::Now() + options_.backoff * (1 << std::max(0, event.attempts - 1));
  (void)Persist(event, PendingPath(event.id));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back(std::move(event));
  }
  wake_.notify_one();
}

}  // namespace thaw::faas
