// The host harness of the GD update kernel of cuda/src/gd_loop.cu: its grid (one block of gd::kThreads
// threads per network) run sequentially on the host with the same per-thread functions
// (reluflow/gd_step.h), the barriers' phases in order. Test-only (bound as _core._harness_gd_step).
#pragma once
#include "reluflow/gd_step.h"

namespace reluflow {

// One step for a.K networks, host memory (see gd::StepArgs).
template <class T>
void gd_step_host(const gd::StepArgs<T>& a);

}  // namespace reluflow
