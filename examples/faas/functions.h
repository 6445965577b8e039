// The deployed functions: each a spec and a thaw::Pool made from its
// snapshot. A deploy boots the guest, runs its init and snapshots it
// (SnapStart), retrying a failed init up to three times; specs and
// snapshots live under the state directory, so a restarted server serves
// its functions again without booting them.
#ifndef THAW_EXAMPLES_FAAS_FUNCTIONS_H_
#define THAW_EXAMPLES_FAAS_FUNCTIONS_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "examples/faas/function_spec.h"
#include "examples/faas/lambda_log.h"
#include "examples/faas/metrics.h"
#include "thaw/pool.h"

namespace thaw::faas {

struct Function {
  FunctionSpec spec;
  std::unique_ptr<Pool> pool;
  absl::Duration init_duration;  // boot + init + snapshot of the deploy
};

// Attempts at an init before a deploy gives up.
constexpr int kInitAttempts = 3;

class Functions {
 public:
  Functions(std::string state_dir, LogSink& log, Metrics& metrics);

  // Deploys `spec`, replacing a function of the same name once the new one
  // is ready. A failed init is tried kInitAttempts times; the last error
  // (with the guest's console) is returned.
  absl::StatusOr<std::shared_ptr<const Function>> Deploy(FunctionSpec spec);
  // The function, or nullptr.
  std::shared_ptr<const Function> Find(const std::string& name) const;
  bool Remove(const std::string& name);
  std::vector<std::shared_ptr<const Function>> All() const;

  // Serves the functions deployed before a restart, from their snapshots
  // (deploying again where a snapshot is gone or damaged). Returns the
  // names that could not be brought back, with why.
  std::vector<std::string> LoadDeployed();

 private:
  std::string SpecPath(const std::string& name) const;
  std::string SnapshotPath(const std::string& name) const;
  absl::StatusOr<std::shared_ptr<const Function>> FromSnapshot(
      const FunctionSpec& spec);

  const std::string state_dir_;
  LogSink& log_;
  Metrics& metrics_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<const Function>> functions_;
};

// The pool policy and boot recipe a spec stands for.
PoolPolicy PolicyFor(const FunctionSpec& spec);
GuestRecipe RecipeFor(const FunctionSpec& spec);

}  // namespace thaw::faas

#endif  // THAW_EXAMPLES_FAAS_FUNCTIONS_H_
