// HttpClient: the requests a remote snapshot store needs — ranged GETs,
// whole-file GETs and PUTs/POSTs for publishing — over libcurl's multi
// interface, several in flight at once, each retried with backoff when the
// store or the network fails in a way that may pass.
//
// Retried: connection failures, timeouts, stalls (no byte for
// `stall_timeout`), a body shorter or longer than announced, 5xx and 429
// answers, and any answer the caller's check rejects with DataLoss (bytes
// that failed their hash, e.g. corrupted on the way). Not retried: other
// 4xx answers (NotFound for 404, PermissionDenied for 401/403,
// FailedPrecondition otherwise), each naming the URL and the answer. After
// `max_attempts` the last failure is returned, naming the URL, the attempts
// and what went wrong. Nothing waits for ever: every attempt ends within
// `request_timeout`.
//
// S3: with credentials set, each request is signed with AWS Signature V4
// (libcurl's CURLOPT_AWS_SIGV4, with an unsigned payload hash).
//
// Thread safety: Run() may be called from any number of threads at once;
// connections are shared between them (a curl share handle).
#ifndef THAW_REMOTE_HTTP_CLIENT_H_
#define THAW_REMOTE_HTTP_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace thaw::remote {

struct HttpOptions {
  int max_parallel = 8;
  int max_attempts = 5;
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration request_timeout = absl::Seconds(60);
  absl::Duration stall_timeout = absl::Seconds(10);
  absl::Duration first_backoff = absl::Milliseconds(50);
  // S3 Signature V4: set all three to sign.
  std::string s3_region;
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // optional
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::string etag;
  // From Content-Range ("bytes a-b/total") or, without one, Content-Length.
  uint64_t total_size = 0;
  uint64_t range_first = 0;  // a from Content-Range
  uint64_t range_last = 0;   // b
  // How long the answer may be reused without asking again: Cache-Control's
  // max-age (s-maxage for a shared cache is not ours), zero with no-cache or
  // no-store, or without the header.
  absl::Duration max_age = absl::ZeroDuration();
};

struct HttpRequest {
  std::string url;
  std::string method = "GET";  // GET, HEAD, PUT, POST, DELETE
  // GET: bytes [range_first, range_first + range_size) only.
  std::optional<uint64_t> range_first;
  uint64_t range_size = 0;
  // GET: the last `range_suffix` bytes instead (the whole file if it is
  // shorter); the answer's range_first says where they start.
  uint64_t range_suffix = 0;
  // GET with a range: asked on Run's thread before each piece of the body
  // is taken, with the answer so far (status, headers, body). kMore takes
  // it; kWait holds it back, the transfer paused until the hook, asked again
  // each time Run's loop turns, says otherwise; kEnough ends the transfer
  // there, and the answer is the body so far (a prefix of the range, not an
  // error). For a range asked for on speculation, cut once the caller knows
  // how much it wants. It is asked afresh when a retry starts over. Such a
  // range may also run past the file's end: the answer then ends with it.
  enum class Want { kMore, kWait, kEnough };
  std::function<Want(const HttpResponse& so_far)> progress;
  // PUT/POST: the body (not copied; must outlive Run).
  absl::Span<const uint8_t> body;
  std::vector<std::string> headers;  // "Name: value"
};

struct HttpCounters {
  std::atomic<uint64_t> requests{0};  // attempts, retries included
  std::atomic<uint64_t> retries{0};
  std::atomic<uint64_t> bytes_received{0};
  std::atomic<uint64_t> bytes_sent{0};
};

class HttpClient {
 public:
  explicit HttpClient(HttpOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Checks an answer; a DataLoss result makes the request be tried again.
  using Check =
      std::function<absl::Status(size_t index, const HttpResponse& response)>;
  // Runs every request, at most max_parallel at once, and calls `check`
  // (on this thread) for each successful (2xx) answer, complete and of the
  // announced length. Returns the first request's error that retries did
  // not cure; the others are then abandoned.
  absl::Status Run(absl::Span<const HttpRequest> requests, const Check& check);
  // One request; its answer.
  absl::StatusOr<HttpResponse> Do(const HttpRequest& request);

  const HttpCounters& counters() const { return counters_; }
  const HttpOptions& options() const { return options_; }

 private:
  struct Shared;
  HttpOptions options_;
  std::unique_ptr<Shared> shared_;
  HttpCounters counters_;
};

// A GET of bytes [first, first + size) of `url`.
HttpRequest RangeRequest(std::string url, uint64_t first, uint64_t size);
// A GET of the last `size` bytes of `url`.
HttpRequest SuffixRequest(std::string url, uint64_t size);
// Any other request, with `body` for PUT and POST.
HttpRequest MethodRequest(std::string method, std::string url,
                          absl::Span<const uint8_t> body = {});

// Percent-escapes all but RFC 3986's unreserved characters (S3 keys and
// query values).
std::string EscapeUrlComponent(const std::string& text);

}  // namespace thaw::remote

#endif  // THAW_REMOTE_HTTP_CLIENT_H_
