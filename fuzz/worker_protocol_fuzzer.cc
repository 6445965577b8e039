// Fuzz target: the host's side of the worker protocol, facing a worker that
// has been taken over. The input is what such a worker says: a list of
// answers, one sent after each message the host sends it (each request, and
// each reply to a host-function call or a file request). The harness plays
// that worker on a thread over a socket pair and drives the host's
// WorkerClient through calls, memory reads, symbol lookups, state queries
// and resets. Nothing the worker says may crash the host, make it read or
// write outside its buffers, or leak descriptors; every error is expected.
//
// Input: repeated [u16 little-endian length][kind byte][body]. Kind 0: the
// body is sent as one framed message (a well-formed frame whose contents
// are fuzzed); kind 1: the body is written raw, framing and all, and the
// worker then hangs up; kind 2: as 0, with a descriptor passed alongside.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "lib/worker/channel.h"
#include "lib/worker/worker.pb.h"
#include "lib/worker/worker_client.h"

namespace {

struct Answer {
  uint8_t kind;
  std::string body;
};

std::vector<Answer> Split(const uint8_t* data, size_t size) {
  std::vector<Answer> out;
  size_t at = 0;
  while (at + 3 <= size && out.size() < 64) {
    const size_t length = data[at] | (size_t{data[at + 1]} << 8);
    const uint8_t kind = data[at + 2] % 3;
    at += 3;
    const size_t take = std::min(length, size - at);
    out.push_back(
        {kind, std::string(reinterpret_cast<const char*>(data + at), take)});
    at += take;
  }
  return out;
}

void SendFramed(int fd, const std::string& body, bool with_fd) {
  uint8_t length[8];
  uint64_t n = body.size();
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(n >> (8 * i));
  iovec iov{length, sizeof(length)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  int passed = -1;
  if (with_fd) {
    passed = open("/dev/null", O_RDONLY | O_CLOEXEC);
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &passed, sizeof(int));
  }
  (void)sendmsg(fd, &msg, MSG_NOSIGNAL);
  if (passed >= 0) close(passed);
  (void)send(fd, body.data(), body.size(), MSG_NOSIGNAL);
}

// The taken-over worker: answers each message from the host with the next
// answer, and hangs up when they run out (or after a raw one).
void PlayWorker(int fd, std::vector<Answer> answers) {
  thaw::worker::Channel channel(fd);
  bool host_waits = false;  // after console output, the host waits on
  for (const Answer& answer : answers) {
    if (!host_waits) {
      thaw::worker::proto::Request request;
      if (!channel.Receive(request).ok()) return;  // descriptors closed
    }
    if (answer.kind == 1) {
      (void)send(fd, answer.body.data(), answer.body.size(), MSG_NOSIGNAL);
      return;
    }
    SendFramed(fd, answer.body, answer.kind == 2);
    thaw::worker::proto::Response sent;
    host_waits = sent.ParseFromString(answer.body) && sent.has_console_output();
  }
}

const std::string& ViewDir() {
  static const std::string* dir = [] {
    auto path = std::filesystem::temp_directory_path() /
                ("thaw-fuzz-view-" + std::to_string(getpid()));
    std::filesystem::create_directories(path / "sub");
    std::ofstream(path / "file.txt") << "in the view";
    return new std::string(path.string());
  }();
  return *dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int sockets[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0) {
    return 0;
  }
  std::thread worker(PlayWorker, sockets[1], Split(data, size));
  thaw::VmConfig config;
  config.backend = thaw::BackendKind::kEmulated;
  config.input_buffer_size = config.output_buffer_size = 4096;
  config.console_sink = [](absl::string_view) {};
  {
    auto client = thaw::internal::WorkerClient::AdoptForTesting(
        sockets[0], config, {{ViewDir(), "/data"}});
    if (client.ok()) {
      thaw::internal::WorkerClient& c = **client;
      (void)c.RegisterHostFunction(
          "echo", [](absl::string_view in) { return std::string(in); });
      (void)c.Call("f", "input");
      (void)c.ReadMemory(0x1000, 64);
      (void)c.FindSymbol("symbol");
      (void)c.console();
      (void)c.failure();
      (void)c.report();
      (void)c.restore_stats();
      (void)c.program_stats();
      (void)c.Reset();
      (void)c.Call("g", std::string(4096, 'x'));
    }
  }  // the client hangs up; the worker thread ends
  worker.join();
  return 0;
}
