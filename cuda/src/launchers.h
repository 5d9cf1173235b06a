// Host API of the CUDA kernels (cuda/src/*.cu, a static library): plain C++ with host pointers in
// and out, so that the pybind11 bindings (cuda/bindings/, compiled by the host compiler) never see
// CUDA. Errors are thrown as std::runtime_error / std::invalid_argument.
#pragma once
#include <cstdint>

#include "reluflow/dists.h"

namespace reluflow::cuda {

// Number of CUDA devices visible (0 when there is no driver or GPU).
int device_count();

// Philox uniforms (n, d) of samples first..first+n-1 of (seed, stream, step) into host memory out.
void philox_uniforms(uint64_t seed, uint32_t stream, uint32_t step, uint32_t first, int64_t n, int d, double* out);

// Monte-Carlo nodes (n, d) of step into host memory out, bitwise mc_nodes_cpu's. `dist` views host
// arrays (the box's low/high, or the density's breaks/anti/cum), which are copied to the device.
// sizes: the lengths of those arrays, in that order (2 for the box, 3 for the density).
void mc_nodes(uint64_t seed, uint32_t step, int64_t n, const InputDist& dist, const int64_t* sizes, double* out);

}  // namespace reluflow::cuda
