#include "examples/faas/function_spec.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "thaw/kinds.h"

namespace thaw::faas {
namespace {

using Json = nlohmann::json;

absl::Status Bad(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("deploy: \"", field, "\": ", why));
}

// Reads an integer field in [low, high] if present.
absl::Status ReadInt(const Json& body, const char* field, int64_t low,
                     int64_t high, int64_t& out) {
  if (!body.contains(field)) return absl::OkStatus();
  const Json& v = body[field];
  if (!v.is_number_integer()) return Bad(field, "must be an integer");
  const int64_t value = v.get<int64_t>();
  if (value < low || value > high) {
    return Bad(field, absl::StrCat("must be from ", low, " to ", high, ", not ",
                                   value));
  }
  out = value;
  return absl::OkStatus();
}

absl::Status ReadString(const Json& body, const char* field, std::string& out) {
  if (!body.contains(field)) return absl::OkStatus();
  if (!body[field].is_string()) return Bad(field, "must be a string");
  out = body[field].get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadStrings(const Json& body, const char* field,
                         std::vector<std::string>& out) {
  if (!body.contains(field)) return absl::OkStatus();
  const Json& v = body[field];
  if (!v.is_array()) return Bad(field, "must be an array of strings");
  for (const Json& item : v) {
    if (!item.is_string()) return Bad(field, "must be an array of strings");
    out.push_back(item.get<std::string>());
  }
  return absl::OkStatus();
}

}  // namespace

bool IsValidFunctionName(absl::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

absl::StatusOr<FunctionSpec> ParseFunctionSpec(absl::string_view name,
                                               absl::string_view json) {
  if (!IsValidFunctionName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "function name \"", name, "\": use 1-64 letters, digits, '_' or '-'"));
  }
  Json body = Json::parse(json.begin(), json.end(), nullptr,
                          /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    return absl::InvalidArgumentError("deploy: the body is not valid JSON");
  }
  if (!body.is_object()) {
    return absl::InvalidArgumentError("deploy: the body must be a JSON object");
  }
  static const char* const kFields[] = {"guest",
                                        "handler",
                                        "program",
                                        "args",
                                        "env",
                                        "files",
                                        "memory_mb",
                                        "timeout_ms",
                                        "reserved_concurrency",
                                        "provisioned_concurrency",
                                        "payload_limit",
                                        "isolation",
                                        "backend",
                                        "worker_process"};
  for (const auto& [key, value] : body.items()) {
    bool known = false;
    for (const char* f : kFields) known |= key == f;
    if (!known) return Bad(key, "unknown field");
  }
  FunctionSpec spec;
  spec.name = std::string(name);
  if (absl::Status s = ReadString(body, "guest", spec.guest); !s.ok()) return s;
  if (absl::Status s = ReadString(body, "handler", spec.handler); !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadString(body, "program", spec.program); !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadStrings(body, "args", spec.args); !s.ok()) return s;
  if (absl::Status s = ReadStrings(body, "env", spec.env); !s.ok()) return s;
  if (body.contains("files")) {
    const Json& files = body["files"];
    if (!files.is_object()) {
      return Bad("files", "must be an object of guest path -> host path");
    }
    for (const auto& [guest, host] : files.items()) {
      if (!host.is_string()) return Bad("files", "host paths must be strings");
      spec.files.emplace_back(host.get<std::string>(), guest);
    }
  }
  if (spec.guest.empty() == spec.program.empty()) {
    return Bad("guest",
               "give exactly one of \"guest\" (a function guest) "
               "and \"program\" (a Linux program)");
  }
  if (!spec.guest.empty() && spec.handler.empty()) {
    return Bad("handler", "a function guest needs the function to call");
  }
  if (!spec.program.empty() && spec.handler.empty()) spec.handler = "handler";
  int64_t memory = spec.memory_mb, timeout_ms = 3000,
          reserved = spec.reserved_concurrency,
          provisioned = spec.provisioned_concurrency,
          payload = spec.payload_limit;
  if (absl::Status s = ReadInt(body, "memory_mb", 4, 65536, memory); !s.ok()) {
    return s;
  }
  if (memory % 2 != 0) return Bad("memory_mb", "must be a multiple of 2");
  if (absl::Status s = ReadInt(body, "timeout_ms", 1, 900000, timeout_ms);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadInt(body, "reserved_concurrency", 1, 1000, reserved);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          ReadInt(body, "provisioned_concurrency", 0, reserved, provisioned);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadInt(body, "payload_limit", 1, 64 << 20, payload);
      !s.ok()) {
    return s;
  }
  spec.memory_mb = memory;
  spec.timeout = absl::Milliseconds(timeout_ms);
  spec.reserved_concurrency = static_cast<int>(reserved);
  spec.provisioned_concurrency = static_cast<int>(provisioned);
  spec.payload_limit = payload;
  std::string isolation(IsolationName(spec.isolation));
  if (absl::Status s = ReadString(body, "isolation", isolation); !s.ok()) {
    return s;
  }
  auto parsed_isolation = ParseIsolation(isolation);
  if (!parsed_isolation.ok()) {
    return Bad("isolation", parsed_isolation.status().message());
  }
  spec.isolation = *parsed_isolation;
  std::string backend(BackendName(spec.backend));
  if (absl::Status s = ReadString(body, "backend", backend); !s.ok()) return s;
  auto parsed_backend = ParseBackendName(backend);
  if (!parsed_backend.ok()) {
    return Bad("backend", parsed_backend.status().message());
  }
  spec.backend = *parsed_backend;
  if (body.contains("worker_process")) {
    if (!body["worker_process"].is_boolean()) {
      return Bad("worker_process", "must be true or false");
    }
    spec.worker_process = body["worker_process"].get<bool>();
  }
  if (spec.worker_process && spec.backend == BackendKind::kKvm) {
    return Bad("worker_process",
               "is for the emulated backend (a KVM guest is isolated by the "
               "hardware); use \"backend\": \"emulated\" or \"auto\"");
  }
  return spec;
}

std::string FunctionSpecJson(const FunctionSpec& spec) {
  Json body;
  if (!spec.guest.empty()) body["guest"] = spec.guest;
  if (!spec.program.empty()) {
    body["program"] = spec.program;
    body["args"] = spec.args;
    body["env"] = spec.env;
    Json files = Json::object();
    for (const auto& [host, guest] : spec.files) files[guest] = host;
    body["files"] = files;
  }
  body["handler"] = spec.handler;
  body["memory_mb"] = spec.memory_mb;
  body["timeout_ms"] = absl::ToInt64Milliseconds(spec.timeout);
  body["reserved_concurrency"] = spec.reserved_concurrency;
  body["provisioned_concurrency"] = spec.provisioned_concurrency;
  body["payload_limit"] = spec.payload_limit;
  body["isolation"] = std::string(IsolationName(spec.isolation));
  body["backend"] = std::string(BackendName(spec.backend));
  body["worker_process"] = spec.worker_process;
  return body.dump(2);
}

}  // namespace thaw::faas
