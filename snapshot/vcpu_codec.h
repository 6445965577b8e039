// Converts the backend-neutral vCPU state to and from its manifest form
// (proto::VcpuState in snapshot/manifest.proto).
#ifndef THAW_SNAPSHOT_VCPU_CODEC_H_
#define THAW_SNAPSHOT_VCPU_CODEC_H_

#include "absl/status/status.h"
#include "base/vcpu_state.h"
#include "snapshot/manifest.pb.h"

namespace thaw::snapshot {

proto::VcpuState EncodeVcpuState(const VcpuState& state);
// The input must have passed SnapshotFile's checks (16 GPRs, full FPU).
VcpuState DecodeVcpuState(const proto::VcpuState& state);
// FailedPrecondition if `state` carries an MSR this build cannot restore.
absl::Status CheckMsrs(const proto::VcpuState& state);

}  // namespace thaw::snapshot

#endif  // THAW_SNAPSHOT_VCPU_CODEC_H_
