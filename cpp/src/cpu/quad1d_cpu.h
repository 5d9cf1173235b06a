// Exact 1-D quadrature of deep ReLU nets on the kink partition, the whole per-network pipeline in C++
// (SPEC §3): the kinks of every hidden neuron layer by layer, merged with the fixed breaks (target's
// and density's), Gauss–Legendre on every piece, weights times density, target values, then the fused
// dense kernel (risk_grad_cpu.h) on those nodes. python/reluflow/quadrature.py is the reference.
//
// Parallel structure (deterministic): OpenMP over networks, each network computed start to finish by
// one thread (its partition, its nodes, then risk_and_grad_cpu with K = 1, whose chunking does not
// depend on the thread count), so the results do not depend on the number of threads. With few
// networks the loop over networks runs serially and the dense kernel parallelizes over its chunks
// instead: the same values, in the same order.
#pragma once
#include <cstdint>
#include <vector>

#include "reluflow/dists.h"
#include "reluflow/layout.h"
#include "reluflow/spec.h"
#include "reluflow/targets.h"

namespace reluflow {

// The quadrature rule of the partition path; the problem (support, target or teacher, input density)
// is the ProblemSpec passed beside it.
struct Quad1DSpec {
  const double* fixed_breaks = nullptr;   // target and density breaks (any order; those outside
  int64_t n_fixed = 0;                    // [lo, hi] are ignored), finite
  int order = 2;                          // Gauss–Legendre points per piece
};

// Sorted breakpoints [lo, k_1, ..., k_m, hi] of one 1-D network theta (P values, float64) on [lo, hi]
// (either end may be infinite), as quadrature.kink_partition: the distinct kinks of every hidden
// neuron strictly inside (lo, hi).
void kink_partition_1d(const Layout& lay, const double* theta, double lo, double hi, std::vector<double>& out);

// The quadrature nodes of one network: x (N,), weights w (N,) (density included), target values
// y (N, out), as quadrature._nodes_1d with the target evaluated at them. prob: its lay, lo/hi,
// target (or teacher), input (1-D) and density pieces.
void quad1d_nodes(const ProblemSpec& prob, const double* theta, const Quad1DSpec& s, std::vector<double>& x,
                  std::vector<double>& w, std::vector<double>& y);

// The nodes of K networks theta (K, P) (float64) side by side, network k's at rows offset[k] ..
// offset[k + 1] (what the device's ragged dense kernel takes: risk_grad_grid.h, "ragged nodes"): x, w, y as
// quad1d_nodes, and the flags of the hidden pre-activations that vanish identically around each node
// (N, hidden), empty when no network has such a piece. A network with a NaN or inf parameter gets no
// nodes. OpenMP over networks; the GIL must be released by the caller.
struct Quad1DNodes {
  std::vector<int64_t> offset;   // (K + 1)
  std::vector<double> x, w, y;   // (N,), (N,), (N, out)
  std::vector<uint8_t> zero;     // (N, hidden) or empty
};
void quad1d_nodes_batch(const ProblemSpec& prob, const double* theta, int64_t K, const Quad1DSpec& s,
                        Quad1DNodes& out);

// Risk (K,) and, when grad != nullptr, generalized gradient (K, P) of K networks theta (K, P), float64
// results (float32 theta: kinks in float64 from the float32 values, the dense kernel in float32 as the
// cpu backend does). A network with a NaN or inf parameter gets NaN risk and gradient. The GIL must be
// released by the caller.
template <class T>
void quad1d_risk_and_grad_cpu(const ProblemSpec& prob, const T* theta, int64_t K, const Quad1DSpec& s,
                              double* risk, double* grad);

namespace detail {
// The four above compiled once per instruction set (quad1d_cpu.cpp); the public ones
// (quad1d_dispatch.cpp) call the path simd_dispatch.h says runs (every path gives the same bits).
#define RELUFLOW_DECLARE_QUAD1D(ns)                                                                      \
  namespace ns {                                                                                         \
  void kink_partition_1d(const Layout& lay, const double* theta, double lo, double hi,                   \
                         std::vector<double>& out);                                                      \
  void quad1d_nodes(const ProblemSpec& prob, const double* theta, const Quad1DSpec& s,                   \
                    std::vector<double>& x, std::vector<double>& w, std::vector<double>& y);             \
  void quad1d_nodes_batch(const ProblemSpec& prob, const double* theta, int64_t K, const Quad1DSpec& s,  \
                          Quad1DNodes& out);                                                             \
  template <class T>                                                                                     \
  void quad1d_risk_and_grad_cpu(const ProblemSpec& prob, const T* theta, int64_t K, const Quad1DSpec& s, \
                                double* risk, double* grad);                                             \
  }
RELUFLOW_DECLARE_QUAD1D(isa_scalar)
RELUFLOW_DECLARE_QUAD1D(isa_avx2)
RELUFLOW_DECLARE_QUAD1D(isa_avx512)
#undef RELUFLOW_DECLARE_QUAD1D
}  // namespace detail

}  // namespace reluflow
