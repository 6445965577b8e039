// thaw_fault_proxy: a TCP proxy on loopback that puts the faults of a real
// network between thaw and a snapshot store — latency, dropped and reset
// connections, truncated answers, corrupted bytes, stalls — for the remote
// tests and benchmarks.
//
//   thaw_fault_proxy --upstream PORT [--delay-ms N] [--fault KIND]
//                    [--fault-after BYTES] [--fault-first N | --fault-rate P]
//                    [--seed S]
//
// It listens on an ephemeral loopback port, prints that port on stdout as
// one line, and relays each accepted connection to 127.0.0.1:PORT until it
// is killed. --delay-ms delays every byte by N ms (fractions allowed) in
// each direction (a round trip of 2N), without limiting throughput. A faulty
// connection gets KIND once BYTES of the answer have passed:
//   reset     the client's connection is reset (RST)
//   truncate  the client's connection is closed cleanly
//   corrupt   the answer's byte at BYTES is flipped, the rest passes
//   stall     nothing more is passed, the connection stays open
// Which connections are faulty: the first N (--fault-first), or each with
// probability P (--fault-rate, seeded by --seed).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

enum class Fault { kNone, kReset, kTruncate, kCorrupt, kStall };

struct Config {
  int upstream = 0;
  double delay_ms = 0;  // one way; fractions of a millisecond allowed
  Fault fault = Fault::kNone;
  uint64_t fault_after = 0;
  long fault_first = -1;
  double fault_rate = 0;
  uint64_t seed = 1;
};

using Clock = std::chrono::steady_clock;

// One direction of a connection: a reader queues what it reads with the
// time it may leave; a writer sends it then.
class Pipe {
 public:
  Pipe(int from, int to, double delay_ms, Fault fault, uint64_t fault_after)
      : from_(from),
        to_(to),
        delay_(static_cast<int64_t>(delay_ms * 1000)),
        fault_(fault),
        fault_after_(fault_after) {}

  void Run() {
    std::thread writer([this] { Write(); });
    Read();
    writer.join();
  }
  bool reset() const { return reset_; }

 private:
  void Read() {
    std::vector<char> buffer(64 << 10);
    while (true) {
      ssize_t n = read(from_, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      std::lock_guard<std::mutex> lock(mutex_);
      if (n <= 0) {
        ended_ = true;
        cv_.notify_all();
        return;
      }
      queue_.push_back({Clock::now() + delay_, std::string(buffer.data(), n)});
      cv_.notify_all();
    }
  }

  void Write() {
    uint64_t passed = 0;
    while (true) {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return ended_ || !queue_.empty(); });
      if (queue_.empty()) break;
      auto [due, bytes] = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      std::this_thread::sleep_until(due);
      if (fault_ != Fault::kNone && passed + bytes.size() > fault_after_) {
        const size_t keep = fault_after_ - passed;
        switch (fault_) {
          case Fault::kCorrupt:
            bytes[keep] ^= 0x5a;
            fault_ = Fault::kNone;
            break;
          case Fault::kReset:
            // Serve() resets the client's connection once both directions
            // have stopped (a close with another thread still reading it
            // would not send the RST).
            Send(bytes.data(), keep);
            reset_ = true;
            shutdown(from_, SHUT_RDWR);
            return;
          case Fault::kTruncate:
            Send(bytes.data(), keep);
            shutdown(to_, SHUT_RDWR);
            shutdown(from_, SHUT_RDWR);
            return;
          case Fault::kStall:
            Send(bytes.data(), keep);
            // Hold the connection open, passing nothing, until the peer
            // gives up.
            while (true) std::this_thread::sleep_for(std::chrono::hours(1));
          case Fault::kNone:
            break;
        }
      }
      if (!Send(bytes.data(), bytes.size())) break;
      passed += bytes.size();
    }
    shutdown(to_, SHUT_WR);
  }

  bool Send(const char* data, size_t size) {
    size_t done = 0;
    while (done < size) {
      ssize_t n = send(to_, data + done, size - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += n;
    }
    return true;
  }

  const int from_;
  const int to_;
  const std::chrono::microseconds delay_;
  Fault fault_;
  const uint64_t fault_after_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::pair<Clock::time_point, std::string>> queue_;
  bool ended_ = false;
  bool reset_ = false;
};

void Serve(int client, const Config& config, bool faulty) {
  int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(config.upstream);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
      0) {
    close(upstream);
    close(client);
    return;
  }
  int one = 1;
  setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  Pipe up(client, upstream, config.delay_ms, Fault::kNone, 0);
  Pipe down(upstream, client, config.delay_ms,
            faulty ? config.fault : Fault::kNone, config.fault_after);
  std::thread t([&] { up.Run(); });
  down.Run();
  if (down.reset()) {
    shutdown(client, SHUT_RD);  // wakes the other direction's reader
    shutdown(upstream, SHUT_RDWR);
    t.join();
    linger l{1, 0};  // the close sends RST
    setsockopt(client, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(client);
    close(upstream);
    return;
  }
  shutdown(client, SHUT_RDWR);
  shutdown(upstream, SHUT_RDWR);
  t.join();
  close(client);
  close(upstream);
}

int Usage(const char* why) {
  std::fprintf(stderr,
               "thaw_fault_proxy: %s\nusage: thaw_fault_proxy --upstream "
               "PORT [--delay-ms N] [--fault reset|truncate|corrupt|stall] "
               "[--fault-after BYTES] [--fault-first N | --fault-rate P] "
               "[--seed S]\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return Usage(("missing value for " + arg).c_str());
    const char* value = argv[++i];
    if (arg == "--upstream") {
      config.upstream = std::atoi(value);
    } else if (arg == "--delay-ms") {
      config.delay_ms = std::atof(value);
    } else if (arg == "--fault-after") {
      config.fault_after = std::strtoull(value, nullptr, 10);
    } else if (arg == "--fault-first") {
      config.fault_first = std::atol(value);
    } else if (arg == "--fault-rate") {
      config.fault_rate = std::atof(value);
    } else if (arg == "--seed") {
      config.seed = std::strtoull(value, nullptr, 10);
    } else if (arg == "--fault") {
      const std::string kind = value;
      config.fault = kind == "reset"      ? Fault::kReset
                     : kind == "truncate" ? Fault::kTruncate
                     : kind == "corrupt"  ? Fault::kCorrupt
                     : kind == "stall"    ? Fault::kStall
                                          : Fault::kNone;
      if (config.fault == Fault::kNone && kind != "none") {
        return Usage(("unknown fault " + kind).c_str());
      }
    } else {
      return Usage(("unknown option " + arg).c_str());
    }
  }
  if (config.upstream <= 0) return Usage("--upstream PORT is required");
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener, 128) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::perror("thaw_fault_proxy: listen");
    return 1;
  }
  std::printf("%d\n", ntohs(addr.sin_port));
  std::fflush(stdout);
  std::mt19937_64 random(config.seed);
  long accepted = 0;
  while (true) {
    int client = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      if (errno == EINTR) continue;
      std::perror("thaw_fault_proxy: accept");
      return 1;
    }
    const bool faulty =
        config.fault != Fault::kNone &&
        (config.fault_first >= 0 ? accepted < config.fault_first
                                 : std::uniform_real_distribution<double>(
                                       0, 1)(random) < config.fault_rate);
    ++accepted;
    std::thread([client, &config, faulty] {
      Serve(client, config, faulty);
    }).detach();
  }
}
