// Host API of the CUDA kernels (cuda/src/*.cu, a static library): plain C++ with host pointers in
// and out, so that the pybind11 bindings (cuda/bindings/, compiled by the host compiler) never see
// CUDA. Errors are thrown as std::runtime_error / std::invalid_argument.
#pragma once
#include <cstdint>

#include "reluflow/dists.h"
#include "reluflow/layout.h"
#include "reluflow/spec.h"
#include "reluflow/targets.h"

namespace reluflow::cuda {

// Number of CUDA devices visible (0 when there is no driver or GPU).
int device_count();

// Philox uniforms (n, d) of samples first..first+n-1 of (seed, stream, step) into host memory out.
void philox_uniforms(uint64_t seed, uint32_t stream, uint32_t step, uint32_t first, int64_t n, int d, double* out);

// Monte-Carlo nodes (n, d) of step into host memory out, bitwise mc_nodes_cpu's. `dist` views host
// arrays (the box's low/high, the density's breaks/anti/cum, or the Gaussian's mean/chol), which are
// copied to the device. sizes: the lengths of those arrays, in that order (2 for the box and the
// Gaussian, 3 for the density).
void mc_nodes(uint64_t seed, uint32_t step, int64_t n, const InputDist& dist, const int64_t* sizes, double* out);

// ---- the dense risk and gradient (risk_grad.cu) -----------------------------------------------
// Unlike the samplers above, these take and return DEVICE memory (the caller's CuPy arrays) and run
// asynchronously on the caller's stream (a cudaStream_t as an integer; 0: the legacy default stream).

// The problem: device pointers, C-contiguous. theta (K, P) float32 (f32) or float64; x (N, d), w (N,),
// y (N, out) float64 (the target values at the nodes, computed by the caller), or y == nullptr and the
// target evaluated per node: `teacher` when its theta is set (a shallow teacher, net.h), else `target`
// (affine or piecewise polynomial, targets.h); out <= 16. Both view HOST arrays, copied to the device
// here.
struct DenseDevice {
  Layout lay{};
  int64_t K = 0, N = 0;
  bool f32 = false;
  const void* theta = nullptr;
  const double* x = nullptr;
  const double* w = nullptr;
  const double* y = nullptr;
  TargetSpec target{};
  TeacherSpec teacher{};
};

enum class DensePath { Auto, Shallow, Deep };

// Auto: Shallow for [d, H, out] with d <= 8 and out <= 3, else Deep; std::invalid_argument when
// Shallow is asked for other widths.
DensePath resolve_dense_path(const Layout& lay, DensePath path);

// risk (K,) and, unless grad == nullptr, grad (K, P): float64 device arrays, every entry written.
// Deterministic: the same bits on every run and for any K (reluflow/risk_grad_grid.h).
void risk_and_grad_dense(const DenseDevice& p, DensePath path, double* risk, double* grad, uintptr_t stream);

}  // namespace reluflow::cuda
