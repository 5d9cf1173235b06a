// CPU loops of the shallow 1-D sweeps (sweep1d_cpu.cpp); the per-piece math is reluflow/sweep1d.h.
#pragma once
#include <cstdint>

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

}  // namespace reluflow
