// thaw-faas-load: a closed-loop HTTP load generator for thaw-faas (loopback
// only). N clients, each with one keep-alive connection, invoke one
// function back to back until `requests` are done or `seconds` have passed,
// and the run is summarized as JSON: throughput, latency percentiles, the
// status codes and the start kinds (X-Start) seen.
//
//   thaw-faas-load --url http://127.0.0.1:PORT --function NAME
//                  [--clients N] [--requests N] [--seconds S]
//                  [--payload TEXT]
//
// wrk would do for throughput, but it reports no p99.9 and no per-reply
// headers; this one keeps every latency.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace {

struct Flags {
  std::string url;
  std::string function;
  int clients = 4;
  int64_t requests = 1000;
  double seconds = 60;
  std::string payload = "7919";
};

[[noreturn]] void Usage(const std::string& why) {
  std::fprintf(stderr,
               "thaw-faas-load: %s\nusage: thaw-faas-load --url URL "
               "--function NAME [--clients N] [--requests N] [--seconds S] "
               "[--payload TEXT]\n",
               why.c_str());
  std::exit(2);
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) Usage(arg + " needs a value");
    const std::string value = argv[++i];
    if (arg == "--url") {
      f.url = value;
    } else if (arg == "--function") {
      f.function = value;
    } else if (arg == "--payload") {
      f.payload = value;
    } else if (arg == "--clients") {
      if (!absl::SimpleAtoi(value, &f.clients) || f.clients < 1 ||
          f.clients > 1024) {
        Usage("--clients: expected 1 to 1024");
      }
    } else if (arg == "--requests") {
      if (!absl::SimpleAtoi(value, &f.requests) || f.requests < 1) {
        Usage("--requests: expected a positive number");
      }
    } else if (arg == "--seconds") {
      if (!absl::SimpleAtod(value, &f.seconds) || !(f.seconds > 0)) {
        Usage("--seconds: expected a positive number");
      }
    } else {
      Usage("unknown argument " + arg);
    }
  }
  if (f.url.empty() || f.function.empty()) Usage("--url and --function");
  if (f.url.rfind("http://127.", 0) != 0 &&
      f.url.rfind("http://localhost", 0) != 0) {
    Usage("--url must be a loopback http:// address");
  }
  return f;
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t i = std::min(sorted.size() - 1,
                            static_cast<size_t>(p / 100.0 * sorted.size()));
  return sorted[i];
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  const std::string path = "/functions/" + flags.function + "/invoke";
  std::atomic<int64_t> issued{0};
  std::mutex mutex;
  std::vector<double> latencies_ms;  // of 200 replies
  std::map<std::string, int64_t> statuses, starts;
  const absl::Time begin = absl::Now();
  const absl::Time end = begin + absl::Seconds(flags.seconds);
  std::vector<std::thread> clients;
  for (int c = 0; c < flags.clients; ++c) {
    clients.emplace_back([&] {
      httplib::Client client(flags.url);
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);
      client.set_read_timeout(120, 0);
      std::vector<double> mine;
      std::map<std::string, int64_t> my_statuses, my_starts;
      while (issued.fetch_add(1) < flags.requests && absl::Now() < end) {
        const absl::Time start = absl::Now();
        auto result = client.Post(path, flags.payload, "text/plain");
        const double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
        if (!result) {
          ++my_statuses["connection_error"];
          continue;
        }
        ++my_statuses[std::to_string(result->status)];
        if (result->status == 200) mine.push_back(ms);
        const std::string kind = result->get_header_value("X-Start");
        if (!kind.empty()) ++my_starts[kind];
      }
      std::lock_guard<std::mutex> lock(mutex);
      latencies_ms.insert(latencies_ms.end(), mine.begin(), mine.end());
      for (const auto& [k, v] : my_statuses) statuses[k] += v;
      for (const auto& [k, v] : my_starts) starts[k] += v;
    });
  }
  for (std::thread& t : clients) t.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - begin);
  std::sort(latencies_ms.begin(), latencies_ms.end());
  int64_t total = 0, errors = 0;
  for (const auto& [status, n] : statuses) {
    total += n;
    if (status != "200") errors += n;
  }
  nlohmann::json out{
      {"function", flags.function},
      {"clients", flags.clients},
      {"requests", total},
      {"seconds", seconds},
      {"throughput_rps", total / seconds},
      {"ok", static_cast<int64_t>(latencies_ms.size())},
      {"errors", errors},
      {"statuses", statuses},
      {"starts", starts},
      {"p50_ms", Percentile(latencies_ms, 50)},
      {"p99_ms", Percentile(latencies_ms, 99)},
      {"p999_ms", Percentile(latencies_ms, 99.9)},
      {"max_ms", latencies_ms.empty() ? 0 : latencies_ms.back()},
  };
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
