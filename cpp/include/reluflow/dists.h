// Samplers of the input distributions mu: uniforms in (0, 1) -> nodes, the same elementary float64
// operations in the same order as python/reluflow/dists.py (``from_uniform``), so that with
// -ffp-contract=off (host) and --fmad=false (CUDA) the nodes are bitwise those of numpy.
//
// Plain structs of pointers, passed by value: on the device the pointers must point to device
// memory. No virtual functions, no allocation.
#pragma once
#include <cstdint>

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

// Either distribution, selected by kind; dim = number of coordinates of a node.
enum InputDistKind : int { kDistUniform = 0, kDistPiecewisePolynomial = 1 };

struct InputDist {
  int kind;
  int dim;
  UniformBox box;              // kind == kDistUniform
  PiecewisePolyDensity poly;   // kind == kDistPiecewisePolynomial (dim == 1)
};

// Coordinate k of the node of uniform u_k (the piecewise-polynomial density uses u_0 only).
RF_HD double input_dist_sample(InputDist dist, int k, double u) {
  return dist.kind == kDistUniform ? uniform_box_sample(dist.box, k, u) : pwpoly_sample(dist.poly, u);
}

}  // namespace reluflow
