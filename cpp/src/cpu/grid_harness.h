// The host harness of the CUDA dense kernels (part 5 of issue 12): the grid of cuda/src/risk_grad.cu
// run sequentially on the host, block after block, thread after thread, the barriers' phases in order,
// with the same per-thread functions (reluflow/risk_grad_grid.h). Test-only: it proves the indexing and
// the fixed reduction order without a GPU (bound as _core._harness_risk_grad).
#pragma once
#include <cstdint>

#include "reluflow/layout.h"
#include "reluflow/spec.h"

namespace reluflow {

enum class GridPath { Auto, Shallow, Deep };

// risk (K,) and, when grad != nullptr, grad (K, P), float64, host memory. theta (K, P) float32 (f32) or
// float64; x (N, d), w (N,), y (N, out) float64, or y == nullptr and the target evaluated per node: the
// shallow teacher of spec.teacher when it has one, else spec.target (affine or piecewise polynomial).
// Shallow needs grid::shallow_supported(lay).
void risk_and_grad_grid_host(const Layout& lay, int64_t K, int64_t N, bool f32, const void* theta, const double* x,
                             const double* w, const double* y, const ProblemSpec& spec, GridPath path,
                             double* risk, double* grad);

// The ragged deep grid (risk_grad_grid.h, "ragged nodes"; cuda/src/risk_grad.cu risk_and_grad_ragged) run
// sequentially: network k of theta (K, P) over rows node_offset[k] .. node_offset[k + 1] - 1 of x (N, d),
// w (N,), y (N, out) (y given: the kink partition's nodes come with their target values) and of zero
// (N, hidden) flags or nullptr.
void risk_and_grad_ragged_host(const Layout& lay, int64_t K, int64_t N, bool f32, const void* theta,
                               const double* x, const double* w, const double* y, const int64_t* node_offset,
                               const uint8_t* zero, double* risk, double* grad);

}  // namespace reluflow
