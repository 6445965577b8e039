// PushSnapshot and PullSnapshot (thaw/remote.h).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/errno_status.h"
#include "base/pwrite_full.h"
#include "remote/store_location.h"
#include "snapshot/snapshot_file.h"
#include "snapshot/verify.h"
#include "thaw/remote.h"

namespace thaw {
namespace {

constexpr uint64_t kPullPiece = 8ull << 20;

// A read-only view of a whole file, unmapped when done.
class FileView {
 public:
  static absl::StatusOr<std::unique_ptr<FileView>> Open(
      const std::string& path) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(absl::StrCat("open \"", path, "\""), errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
      close(fd);
      return ErrnoStatus(absl::StrCat("stat \"", path, "\""), errno);
    }
    std::unique_ptr<FileView> view(new FileView);
    view->size_ = st.st_size;
    if (view->size_ > 0) {
      void* p = mmap(nullptr, view->size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        close(fd);
        return ErrnoStatus(absl::StrCat("map \"", path, "\""), errno);
      }
      view->data_ = static_cast<const uint8_t*>(p);
    }
    close(fd);
    return view;
  }
  ~FileView() {
    if (data_ != nullptr) munmap(const_cast<uint8_t*>(data_), size_);
  }
  absl::Span<const uint8_t> bytes() const { return {data_, size_}; }

 private:
  FileView() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

std::string Between(const std::string& text, const std::string& open,
                    const std::string& close) {
  const size_t a = text.find(open);
  if (a == std::string::npos) return "";
  const size_t b = text.find(close, a + open.size());
  if (b == std::string::npos) return "";
  return text.substr(a + open.size(), b - a - open.size());
}

absl::Status PushMultipart(remote::HttpClient& client,
                           const remote::StoreLocation& where,
                           absl::Span<const uint8_t> bytes,
                           uint64_t part_size) {
  // "uploads=": libcurl 7.88's Signature V4 signs a bare "?uploads" wrong.
  remote::HttpRequest start =
      remote::MethodRequest("POST", where.url + "?uploads=");
  auto started = client.Do(start);
  if (!started.ok()) return started.status();
  const std::string upload_id =
      Between(started->body, "<UploadId>", "</UploadId>");
  if (upload_id.empty()) {
    return absl::DataLossError(absl::StrFormat(
        "%s: the store's answer to starting a multipart upload has no "
        "UploadId",
        where.location));
  }
  const std::string id = remote::EscapeUrlComponent(upload_id);
  const size_t parts =
      std::max<size_t>(1, (bytes.size() + part_size - 1) / part_size);
  std::vector<remote::HttpRequest> requests(parts);
  std::vector<std::string> etags(parts);
  for (size_t i = 0; i < parts; ++i) {
    requests[i].method = "PUT";
    // Query parameters in sorted order (Signature V4 signs them so).
    requests[i].url =
        absl::StrCat(where.url, "?partNumber=", i + 1, "&uploadId=", id);
    requests[i].body = bytes.subspan(i * part_size, part_size);
  }
  absl::Status s =
      client.Run(requests, [&](size_t i, const remote::HttpResponse& r) {
        if (r.etag.empty()) {
          return absl::DataLossError("the store gave the part no ETag");
        }
        etags[i] = r.etag;
        return absl::OkStatus();
      });
  auto abort = [&] {
    remote::HttpRequest drop = remote::MethodRequest(
        "DELETE", absl::StrCat(where.url, "?uploadId=", id));
    client.Do(drop).IgnoreError();
  };
  if (!s.ok()) {
    abort();
    return s;
  }
  std::string xml = "<CompleteMultipartUpload>";
  for (size_t i = 0; i < parts; ++i) {
    absl::StrAppend(&xml, "<Part><PartNumber>", i + 1, "</PartNumber><ETag>",
                    etags[i], "</ETag></Part>");
  }
  xml += "</CompleteMultipartUpload>";
  remote::HttpRequest finish = remote::MethodRequest(
      "POST", absl::StrCat(where.url, "?uploadId=", id),
      {reinterpret_cast<const uint8_t*>(xml.data()), xml.size()});
  auto done = client.Do(finish);
  if (!done.ok()) {
    abort();
    return done.status();
  }
  // S3 may answer 200 with an error in the body.
  if (done->body.find("<Error>") != std::string::npos) {
    abort();
    return absl::UnavailableError(
        absl::StrFormat("%s: completing the multipart upload failed: %s",
                        where.location, done->body.substr(0, 300)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status PushSnapshot(const std::string& path, const std::string& url,
                          const RemoteOptions& options) {
  // A damaged file is not published.
  auto image = snapshot::SnapshotImage::Open(path);
  if (!image.ok()) return image.status();
  if (absl::Status s = snapshot::VerifyImage(**image, nullptr); !s.ok()) {
    return s;
  }
  auto where = remote::ParseLocation(url, options);
  if (!where.ok()) return where.status();
  auto view = FileView::Open(path);
  if (!view.ok()) return view.status();
  remote::HttpClient client(where->http);
  if (where->s3 && (*view)->bytes().size() > options.s3_multipart_above) {
    if (options.s3_part_size < (5ull << 20)) {
      return absl::InvalidArgumentError(
          "RemoteOptions.s3_part_size: S3 parts are at least 5 MiB");
    }
    return PushMultipart(client, *where, (*view)->bytes(),
                         options.s3_part_size);
  }
  remote::HttpRequest put =
      remote::MethodRequest("PUT", where->url, (*view)->bytes());
  auto done = client.Do(put);
  return done.ok() ? absl::OkStatus() : done.status();
}

absl::Status PullSnapshot(const std::string& url, const std::string& path,
                          const RemoteOptions& options) {
  auto where = remote::ParseLocation(url, options);
  if (!where.ok()) return where.status();
  remote::HttpClient client(where->http);
  remote::HttpRequest first = remote::RangeRequest(where->url, 0, 1);
  auto head = client.Do(first);
  if (!head.ok()) return head.status();
  const uint64_t total = head->total_size;
  std::mt19937_64 random(std::random_device{}());
  const std::string tmp = absl::StrFormat("%s.pull-%016x", path, random());
  int fd = open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(absl::StrCat("create \"", tmp, "\""), errno);
  auto fail = [&](absl::Status s) {
    close(fd);
    unlink(tmp.c_str());
    return s;
  };
  std::vector<remote::HttpRequest> pieces;
  for (uint64_t at = 0; at < total; at += kPullPiece) {
    remote::HttpRequest r =
        remote::RangeRequest(where->url, at, std::min(kPullPiece, total - at));
    if (!head->etag.empty()) r.headers.push_back("If-Match: " + head->etag);
    pieces.push_back(std::move(r));
  }
  absl::Status s = client.Run(
      pieces, [&](size_t i, const remote::HttpResponse& r) -> absl::Status {
        absl::Status written = PwriteFull(
            fd,
            {reinterpret_cast<const uint8_t*>(r.body.data()), r.body.size()},
            *pieces[i].range_first, absl::StrCat("write \"", tmp, "\""));
        // Not a code the client retries: a full disk stays full.
        return written.ok() ? written
                            : absl::ResourceExhaustedError(written.message());
      });
  if (!s.ok()) return fail(s);
  if (fsync(fd) != 0) {
    return fail(ErrnoStatus(absl::StrCat("fsync \"", tmp, "\""), errno));
  }
  close(fd);
  // Checked end to end before it takes the name.
  // (A diff snapshot's parent must be there already, beside `path`.)
  auto image = snapshot::SnapshotImage::Open(tmp);
  s = image.ok() ? snapshot::VerifyImage(**image, nullptr) : image.status();
  if (!s.ok()) {
    unlink(tmp.c_str());
    return absl::DataLossError(absl::StrFormat(
        "pulled \"%s\" but it does not check: %s", url, s.message()));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    unlink(tmp.c_str());
    return ErrnoStatus(absl::StrCat("rename into \"", path, "\""), e);
  }
  return absl::OkStatus();
}

std::string RemoteStats::ToString() const {
  return absl::StrFormat(
      "requests %d (retries %d), %d bytes fetched, %d frames fetched; "
      "cache: %d hits, %d misses, %d bytes not downloaded; %d frames "
      "already on the host",
      requests, retries, bytes_fetched, frames_fetched, cache_hits,
      cache_misses, bytes_deduplicated, frames_on_host);
}

}  // namespace thaw
