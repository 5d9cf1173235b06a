// The host harnesses of the update kernels of cuda/src/gd_loop.cu: their grids (one block of
// gd::kThreads threads per network; one thread per entry for the stage points) run sequentially on the
// host with the same per-thread functions (reluflow/gd_step.h, reluflow/rk_step.h), the barriers'
// phases in order. Test-only (bound as _core._harness_gd_step, _harness_rk_stage, _harness_rk_update).
#pragma once
#include "reluflow/gd_step.h"
#include "reluflow/rk_step.h"

namespace reluflow {

// One step for a.K networks, host memory (see gd::StepArgs).
template <class T>
void gd_step_host(const gd::StepArgs<T>& a);

// Stage s (1..stages-1) of a Heun / RK4 step: a.stage_theta from a.theta and a.k[s - 1].
template <class T>
void rk_stage_host(const rk::RkArgs<T>& a, int s);

// The update of a Heun / RK4 step (the networks still active), host memory (see rk::RkArgs).
template <class T>
void rk_update_host(const rk::RkArgs<T>& a);

}  // namespace reluflow

#include "reluflow/dopri5_step.h"
#include "reluflow/running_rows.h"

namespace reluflow {

// The dopri5 loop's kernels (cuda/src/dopri5_loop.cu) on the host, phase for phase (see dp::Args):
// init after the evaluation at theta0, begin of iteration it, stage st (1..6), finish, and (normalized,
// after the evaluation at the stage rows) conclude.
template <class T>
void dp_init_host(const dp::Args<T>& a);
template <class T>
void dp_begin_host(const dp::Args<T>& a, int64_t it);
template <class T>
void dp_stage_host(const dp::Args<T>& a, int st);
template <class T>
void dp_finish_host(const dp::Args<T>& a);
template <class T>
void dp_conclude_host(const dp::Args<T>& a);
// The device loops' compaction (reluflow/running_rows.h, every entry in turn): rows evaluated[i] of rows
// (K, P) into compact (n, P), and back.
template <class T>
void rows_gather_host(const int64_t* evaluated, int64_t n, int64_t P, const T* rows, T* compact);
void rows_scatter_host(const int64_t* evaluated, int64_t n, int64_t P, const double* compact, double* rows);

}  // namespace reluflow

#include "reluflow/normalized_step.h"

namespace reluflow {

// The normalized flow's kernels (cuda/src/gd_loop.cu) on the host: the tangent projection of grad
// (K, P) at theta (one entry per (network, hidden neuron)), and the retracting update (see nm::UpdateArgs).
template <class T>
void nm_project_host(const Layout& lay, int64_t K, const T* theta, double* grad);
template <class T>
void nm_update_host(const nm::UpdateArgs<T>& a);

}  // namespace reluflow
