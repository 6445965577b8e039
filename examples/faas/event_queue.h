// Asynchronous invocations (X-Invocation-Type: Event): each event is a file
// in the queue directory, written and synced before the caller gets 202,
// so a crash or restart loses nothing. Workers invoke the function; a
// failed event is retried with exponential backoff (throttles do not use
// up an attempt) and, after its last attempt, moved to the dead-letter
// directory with the error.
#ifndef THAW_EXAMPLES_FAAS_EVENT_QUEUE_H_
#define THAW_EXAMPLES_FAAS_EVENT_QUEUE_H_

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "examples/faas/invoker.h"

namespace thaw::faas {

struct EventQueueOptions {
  int workers = 2;
  int max_attempts = 3;  // Lambda: the first try and two retries
  absl::Duration backoff = absl::Seconds(1);  // doubled per attempt
};

class EventQueue {
 public:
  // `dir` holds pending/ and dead-letter/; events already pending there
  // (from before a restart) are queued again.
  EventQueue(std::string dir, Invoker& invoker, Metrics& metrics, LogSink& log,
             EventQueueOptions options);
  ~EventQueue();  // Stop()

  // Writes the event to disk; returns its id (the request id).
  absl::StatusOr<std::string> Enqueue(const std::string& function,
                                      const std::string& payload);
  void Start();
  // Lets the events being invoked finish; the rest stay on disk.
  void Stop();

  size_t pending() const;

 private:
  struct Event {
    std::string id;
    std::string function;
    std::string payload;
    int attempts = 0;
    absl::Time not_before;
    std::string last_error;
  };
  absl::Status Persist(const Event& event, const std::string& path) const;
  void Work();
  void Finish(Event event, const HttpReply& reply);
  std::string PendingPath(const std::string& id) const;

  const std::string dir_;
  Invoker& invoker_;
  Metrics& metrics_;
  LogSink& log_;
  const EventQueueOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Event> events_;  // in arrival order; each has its not_before
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace thaw::faas

#endif  // THAW_EXAMPLES_FAAS_EVENT_QUEUE_H_
