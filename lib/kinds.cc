// The names of BackendKind and RestoreEngine values (thaw/kinds.h).
#include "thaw/kinds.h"

#include "absl/strings/str_cat.h"

namespace thaw {

absl::string_view BackendName(BackendKind kind) {
  switch (kind) {
    case BackendKind::kAuto:
      return "auto";
    case BackendKind::kKvm:
      return "kvm";
    case BackendKind::kEmulated:
      return "emulated";
  }
  return "unknown";
}

absl::StatusOr<BackendKind> ParseBackendName(absl::string_view name) {
  for (BackendKind kind :
       {BackendKind::kAuto, BackendKind::kKvm, BackendKind::kEmulated}) {
    if (name == BackendName(kind)) return kind;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown backend \"", name, "\" (expected auto, kvm or emulated)"));
}

absl::string_view RestoreEngineName(RestoreEngine engine) {
  switch (engine) {
    case RestoreEngine::kEager:
      return "eager";
    case RestoreEngine::kLazy:
      return "lazy";
    case RestoreEngine::kLazyPrefetch:
      return "prefetch";
    case RestoreEngine::kSharedBase:
      return "shared";
  }
  return "unknown";
}

absl::StatusOr<RestoreEngine> ParseRestoreEngine(absl::string_view name) {
  for (RestoreEngine engine : kRestoreEngines) {
    if (name == RestoreEngineName(engine)) return engine;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown restore engine \"", name,
                   "\" (expected eager, lazy, prefetch or shared)"));
}

}  // namespace thaw
