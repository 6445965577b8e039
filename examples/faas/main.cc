// thaw-faas: a Lambda-style function service on loopback, composed from
// thaw::Pool. Deploy a guest (PUT /functions/NAME with a JSON spec), invoke
// it (POST /functions/NAME/invoke, synchronously or with
// X-Invocation-Type: Event through an on-disk queue), read /metrics.
//
//   thaw-faas --state DIR [--listen 127.0.0.1:8080] [--log FILE]
//             [--async-workers N] [--async-backoff-ms MS]
//
// SIGINT / SIGTERM stop it gracefully: no new connections, calls in flight
// finish (or time out), queued events stay on disk for the next start.
#include <httplib.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "examples/faas/event_queue.h"
#include "examples/faas/function_spec.h"
#include "examples/faas/functions.h"
#include "examples/faas/invoker.h"
#include "examples/faas/lambda_log.h"
#include "examples/faas/metrics.h"

namespace thaw::faas {
namespace {

using Json = nlohmann::json;

struct Flags {
  std::string state;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string log;
  EventQueueOptions async;
};

[[noreturn]] void Usage(const std::string& why) {
  std::fprintf(stderr,
               "thaw-faas: %s\nusage: thaw-faas --state DIR [--listen "
               "HOST:PORT] [--log FILE] [--async-workers N] "
               "[--async-backoff-ms MS]\n",
               why.c_str());
  std::exit(2);
}

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(arg + " needs a value");
      return argv[++i];
    };
    int number = 0;
    if (arg == "--state") {
      flags.state = value();
    } else if (arg == "--log") {
      flags.log = value();
    } else if (arg == "--listen") {
      std::pair<std::string, std::string> hp =
          absl::StrSplit(value(), absl::MaxSplits(':', 1));
      if (!absl::SimpleAtoi(hp.second, &number) || number < 0 ||
          number > 65535) {
        Usage("--listen: expected HOST:PORT with a port from 0 to 65535");
      }
      flags.host = hp.first;
      flags.port = number;
    } else if (arg == "--async-workers") {
      if (!absl::SimpleAtoi(value(), &number) || number < 1 || number > 64) {
        Usage("--async-workers: expected 1 to 64");
      }
      flags.async.workers = number;
    } else if (arg == "--async-backoff-ms") {
      if (!absl::SimpleAtoi(value(), &number) || number < 1) {
        Usage("--async-backoff-ms: expected a positive number");
      }
      flags.async.backoff = absl::Milliseconds(number);
    } else {
      Usage("unknown argument " + arg);
    }
  }
  if (flags.state.empty()) Usage("--state is required");
  return flags;
}

void Send(httplib::Response& res, const HttpReply& reply) {
  res.status = reply.status;
  for (const auto& [name, value] : reply.headers) res.set_header(name, value);
  res.set_content(reply.body, reply.content_type);
}

Json FunctionJson(const Function& f) {
  const PoolStats s = f.pool->stats();
  Json spec = Json::parse(FunctionSpecJson(f.spec));
  spec["name"] = f.spec.name;
  spec["init_ms"] = absl::ToDoubleMilliseconds(f.init_duration);
  spec["pool"] = {
      {"idle", s.idle}, {"leased", s.leased}, {"starting", s.starting}};
  return spec;
}

int Serve(const Flags& flags) {
  // SIGINT and SIGTERM are taken by one thread with sigwait; every thread
  // made from here on inherits the block.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client gone mid-reply is not our death

  LogSink log(flags.log);
  Metrics metrics;
  Functions functions(flags.state, log, metrics);
  for (const std::string& failure : functions.LoadDeployed()) {
    log.Write(absl::StrCat("thaw-faas: could not serve ", failure));
  }
  Invoker invoker(functions, log, metrics);
  EventQueue queue(flags.state + "/events", invoker, metrics, log, flags.async);
  queue.Start();

  httplib::Server server;
  // One thread per open connection, up to this many at once.
  server.new_task_queue = [] { return new httplib::ThreadPool(128); };
  server.set_payload_max_length(64ull << 20);
  server.set_read_timeout(30, 0);
  server.set_tcp_nodelay(true);  // replies are small: no Nagle delay

  server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  server.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    std::vector<std::pair<std::string, PoolStats>> pools;
    for (const auto& f : functions.All()) {
      pools.emplace_back(f->spec.name, f->pool->stats());
    }
    res.set_content(metrics.Text(pools), "text/plain; version=0.0.4");
  });
  server.Get("/functions",
             [&](const httplib::Request&, httplib::Response& res) {
               Json list = Json::array();
               for (const auto& f : functions.All())
                 list.push_back(FunctionJson(*f));
               res.set_content(list.dump(2), "application/json");
             });
  auto deploy = [&](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    auto spec = ParseFunctionSpec(name, req.body);
    if (!spec.ok()) {
      return Send(res, ErrorReply(400, "InvalidParameterValueException",
                                  std::string(spec.status().message())));
    }
    auto function = functions.Deploy(*std::move(spec));
    if (!function.ok()) {
      return Send(res, ErrorReply(502, "Runtime.InitError",
                                  std::string(function.status().message()),
                                  {{"attempts", kInitAttempts}}));
    }
    res.status = 201;
    res.set_content(FunctionJson(**function).dump(2), "application/json");
  };
  server.Put(R"(/functions/([^/]+))", deploy);
  server.Post(R"(/functions/([^/]+))", deploy);
  server.Delete(R"(/functions/([^/]+))", [&](const httplib::Request& req,
                                             httplib::Response& res) {
    const std::string name = req.matches[1];
    if (!functions.Remove(name)) {
      return Send(res, ErrorReply(404, "ResourceNotFoundException",
                                  "function \"" + name + "\" is not deployed"));
    }
    res.status = 204;
  });
  server.Post(R"(/functions/([^/]+)/invoke)", [&](const httplib::Request& req,
                                                  httplib::Response& res) {
    const std::string name = req.matches[1];
    const std::string type = req.get_header_value("X-Invocation-Type");
    if (type == "Event") {
      if (!functions.Find(name)) {
        return Send(res,
                    ErrorReply(404, "ResourceNotFoundException",
                               "function \"" + name + "\" is not deployed"));
      }
      auto id = queue.Enqueue(name, req.body);
      if (!id.ok()) {
        return Send(res, ErrorReply(503, "ServiceException",
                                    std::string(id.status().message())));
      }
      res.status = 202;
      res.set_header("X-Request-Id", *id);
      res.set_content(Json{{"requestId", *id}}.dump(), "application/json");
      return;
    }
    if (!type.empty() && type != "RequestResponse") {
      return Send(res, ErrorReply(400, "InvalidParameterValueException",
                                  "X-Invocation-Type must be "
                                  "RequestResponse or Event, not \"" +
                                      type + "\""));
    }
    Send(res, invoker.Invoke(name, req.body, NewRequestId()));
  });
  server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    const int status = res.status;
    res.set_content(
        Json{{"errorType", status == 404   ? "ResourceNotFoundException"
                           : status == 413 ? "RequestEntityTooLargeException"
                                           : "BadRequest"},
             {"errorMessage", status == 404   ? "no such route"
                              : status == 413 ? "request body too large"
                                              : "malformed request"}}
            .dump(),
        "application/json");
  });

  // Port 0: any free port (the "listening on" line says which).
  const int port = flags.port == 0 ? server.bind_to_any_port(flags.host)
                   : server.bind_to_port(flags.host, flags.port) ? flags.port
                                                                 : -1;
  if (port <= 0) {
    std::fprintf(stderr, "thaw-faas: cannot listen on %s:%d\n",
                 flags.host.c_str(), flags.port);
    return 1;
  }
  std::thread stopper([&] {
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    log.Write(absl::StrCat("thaw-faas: signal ", signal_number,
                           ": finishing the calls in flight"));
    server.stop();
  });
  log.Write(absl::StrCat("thaw-faas: listening on http://", flags.host, ":",
                         port, " (state in ", flags.state, ")"));
  server.listen_after_bind();  // returns once stop() ran and calls finished
  queue.Stop();
  log.Write(absl::StrCat("thaw-faas: stopped; ", queue.pending(),
                         " queued events kept on disk"));
  if (stopper.joinable()) {
    // The stopper has run (listen returns only after stop()).
    stopper.join();
  }
  return 0;
}

}  // namespace
}  // namespace thaw::faas

int main(int argc, char** argv) {
  return thaw::faas::Serve(thaw::faas::ParseFlags(argc, argv));
}
