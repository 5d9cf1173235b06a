// Samplers of the input distributions mu: uniforms in (0, 1) -> nodes, the same elementary float64
// operations in the same order as python/reluflow/dists.py (``from_uniform``), so that with
// -ffp-contract=off (host) and --fmad=false (CUDA) the nodes are bitwise those of numpy. The uniform
// box and the 1-D density map each coordinate alone (input_dist_sample); the Gaussian mixes the
// coordinates of a node (x = mean + L z), so the loops go node by node (input_dist_node).
//
// Plain structs of pointers, passed by value: on the device the pointers must point to device
// memory. No virtual functions, no allocation.
#pragma once
#include <cstdint>

#include "normal_quantile.h"
#include "piecewise.h"
#include "rf_hd.h"

namespace reluflow {

// Uniform distribution on the box [low, high] (dim coordinates): x_k = low_k + (high_k - low_k) u_k.
struct UniformBox {
  int dim;
  const double* low;   // (dim,)
  const double* high;  // (dim,)
};

// 1-D piecewise-polynomial density, as dists.PiecewisePolynomial stores it after normalization:
// m pieces [breaks[i], breaks[i+1]]; the CDF of piece i at local coordinate t is
// sum_p anti[i*ncoef + p] t^(p+1) (p = 0..ncoef-1); cum[i] = mass below breaks[i] (cum[0] = 0).
struct PiecewisePolyDensity {
  int pieces;            // m >= 1
  int ncoef;             // degree + 1 >= 1
  const double* breaks;  // (m+1,)
  const double* anti;    // (m, ncoef) row-major
  const double* cum;     // (m+1,)
};

RF_HD double uniform_box_sample(UniformBox box, int k, double u) {
  const double width = box.high[k] - box.low[k];
  const double scaled = width * u;
  return box.low[k] + scaled;
}

// The piece of u: numpy's clip(searchsorted(cum, u, side="right") - 1, 0, m - 1) (piecewise.h).
RF_HD int pwpoly_piece(PiecewisePolyDensity dist, double u) { return piece_index(dist.cum, dist.pieces, u); }

// CDF of piece i at local coordinate t (mass below breaks[i] excluded): Horner, then one more * t.
RF_HD double pwpoly_piece_cdf(PiecewisePolyDensity dist, int i, double t) {
  const double* a = dist.anti + static_cast<int64_t>(i) * dist.ncoef;
  return horner(a, dist.ncoef - 1, 1, t) * t;
}

// Inverse CDF by 64 bisection steps on the chosen piece (dists._BISECTION_STEPS).
RF_HD double pwpoly_sample(PiecewisePolyDensity dist, double u) {
  const int i = pwpoly_piece(dist, u);
  const double target = u - dist.cum[i];
  double lo = 0.0;
  double hi = dist.breaks[i + 1] - dist.breaks[i];
  for (int step = 0; step < 64; ++step) {
    const double mid = 0.5 * (lo + hi);
    if (pwpoly_piece_cdf(dist, i, mid) < target) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return dist.breaks[i] + 0.5 * (lo + hi);
}

// Normal distribution N(mean, L L^T) in dim coordinates, as dists.Gaussian stores it: the lower
// Cholesky factor L of the covariance, computed once by numpy and passed as data.
struct GaussianDist {
  int dim;
  const double* mean;  // (dim,)
  const double* chol;  // (dim, dim) row-major, lower triangular (the upper triangle is not read)
};

// One node x (dim,) of the uniforms u (dim,): z_i = Phi^{-1}(u_i) (AS 241), then
// x_k = mean_k + (((0 + L_k0 z_0) + L_k1 z_1) + ... + L_kk z_k), skipping the zero entries of L
// (so a diagonal covariance costs O(dim) multiplications, not O(dim^2)). x may be u (in place): the
// rows are done from the last to the first, and row k reads only z_0..z_k, still in place.
RF_HD void gaussian_node(GaussianDist g, const double* u, double* x) {
  const int d = g.dim;
  for (int k = 0; k < d; ++k) x[k] = normal_quantile(u[k]);
  for (int k = d - 1; k >= 0; --k) {
    const double* row = g.chol + static_cast<int64_t>(k) * d;
    double acc = 0.0;
    for (int i = 0; i <= k; ++i) {
      if (row[i] != 0.0) acc = acc + row[i] * x[i];
    }
    x[k] = g.mean[k] + acc;
  }
}

// Any of the distributions, selected by kind; dim = number of coordinates of a node.
enum InputDistKind : int { kDistUniform = 0, kDistPiecewisePolynomial = 1, kDistGaussian = 2 };

struct InputDist {
  int kind;
  int dim;
  UniformBox box;              // kind == kDistUniform
  PiecewisePolyDensity poly;   // kind == kDistPiecewisePolynomial (dim == 1)
  GaussianDist gauss;          // kind == kDistGaussian
};

// Coordinate k of the node of uniform u_k, for the coordinate-wise kinds (uniform box; the
// piecewise-polynomial density uses u_0 only). Not for kDistGaussian: use input_dist_node.
RF_HD double input_dist_sample(InputDist dist, int k, double u) {
  return dist.kind == kDistUniform ? uniform_box_sample(dist.box, k, u) : pwpoly_sample(dist.poly, u);
}

// The node x (dim,) of the uniforms u (dim,), any kind; x may be u (in place).
RF_HD void input_dist_node(InputDist dist, const double* u, double* x) {
  if (dist.kind == kDistGaussian) {
    gaussian_node(dist.gauss, u, x);
    return;
  }
  for (int k = 0; k < dist.dim; ++k) x[k] = input_dist_sample(dist, k, u[k]);
}

}  // namespace reluflow
