#include "remote/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace thaw::remote {
namespace {

// curl_global_init once per process, before any thread uses curl.
void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

long Millis(absl::Duration d) {
  return static_cast<long>(absl::ToInt64Milliseconds(d));
}

// One request's attempt in flight.
struct Transfer {
  size_t index = 0;
  int attempt = 0;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  HttpResponse response;
  uint64_t expected = 0;  // body bytes a range GET must bring
  uint64_t limit = 0;     // more than this is refused (0: none)
  bool overflow = false;
  const std::function<HttpRequest::Want(const HttpResponse&)>* progress =
      nullptr;
  bool cut = false;     // `progress` ended it
  bool paused = false;  // `progress` holds the next piece back
  bool suffix = false;  // a suffix range: its length comes with it
  int status_line = 0;  // the answer's status, as its headers arrive
  absl::Duration stall_limit;
  absl::Time last_progress;
  curl_off_t last_down = -1, last_up = -1;
  bool stalled = false;
  uint64_t sent = 0;  // body bytes handed to curl
  absl::Span<const uint8_t> body;
  std::string range;
};

// A range answer the store cut short because the file ends first (RFC 9110
// 14.1.2), all of it here: what a speculative range may get.
bool ClippedAtEnd(const HttpResponse& r) {
  return r.range_last >= r.range_first && r.range_last + 1 == r.total_size &&
         r.body.size() == r.range_last + 1 - r.range_first;
}

// What a store may say in an error's body is kept up to this.
constexpr size_t kErrorBodyLimit = 64u << 10;

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  const bool success = t->status_line >= 200 && t->status_line < 300;
  const uint64_t limit = success ? t->limit : kErrorBodyLimit;
  if (limit != 0 && t->response.body.size() + n > limit) {
    t->overflow = true;
    return 0;  // curl ends the transfer with CURLE_WRITE_ERROR
  }
  if (success && t->progress != nullptr) {
    switch ((*t->progress)(t->response)) {
      case HttpRequest::Want::kMore:
        break;
      case HttpRequest::Want::kWait:
        t->paused = true;
        return CURL_WRITEFUNC_PAUSE;  // curl hands this piece again later
      case HttpRequest::Want::kEnough:
        t->cut = true;
        return 0;  // CURLE_WRITE_ERROR, which judge() takes as the end
    }
  }
  t->response.body.append(data, n);
  return n;
}

int OnProgress(void* user, curl_off_t, curl_off_t down, curl_off_t,
               curl_off_t up) {
  auto* t = static_cast<Transfer*>(user);
  const absl::Time now = absl::Now();
  if (down != t->last_down || up != t->last_up) {
    t->last_down = down;
    t->last_up = up;
    t->last_progress = now;
    return 0;
  }
  if (now - t->last_progress > t->stall_limit) {
    t->stalled = true;
    return 1;  // CURLE_ABORTED_BY_CALLBACK
  }
  return 0;
}

size_t OnUpload(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = std::min<size_t>(size * count, t->body.size() - t->sent);
  std::memcpy(data, t->body.data() + t->sent, n);
  t->sent += n;
  return n;
}

// Cache-Control's max-age, in seconds (RFC 9111 5.2.2.1); zero when the
// value also says no-cache or no-store, or has no max-age.
absl::Duration MaxAge(absl::string_view value) {
  int64_t seconds = 0;
  for (absl::string_view d : absl::StrSplit(value, ',')) {
    d = absl::StripAsciiWhitespace(d);
    if (absl::EqualsIgnoreCase(d, "no-cache") ||
        absl::EqualsIgnoreCase(d, "no-store")) {
      return absl::ZeroDuration();
    }
    if (absl::StartsWithIgnoreCase(d, "max-age=") &&
        !absl::SimpleAtoi(d.substr(8), &seconds)) {
      seconds = 0;
    }
  }
  return absl::Seconds(std::max<int64_t>(seconds, 0));
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  absl::string_view line(data, n);
  line = absl::StripTrailingAsciiWhitespace(line);
  if (absl::StartsWithIgnoreCase(line, "HTTP/")) {
    t->response.etag.clear();  // a new answer (after 100 Continue)
    t->response.max_age = absl::ZeroDuration();
    const size_t space = line.find(' ');
    int status = 0;
    if (space != absl::string_view::npos &&
        absl::SimpleAtoi(line.substr(space + 1, 3), &status)) {
      t->status_line = status;
    }
    return n;
  }
  const size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return n;
  absl::string_view name = line.substr(0, colon);
  absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
  if (absl::EqualsIgnoreCase(name, "ETag")) {
    t->response.etag = std::string(value);
  } else if (absl::EqualsIgnoreCase(name, "Content-Range")) {
    const size_t slash = value.rfind('/');
    uint64_t total = 0;
    if (slash != absl::string_view::npos &&
        absl::SimpleAtoi(value.substr(slash + 1), &total)) {
      t->response.total_size = total;
    }
    // "bytes a-b/total"
    const size_t space = value.find(' '), dash = value.find('-');
    if (space != absl::string_view::npos && dash != absl::string_view::npos &&
        dash > space && slash != absl::string_view::npos && slash > dash) {
      uint64_t a = 0, b = 0;
      if (absl::SimpleAtoi(value.substr(space + 1, dash - space - 1), &a) &&
          absl::SimpleAtoi(value.substr(dash + 1, slash - dash - 1), &b)) {
        t->response.range_first = a;
        t->response.range_last = b;
      }
    }
  } else if (absl::EqualsIgnoreCase(name, "Cache-Control")) {
    t->response.max_age = MaxAge(value);
  } else if (absl::EqualsIgnoreCase(name, "Content-Length") &&
             t->range.empty()) {
    uint64_t length = 0;
    if (absl::SimpleAtoi(value, &length)) t->response.total_size = length;
  }
  return n;
}

bool Retryable(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDataLoss ||
         s.code() == absl::StatusCode::kDeadlineExceeded;
}

}  // namespace

struct HttpClient::Shared {
  CURLSH* share = nullptr;
  std::mutex locks[CURL_LOCK_DATA_LAST];
  // Idle multi handles, each with its connection cache: a Run takes one
  // and gives it back, so the next Run on any thread reuses its open
  // connections (no new TCP handshake, a round trip each).
  std::mutex idle_mutex;
  std::vector<CURLM*> idle;
};

HttpClient::HttpClient(HttpOptions options)
    : options_(std::move(options)), shared_(std::make_unique<Shared>()) {
  InitCurlOnce();
  shared_->share = curl_share_init();
  curl_share_setopt(
      shared_->share, CURLSHOPT_LOCKFUNC,
      +[](CURL*, curl_lock_data data, curl_lock_access, void* user) {
        static_cast<Shared*>(user)->locks[data].lock();
      });
  curl_share_setopt(
      shared_->share, CURLSHOPT_UNLOCKFUNC,
      +[](CURL*, curl_lock_data data, void* user) {
        static_cast<Shared*>(user)->locks[data].unlock();
      });
  curl_share_setopt(shared_->share, CURLSHOPT_USERDATA, shared_.get());
  curl_share_setopt(shared_->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  // (Not CURL_LOCK_DATA_CONNECT: with libcurl 7.88 a connection shared
  // between multi handles failed to connect again once its first multi
  // handle was gone.)
}

HttpClient::~HttpClient() {
  for (CURLM* multi : shared_->idle) curl_multi_cleanup(multi);
  curl_share_cleanup(shared_->share);
}

HttpRequest RangeRequest(std::string url, uint64_t first, uint64_t size) {
  HttpRequest r;
  r.url = std::move(url);
  r.range_first = first;
  r.range_size = size;
  return r;
}

HttpRequest SuffixRequest(std::string url, uint64_t size) {
  HttpRequest r;
  r.url = std::move(url);
  r.range_suffix = size;
  return r;
}

HttpRequest MethodRequest(std::string method, std::string url,
                          absl::Span<const uint8_t> body) {
  HttpRequest r;
  r.method = std::move(method);
  r.url = std::move(url);
  r.body = body;
  return r;
}

std::string EscapeUrlComponent(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' ||
        c == '~') {
      out.push_back(c);
    } else {
      absl::StrAppendFormat(&out, "%%%02X", c);
    }
  }
  return out;
}

absl::StatusOr<HttpResponse> HttpClient::Do(const HttpRequest& request) {
  HttpResponse out;
  absl::Status s = Run({&request, 1}, [&](size_t, const HttpResponse& r) {
    out = r;
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return out;
}

absl::Status HttpClient::Run(absl::Span<const HttpRequest> requests,
                             const Check& check) {
  if (requests.empty()) return absl::OkStatus();
  CURLM* multi = nullptr;
  {
    std::lock_guard<std::mutex> lock(shared_->idle_mutex);
    if (!shared_->idle.empty()) {
      multi = shared_->idle.back();
      shared_->idle.pop_back();
    }
  }
  if (multi == nullptr) multi = curl_multi_init();
  std::deque<std::pair<absl::Time, size_t>> waiting;  // (not before, index)
  std::vector<int> attempts(requests.size(), 0);
  for (size_t i = 0; i < requests.size(); ++i) {
    waiting.push_back({absl::InfinitePast(), i});
  }
  std::vector<std::unique_ptr<Transfer>> active;
  std::mt19937_64 jitter(std::random_device{}());
  absl::Status result = absl::OkStatus();

  auto start = [&](size_t index) {
    const HttpRequest& r = requests[index];
    auto t = std::make_unique<Transfer>();
    t->index = index;
    t->attempt = ++attempts[index];
    t->body = r.body;
    CURL* e = curl_easy_init();
    t->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, r.url.c_str());
    curl_easy_setopt(e, CURLOPT_SHARE, shared_->share);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (std::getenv("THAW_CURL_VERBOSE") != nullptr) {
      curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
    }
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     Millis(options_.connect_timeout));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, Millis(options_.request_timeout));
    // A stall: no byte either way for stall_timeout. (Not libcurl's
    // LOW_SPEED options: they average over several seconds and took 7 s to
    // notice a 1 s stall.)
    t->stall_limit = options_.stall_timeout;
    t->last_progress = absl::Now();
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, OnProgress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, t.get());
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t.get());
    curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
    if (r.range_suffix != 0) {
      t->range = absl::StrCat("-", r.range_suffix);
      t->suffix = true;
      t->limit = r.range_suffix;
      curl_easy_setopt(e, CURLOPT_RANGE, t->range.c_str());
    } else if (r.range_first.has_value()) {
      t->range =
          absl::StrCat(*r.range_first, "-", *r.range_first + r.range_size - 1);
      t->expected = r.range_size;
      t->limit = r.range_size;
      if (r.progress) t->progress = &r.progress;
      t->response.body.reserve(r.range_size);  // no copies as it grows
      curl_easy_setopt(e, CURLOPT_RANGE, t->range.c_str());
    }
    for (const std::string& h : r.headers) {
      t->headers = curl_slist_append(t->headers, h.c_str());
    }
    if (!options_.access_key_id.empty()) {
      const std::string sigv4 =
          absl::StrCat("aws:amz:", options_.s3_region, ":s3");
      curl_easy_setopt(e, CURLOPT_AWS_SIGV4, sigv4.c_str());
      curl_easy_setopt(e, CURLOPT_USERNAME, options_.access_key_id.c_str());
      curl_easy_setopt(e, CURLOPT_PASSWORD, options_.secret_access_key.c_str());
      t->headers = curl_slist_append(t->headers,
                                     "x-amz-content-sha256: UNSIGNED-PAYLOAD");
      if (!options_.session_token.empty()) {
        t->headers = curl_slist_append(
            t->headers,
            absl::StrCat("x-amz-security-token: ", options_.session_token)
                .c_str());
      }
    }
    if (r.method == "HEAD") {
      curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (r.method == "PUT") {
      curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(e, CURLOPT_READFUNCTION, OnUpload);
      curl_easy_setopt(e, CURLOPT_READDATA, t.get());
      curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
                       static_cast<curl_off_t>(r.body.size()));
    } else if (r.method == "POST") {
      curl_easy_setopt(e, CURLOPT_POST, 1L);
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, r.body.data());
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(r.body.size()));
    } else if (r.method != "GET") {
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
    }
    // (No "Expect:" override: libcurl 7.88's Signature V4 signs the empty
    // header it then leaves out, and S3 refuses the signature.)
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    curl_multi_add_handle(multi, e);
    counters_.requests.fetch_add(1, std::memory_order_relaxed);
    active.push_back(std::move(t));
  };

  // What one finished attempt amounts to.
  auto judge = [&](Transfer& t, CURLcode code) -> absl::Status {
    const HttpRequest& r = requests[t.index];
    const std::string what = absl::StrFormat(
        "%s %s%s", r.method, r.url,
        t.range.empty() ? "" : absl::StrCat(" (bytes ", t.range, ")"));
    const bool error_answer = t.status_line >= 300 || t.status_line < 200;
    if (code != CURLE_OK && !(t.overflow && error_answer) && !t.cut) {
      if (t.overflow) {
        return absl::DataLossError(absl::StrFormat(
            "%s: the answer was longer than the %d bytes asked for", what,
            t.limit));
      }
      if (t.stalled) {
        return absl::UnavailableError(
            absl::StrFormat("%s: stalled (no byte for %s)", what,
                            absl::FormatDuration(t.stall_limit)));
      }
      const absl::StatusCode kind = code == CURLE_OPERATION_TIMEDOUT
                                        ? absl::StatusCode::kDeadlineExceeded
                                        : absl::StatusCode::kUnavailable;
      return absl::Status(
          kind, absl::StrFormat("%s: %s", what, curl_easy_strerror(code)));
    }
    curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &t.response.status);
    counters_.bytes_received.fetch_add(t.response.body.size(),
                                       std::memory_order_relaxed);
    counters_.bytes_sent.fetch_add(t.sent, std::memory_order_relaxed);
    const long status = t.response.status;
    if (status >= 500 || status == 429) {
      return absl::UnavailableError(
          absl::StrFormat("%s: the store answered %d", what, status));
    }
    if (status == 404) {
      return absl::NotFoundError(absl::StrFormat("%s: not found (404)", what));
    }
    if (status == 401 || status == 403) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "%s: refused (%d)%s", what, status,
          t.response.body.empty()
              ? ""
              : absl::StrCat(": ", t.response.body.substr(0, 300))));
    }
    if (status < 200 || status >= 300) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s: the store answered %d%s", what, status,
          t.response.body.empty()
              ? ""
              : absl::StrCat(": ", t.response.body.substr(0, 300))));
    }
    if (!t.range.empty()) {
      if (status != 206) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "%s: the store ignored the byte range (answered %d, not 206); "
            "it must support range requests",
            what, status));
      }
      if (t.suffix) {
        const uint64_t announced =
            t.response.range_last + 1 - t.response.range_first;
        if (t.response.range_last < t.response.range_first ||
            t.response.body.size() != announced ||
            t.response.range_last + 1 != t.response.total_size) {
          return absl::DataLossError(absl::StrFormat(
              "%s: got %d bytes for a range of %d ending at %d of %d", what,
              t.response.body.size(), announced, t.response.range_last,
              t.response.total_size));
        }
      } else if (t.response.body.size() != t.expected &&
                 !(t.cut && t.response.body.size() < t.expected) &&
                 !(t.progress != nullptr && ClippedAtEnd(t.response))) {
        return absl::DataLossError(
            absl::StrFormat("%s: got %d bytes of the %d asked for", what,
                            t.response.body.size(), t.expected));
      }
    }
    if (absl::Status s = check(t.index, t.response); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
    }
    return absl::OkStatus();
  };

  while (result.ok() && (!waiting.empty() || !active.empty())) {
    const absl::Time now = absl::Now();
    // Start what may start.
    for (auto it = waiting.begin();
         it != waiting.end() &&
         active.size() < static_cast<size_t>(options_.max_parallel);) {
      if (it->first <= now) {
        start(it->second);
        it = waiting.erase(it);
      } else {
        ++it;
      }
    }
    int running = 0;
    curl_multi_perform(multi, &running);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Transfer* raw = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &raw);
      const CURLcode code = msg->data.result;
      absl::Status s = judge(*raw, code);
      curl_multi_remove_handle(multi, raw->easy);
      curl_easy_cleanup(raw->easy);
      curl_slist_free_all(raw->headers);
      const size_t index = raw->index;
      const int attempt = raw->attempt;
      active.erase(std::find_if(active.begin(), active.end(),
                                [&](const auto& t) { return t.get() == raw; }));
      if (s.ok()) continue;
      if (Retryable(s) && attempt < options_.max_attempts) {
        counters_.retries.fetch_add(1, std::memory_order_relaxed);
        // Exponential backoff with full jitter.
        const absl::Duration cap =
            options_.first_backoff * (1 << (attempt - 1));
        const double f =
            std::uniform_real_distribution<double>(0.5, 1.0)(jitter);
        waiting.push_back({absl::Now() + cap * f, index});
        continue;
      }
      if (result.ok()) {
        result = attempt > 1
                     ? absl::Status(s.code(),
                                    absl::StrFormat("%s (after %d attempts)",
                                                    s.message(), attempt))
                     : s;
      }
    }
    if (!result.ok()) break;
    // Paused transfers whose hook now wants the bytes (or wants no more:
    // the piece it held comes again and is refused).
    bool resumed = false;
    for (auto& t : active) {
      if (t->paused &&
          (*t->progress)(t->response) != HttpRequest::Want::kWait) {
        t->paused = false;
        curl_easy_pause(t->easy, CURLPAUSE_CONT);
        resumed = true;
      }
    }
    // (A resumed transfer may hold bytes curl read already: no socket
    // would wake the poll for them.)
    if (resumed) continue;
    if (!active.empty()) {
      curl_multi_poll(multi, nullptr, 0, 50, nullptr);
    } else if (!waiting.empty()) {
      absl::Time next = absl::InfiniteFuture();
      for (const auto& w : waiting) next = std::min(next, w.first);
      const absl::Duration d = next - absl::Now();
      if (d > absl::ZeroDuration()) absl::SleepFor(d);
    }
  }
  for (auto& t : active) {
    curl_multi_remove_handle(multi, t->easy);
    curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
  }
  {
    std::lock_guard<std::mutex> lock(shared_->idle_mutex);
    shared_->idle.push_back(multi);
  }
  return result;
}

}  // namespace thaw::remote
