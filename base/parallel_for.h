// ParallelFor: a loop whose iterations run on several threads, for work
// that is the same per item and independent (compressing a snapshot's
// chunks). Threads are started per call: callers hand it batches large
// enough that starting two or three threads does not show.
#ifndef THAW_BASE_PARALLEL_FOR_H_
#define THAW_BASE_PARALLEL_FOR_H_

#include <cstdint>
#include <functional>

namespace thaw {

// The cores this process may run on (its CPU affinity), at least 1.
unsigned UsableCores();

// Runs body(i, worker) once for each i in [0, count) on up to `threads`
// threads, the calling one among them; `worker` (< threads) names the
// thread, for per-thread scratch space. Returns when every call has.
void ParallelFor(uint64_t count, unsigned threads,
                 const std::function<void(uint64_t i, unsigned worker)>& body);

}  // namespace thaw

#endif  // THAW_BASE_PARALLEL_FOR_H_
