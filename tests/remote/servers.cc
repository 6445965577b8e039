#include "tests/remote/servers.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "remote/http_client.h"

namespace thaw::testing {
namespace {

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// Whether `use` (connect or bind) succeeds on a new TCP socket for
// 127.0.0.1:`port`; the socket is closed again.
bool TryOnLoopback(int port, int (*use)(int, const sockaddr*, socklen_t)) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_in addr = Loopback(port);
  const bool ok =
      use(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

bool Answers(int port) { return TryOnLoopback(port, connect); }

absl::Status WaitUntilAnswers(int port, absl::Duration limit,
                              const std::string& what) {
  const absl::Time end = absl::Now() + limit;
  while (!Answers(port)) {
    if (absl::Now() > end) {
      return absl::DeadlineExceededError(
          absl::StrFormat("%s did not answer on port %d", what, port));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& argv, bool read_line) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return absl::InternalError("pipe2 failed");
  }
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    setpgid(0, 0);
    if (read_line) dup2(pipe_fds[1], 1);
    std::vector<char*> args;
    for (const std::string& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  std::unique_ptr<ChildProcess> child(new ChildProcess);
  child->pid_ = pid;
  if (read_line) {
    char c;
    while (read(pipe_fds[0], &c, 1) == 1 && c != '\n') child->line_ += c;
    if (child->line_.empty()) {
      close(pipe_fds[0]);
      return absl::InternalError(
          absl::StrCat(argv[0], " said nothing on stdout (did it start?)"));
    }
  }
  close(pipe_fds[0]);
  return child;
}

ChildProcess::~ChildProcess() {
  if (pid_ <= 0) return;
  kill(-pid_, SIGKILL);
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = Loopback(0);  // the kernel picks the port
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

absl::StatusOr<std::unique_ptr<Nginx>> Nginx::Start(
    const std::string& www, const std::string& scratch) {
  std::filesystem::create_directories(www);
  std::filesystem::create_directories(scratch + "/tmp");
  std::unique_ptr<Nginx> nginx(new Nginx);
  nginx->scratch_ = scratch;
  nginx->port_ = FreePort();
  const std::string conf = scratch + "/nginx.conf";
  std::ofstream out(conf);
  if (getuid() == 0) out << "user root;\n";
  out << absl::StrFormat(
      "worker_processes 2;\n"
      "error_log %s/error.log;\n"
      "pid %s/nginx.pid;\n"
      "events {}\n"
      "http {\n"
      "  access_log off;\n"
      "  client_body_temp_path %s/tmp/body;\n"
      "  proxy_temp_path %s/tmp/proxy;\n"
      "  fastcgi_temp_path %s/tmp/fastcgi;\n"
      "  uwsgi_temp_path %s/tmp/uwsgi;\n"
      "  scgi_temp_path %s/tmp/scgi;\n"
      "  server {\n"
      "    listen 127.0.0.1:%d;\n"
      "    root %s;\n"
      "    client_max_body_size 0;\n"
      "    location / {\n"
      "      dav_methods PUT DELETE;\n"
      "      create_full_put_path on;\n"
      "      dav_access user:rw group:r all:r;\n"
      "    }\n"
      // A store of versioned snapshots that lets hosts keep what they read.
      "    location /immutable/ {\n"
      "      dav_methods PUT DELETE;\n"
      "      create_full_put_path on;\n"
      "      dav_access user:rw group:r all:r;\n"
      "      add_header Cache-Control \"max-age=3600\" always;\n"
      "    }\n"
      "  }\n"
      "}\n",
      scratch, scratch, scratch, scratch, scratch, scratch, scratch,
      nginx->port_, std::filesystem::absolute(www).string());
  out.close();
  const std::string command =
      absl::StrFormat("nginx -p '%s' -c '%s' -g 'daemon on;' 2>'%s/start.log'",
                      scratch, conf, scratch);
  if (std::system(command.c_str()) != 0) {
    std::ifstream log(scratch + "/start.log");
    std::string text((std::istreambuf_iterator<char>(log)), {});
    return absl::FailedPreconditionError(
        absl::StrCat("nginx did not start: ", text));
  }
  if (absl::Status s =
          WaitUntilAnswers(nginx->port_, absl::Seconds(10), "nginx");
      !s.ok()) {
    return s;
  }
  return nginx;
}

Nginx::~Nginx() {
  std::ifstream pid_file(scratch_ + "/nginx.pid");
  pid_t pid = 0;
  if (pid_file >> pid && pid > 0) {
    kill(pid, SIGTERM);
    for (int i = 0; i < 200 && kill(pid, 0) == 0; ++i) {
      absl::SleepFor(absl::Milliseconds(10));
    }
  }
}

std::string Nginx::Url(const std::string& path) const {
  return absl::StrFormat("http://127.0.0.1:%d/%s", port_, path);
}

bool CephInstalled() {
  return std::system(
             "command -v radosgw >/dev/null 2>&1 && command -v "
             "ceph-mon >/dev/null 2>&1 && command -v ceph-osd "
             ">/dev/null 2>&1") == 0;
}

namespace {

bool CanBind(int port) { return TryOnLoopback(port, bind); }

// Two free ports p and p + 1 below Linux's ephemeral range (32768 up),
// where no client connection can take p + 1 meanwhile: radosgw and the
// Ceph monitor.
int FreePortPair() {
  for (int p = 20000 + (getpid() % 500) * 20; p < 32000; p += 2) {
    if (CanBind(p) && CanBind(p + 1)) return p;
  }
  return FreePort();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Radosgw>> Radosgw::Start(
    const std::string& scratch) {
  std::unique_ptr<Radosgw> gw(new Radosgw);
  gw->scratch_ = scratch;
  gw->port_ = FreePortPair();
  const std::string command =
      absl::StrFormat("'%s' '%s' %d 2>'%s.log'", THAW_START_RADOSGW, scratch,
                      gw->port_, scratch);
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return absl::InternalError("popen failed");
  char line[256] = {0};
  const bool got = fgets(line, sizeof(line), p) != nullptr;
  const int rc = pclose(p);
  if (!got || rc != 0) {
    std::string text;
    for (const std::string& name :
         {scratch + ".log", scratch + "/log/mon.a.log",
          scratch + "/log/osd.0.log"}) {
      std::ifstream log(name);
      std::string all((std::istreambuf_iterator<char>(log)), {});
      if (all.size() > 3000) all = all.substr(all.size() - 3000);
      absl::StrAppend(&text, "\n--- ", name, " ---\n", all);
    }
    // Whatever the script started is stopped.
    std::system(absl::StrFormat("'%s' --stop '%s'", THAW_START_RADOSGW, scratch)
                    .c_str());
    return absl::FailedPreconditionError(
        absl::StrCat("radosgw did not start: ", text));
  }
  std::vector<std::string> keys =
      absl::StrSplit(absl::StripAsciiWhitespace(line), ' ');
  if (keys.size() != 2) {
    return absl::InternalError(absl::StrCat("start_radosgw.sh said: ", line));
  }
  gw->access_ = keys[0];
  gw->secret_ = keys[1];
  return gw;
}

Radosgw::~Radosgw() {
  std::system(absl::StrFormat("'%s' --stop '%s'", THAW_START_RADOSGW, scratch_)
                  .c_str());
}

std::string Radosgw::endpoint() const {
  return absl::StrFormat("http://127.0.0.1:%d", port_);
}

absl::Status Radosgw::CreateBucket(const std::string& bucket) {
  remote::HttpOptions options;
  options.s3_region = "us-east-1";
  options.access_key_id = access_;
  options.secret_access_key = secret_;
  remote::HttpClient client(options);
  auto r = client.Do(
      remote::MethodRequest("PUT", absl::StrCat(endpoint(), "/", bucket)));
  return r.ok() ? absl::OkStatus() : r.status();
}

absl::StatusOr<std::unique_ptr<ChildProcess>> StartFaultProxy(
    int upstream, const std::vector<std::string>& options, int* port) {
  std::vector<std::string> argv = {THAW_FAULT_PROXY, "--upstream",
                                   std::to_string(upstream)};
  argv.insert(argv.end(), options.begin(), options.end());
  auto proxy = ChildProcess::Start(argv, /*read_line=*/true);
  if (!proxy.ok()) return proxy.status();
  *port = std::atoi((*proxy)->line().c_str());
  if (*port <= 0) {
    return absl::InternalError(
        absl::StrCat("thaw_fault_proxy said \"", (*proxy)->line(), "\""));
  }
  return proxy;
}

}  // namespace thaw::testing
