// CPU loops of the shallow 1-D sweeps (sweep1d_cpu.cpp); the per-piece math is reluflow/sweep1d.h.
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>

#include "cpu/radix_sort.h"    // NodeCells
#include "reluflow/sweep1d.h"  // PiecewisePoly1D

namespace reluflow {

// Exact risk and gradient of K shallow [1, H, out] nets theta (K, P) on [lo, hi] for a
// piecewise-polynomial target (cols = out; left of breaks[0] the first piece's polynomial, right of
// breaks[m] the last's) and density (cols = 1; zero outside its breaks). risk (K,), grad (K, P),
// float64. OpenMP over networks, each network computed by one thread (deterministic). A network with
// a NaN or inf parameter gets NaN risk and gradient.
void shallow1d_exact_cpu(const double* theta, int64_t K, int64_t H, int out, double lo, double hi,
                         const PiecewisePoly1D& target, const PiecewisePoly1D& density, double* risk,
                         double* grad);

// Risk sum_j wt_j |N(x_j) - y_j|^2 and its generalized gradient (relu'(0) = 0) of K shallow
// [1, H, out] nets at N weighted 1-D nodes x (N,), wt (N,), y (N, out) (x finite). O((N + H) log(N + H))
// per network. risk (K,), grad (K, P) float64.
void shallow1d_points_cpu(const double* theta, int64_t K, int64_t H, int out, int64_t N,
                          const double* x, const double* wt, const double* y, double* risk,
                          double* grad);

// Shared by the sweep loops (sweep1d_cpu.cpp, sweep_points.cpp): the threads for K networks of
// `size` work each (never more than K; one for small calls: parallel_policy.h), and NaN fill for the
// gradient of a network with a non-finite parameter.
int sweep_threads(int64_t K, int64_t size);
inline void fill_nan(double* a, int64_t n) { std::fill(a, a + n, std::numeric_limits<double>::quiet_NaN()); }

// Whether the point sweep's node locator (sweep_points.cpp) takes the sort's cells (NodeCells) for
// `queries` kinks among N nodes: where it would otherwise pass over every node to build its own table
// (min(N, 2 queries) cells, at least N / log2(N) of them).
inline bool locator_takes_sort_cells(int64_t N, int64_t queries) {
  int64_t log2n = 1;
  while ((int64_t(1) << log2n) < N) ++log2n;
  return std::max<int64_t>(1, std::min<int64_t>(N, 2 * queries)) * log2n >= N;
}

namespace detail {
// The point sweep over nodes xs (N,) sorted ascending with their weights ws (N,) and targets ys
// (N, out), compiled once per instruction set (sweep_points.cpp); shallow1d_points_cpu sorts and calls
// the path simd_dispatch.h says runs (every path gives the same bits).
#define RELUFLOW_DECLARE_POINT_SWEEP(ns)                                                               \
  namespace ns {                                                                                       \
  void shallow1d_points_sorted(const double* theta, int64_t K, int64_t H, int out, int64_t N,          \
                               const double* xs, const double* ws, const double* ys,                   \
                               const NodeCells& cells, double* risk, double* grad);                    \
  }
RELUFLOW_DECLARE_POINT_SWEEP(isa_scalar)
RELUFLOW_DECLARE_POINT_SWEEP(isa_avx2)
RELUFLOW_DECLARE_POINT_SWEEP(isa_avx512)
#undef RELUFLOW_DECLARE_POINT_SWEEP
}  // namespace detail

}  // namespace reluflow
