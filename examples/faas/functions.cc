#include "examples/faas/functions.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "examples/faas/durable_file.h"

namespace thaw::faas {
PoolPolicy PolicyFor(const FunctionSpec& spec) {
  PoolPolicy policy;
  policy.max_concurrency = spec.reserved_concurrency;
  policy.provisioned = spec.provisioned_concurrency;
  policy.isolation = spec.isolation;
  policy.idle_reclaim = absl::Minutes(5);
  policy.restore.backend = spec.backend;
  policy.restore.call_timeout = spec.timeout;
  policy.restore.worker_process = spec.worker_process;
  policy.restore.engine = spec.isolation == Isolation::kResetPerRequest
                              ? RestoreEngine::kSharedBase
                              : RestoreEngine::kLazyPrefetch;
  return policy;
}

GuestRecipe RecipeFor(const FunctionSpec& spec) {
  GuestRecipe recipe;
  recipe.config.backend = spec.backend;
  recipe.config.memory_size = spec.memory_mb << 20;
  recipe.config.worker_process = spec.worker_process;
  // The init runs under the same limit as a call.
  recipe.config.call_timeout = std::max(spec.timeout, absl::Seconds(30));
  recipe.config.input_buffer_size =
      std::max<uint64_t>(spec.payload_limit, 4096);
  if (spec.program.empty()) {
    recipe.path = spec.guest;
  } else {
    recipe.config.guest_kind = GuestKind::kLinuxProgram;
    recipe.path = spec.program;
    recipe.program.args = spec.args;
    recipe.program.env = spec.env;
    for (const auto& [host, guest] : spec.files) {
      recipe.program.files.push_back({host, guest});
    }
  }
  return recipe;
}

Functions::Functions(std::string state_dir, LogSink& log, Metrics& metrics)
    : state_dir_(std::move(state_dir)), log_(log), metrics_(metrics) {
  std::filesystem::create_directories(state_dir_ + "/functions");
  std::filesystem::create_directories(state_dir_ + "/snapshots");
}

std::string Functions::SpecPath(const std::string& name) const {
  return absl::StrCat(state_dir_, "/functions/", name, ".json");
}

std::string Functions::SnapshotPath(const std::string& name) const {
  return absl::StrCat(state_dir_, "/snapshots/", name, ".thaw");
}

absl::StatusOr<std::shared_ptr<const Function>> Functions::Deploy(
    FunctionSpec spec) {
  absl::Status last;
  for (int attempt = 1; attempt <= kInitAttempts; ++attempt) {
    const absl::Time start = absl::Now();
    auto pool =
        Pool::Boot(RecipeFor(spec), SnapshotPath(spec.name), PolicyFor(spec));
    const absl::Duration took = absl::Now() - start;
    metrics_.Init(spec.name, pool.ok(), took);
    if (!pool.ok()) {
      last = pool.status();
      log_.Write(
          InitReportLine(spec.name, took, "error",
                         absl::StrCat("Runtime.InitError (attempt ", attempt,
                                      " of ", kInitAttempts, ")")));
      continue;
    }
    log_.Write(InitReportLine(spec.name, took, "success"));
    if (absl::Status s =
            WriteFileDurably(SpecPath(spec.name), FunctionSpecJson(spec));
        !s.ok()) {
      return s;
    }
    auto function = std::make_shared<Function>();
    function->spec = std::move(spec);
    function->pool = *std::move(pool);
    function->init_duration = took;
    std::lock_guard<std::mutex> lock(mutex_);
    functions_[function->spec.name] = function;
    return std::shared_ptr<const Function>(function);
  }
  return absl::Status(last.code(),
                      absl::StrCat("init failed ", kInitAttempts,
                                   " times; the last time: ", last.message()));
}

std::shared_ptr<const Function> Functions::Find(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = functions_.find(name);
  return it == functions_.end() ? nullptr : it->second;
}

bool Functions::Remove(const std::string& name) {
  std::shared_ptr<const Function> gone;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = functions_.find(name);
    if (it == functions_.end()) return false;
    gone = std::move(it->second);
    functions_.erase(it);
  }
  std::filesystem::remove(SpecPath(name));
  std::filesystem::remove(SnapshotPath(name));
  return true;
}

std::vector<std::shared_ptr<const Function>> Functions::All() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::shared_ptr<const Function>> all;
  for (const auto& [name, f] : functions_) all.push_back(f);
  return all;
}

absl::StatusOr<std::shared_ptr<const Function>> Functions::FromSnapshot(
    const FunctionSpec& spec) {
  if (spec.isolation == Isolation::kBootPerRequest) {
    return absl::FailedPreconditionError("boots per request");
  }
  auto snapshot = Snapshot::Open(SnapshotPath(spec.name));
  if (!snapshot.ok()) return snapshot.status();
  auto pool = Pool::Create(*std::move(snapshot), PolicyFor(spec));
  if (!pool.ok()) return pool.status();
  auto function = std::make_shared<Function>();
  function->spec = spec;
  function->pool = *std::move(pool);
  std::lock_guard<std::mutex> lock(mutex_);
  functions_[spec.name] = function;
  return std::shared_ptr<const Function>(function);
}

std::vector<std::string> Functions::LoadDeployed() {
  std::vector<std::string> failed;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator(state_dir_ + "/functions", error)) {
    if (entry.path().extension() != ".json") continue;
    const std::string name = entry.path().stem().string();
    auto text = ReadWholeFile(entry.path().string());
    if (!text.ok()) {
      failed.push_back(absl::StrCat(name, ": ", text.status().message()));
      continue;
    }
    auto spec = ParseFunctionSpec(name, *text);
    if (!spec.ok()) {
      failed.push_back(absl::StrCat(name, ": ", spec.status().message()));
      continue;
    }
    if (FromSnapshot(*spec).ok()) continue;
    if (auto deployed = Deploy(*spec); !deployed.ok()) {
      failed.push_back(absl::StrCat(name, ": ", deployed.status().message()));
    }
  }
  return failed;
}

}  // namespace thaw::faas
