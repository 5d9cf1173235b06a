// The host harness of the CUDA point sweep (cuda/src/sweep_points.cu): its grid run sequentially on the
// host, stage after stage, block after block, thread after thread, with the same per-thread functions
// (reluflow/sweep_grid.h) and std::stable_sort where the device runs CUB's radix sort (the same unique
// stable order). Test-only: it proves the indexing and the order of every sum without a GPU (bound as
// _core._harness_point_sweep).
#pragma once
#include <cstdint>

#include "reluflow/sweep_grid.h"

namespace reluflow {

// risk (K,) and, when grad != nullptr, grad (K, P) float64 of K shallow [1, H, out] nets (out <= 3) theta
// (K, P) float64 at nodes x (N,) with weights w (N,) and target values y (N, out), host memory. The
// networks are launched in groups of `group` (the device's memory-bound groups; the results do not
// depend on it).
void point_sweep_grid_host(const double* theta, int64_t K, int64_t H, int out, int64_t N, const double* x,
                           const double* w, const double* y, int64_t group, double* risk, double* grad);

// The exact quadrature sweep's grid (reluflow/sweep_grid.h, "the exact quadrature sweep") run on the host:
// risk (K,), grad (K, P) (or null) of K nets [1, H, out] theta (K, P) float64 under ex (host pointers).
void exact_sweep_grid_host(const double* theta, int64_t K, int64_t H, int out, const sweep_grid::ExactArgs& ex,
                           int64_t group, double* risk, double* grad);

}  // namespace reluflow
