#include "remote/store_location.h"

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace thaw {

bool IsRemoteLocation(const std::string& location) {
  return absl::StartsWith(location, "http://") ||
         absl::StartsWith(location, "https://") ||
         absl::StartsWith(location, "s3://");
}

namespace remote {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

std::string FirstOf(const std::string& a, const std::string& b,
                    const std::string& c = "") {
  return !a.empty() ? a : !b.empty() ? b : c;
}

// Each path segment escaped, the slashes kept.
std::string EscapePath(const std::string& path) {
  std::string out;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (!out.empty() || absl::StartsWith(path, "/")) out += "/";
    out += EscapeUrlComponent(std::string(part));
  }
  return out;
}

}  // namespace

absl::StatusOr<StoreLocation> ParseLocation(const std::string& location,
                                            const RemoteOptions& options) {
  StoreLocation out;
  out.location = location;
  out.http.max_parallel = options.max_parallel_requests;
  out.http.max_attempts = options.max_attempts;
  out.http.first_backoff = options.first_backoff;
  out.http.connect_timeout = options.connect_timeout;
  out.http.request_timeout = options.request_timeout;
  out.http.stall_timeout = options.stall_timeout;
  if (options.max_parallel_requests < 1 || options.max_attempts < 1) {
    return absl::InvalidArgumentError(
        "RemoteOptions: max_parallel_requests and max_attempts must be at "
        "least 1");
  }
  if (absl::StartsWith(location, "http://") ||
      absl::StartsWith(location, "https://")) {
    const size_t host = location.find("://") + 3;
    if (location.size() <= host || location[host] == '/') {
      return absl::InvalidArgumentError(
          absl::StrFormat("\"%s\": no host in the URL", location));
    }
    out.url = location;
    return out;
  }
  if (!absl::StartsWith(location, "s3://")) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "\"%s\" is not a remote location (http://, https:// or s3://)",
        location));
  }
  const std::string rest = location.substr(5);
  const size_t slash = rest.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == rest.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("\"%s\": an S3 location is s3://BUCKET/KEY", location));
  }
  out.s3 = true;
  out.bucket = rest.substr(0, slash);
  out.key = rest.substr(slash + 1);
  const std::string region =
      FirstOf(options.s3_region, Env("AWS_REGION"),
              FirstOf(Env("AWS_DEFAULT_REGION"), "", "us-east-1"));
  out.endpoint =
      FirstOf(options.s3_endpoint, Env("AWS_ENDPOINT_URL_S3"),
              FirstOf(Env("AWS_ENDPOINT_URL"), "",
                      absl::StrCat("https://s3.", region, ".amazonaws.com")));
  while (absl::EndsWith(out.endpoint, "/")) out.endpoint.pop_back();
  out.url = absl::StrCat(out.endpoint, "/", EscapeUrlComponent(out.bucket),
                         EscapePath(absl::StrCat("/", out.key)));
  out.http.s3_region = region;
  out.http.access_key_id =
      FirstOf(options.access_key_id, Env("AWS_ACCESS_KEY_ID"));
  out.http.secret_access_key =
      FirstOf(options.secret_access_key, Env("AWS_SECRET_ACCESS_KEY"));
  out.http.session_token =
      FirstOf(options.session_token, Env("AWS_SESSION_TOKEN"));
  if (out.http.access_key_id.empty() != out.http.secret_access_key.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "\"%s\": an access key id without a secret key, or the reverse "
        "(RemoteOptions or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)",
        location));
  }
  return out;
}

absl::Status CheckParentLocation(const std::string& location,
                                 const std::string& parent) {
  const size_t scheme = location.find("://");
  if (parent.compare(0, scheme + 3, location, 0, scheme + 3) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "snapshot \"%s\" names its parent as \"%s\"; a remote snapshot's "
        "parent must be a relative path beside it in the same store",
        location, parent));
  }
  return absl::OkStatus();
}

}  // namespace remote
}  // namespace thaw
