// Real servers for the remote-store tests and benchmarks, started on
// loopback and stopped with their handle: nginx serving a directory (range
// requests, WebDAV PUT), Ceph's radosgw for S3 (tests/remote/
// start_radosgw.sh), and thaw_fault_proxy in front of either.
#ifndef THAW_TESTS_REMOTE_SERVERS_H_
#define THAW_TESTS_REMOTE_SERVERS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace thaw::testing {

// A child process, killed (its whole process group) when the handle goes.
class ChildProcess {
 public:
  // Starts argv; its first stdout line, if `read_line`, is returned by
  // line() (how the proxy says its port).
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(
      const std::vector<std::string>& argv, bool read_line);
  ~ChildProcess();
  const std::string& line() const { return line_; }

 private:
  pid_t pid_ = -1;
  std::string line_;
};

// A free loopback TCP port (bound and released).
int FreePort();

class Nginx {
 public:
  // Serves `www` (created if missing) on a free port; files PUT to it are
  // stored there. `scratch` holds its config, logs and temp files.
  static absl::StatusOr<std::unique_ptr<Nginx>> Start(
      const std::string& www, const std::string& scratch);
  ~Nginx();
  int port() const { return port_; }
  std::string Url(const std::string& path) const;

 private:
  std::string scratch_;
  int port_ = 0;
};

class Radosgw {
 public:
  // A one-node Ceph with radosgw on a free port, its state in `scratch`.
  static absl::StatusOr<std::unique_ptr<Radosgw>> Start(
      const std::string& scratch);
  ~Radosgw();
  int port() const { return port_; }
  std::string endpoint() const;
  const std::string& access_key() const { return access_; }
  const std::string& secret_key() const { return secret_; }
  // Creates a bucket (PUT /bucket, signed).
  absl::Status CreateBucket(const std::string& bucket);

 private:
  std::string scratch_;
  int port_ = 0;
  std::string access_, secret_;
};

// thaw_fault_proxy (tests/remote/fault_proxy.cc) in front of `upstream`,
// with its command-line options.
absl::StatusOr<std::unique_ptr<ChildProcess>> StartFaultProxy(
    int upstream, const std::vector<std::string>& options, int* port);

// Whether the programs the S3 tests need are installed (scripts/setup.sh).
bool CephInstalled();

}  // namespace thaw::testing

#endif  // THAW_TESTS_REMOTE_SERVERS_H_
