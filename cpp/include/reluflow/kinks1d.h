// Per-piece math of the exact 1-D quadrature on the kink partition of a deep ReLU net (SPEC §3),
// written once for host and device (RF_HD): where a pre-activation crosses zero on a piece, the probe
// points that stand in for infinite ends and the input density (the Gauss–Legendre map of a piece is
// gauss_legendre.h, the piece search and Horner piecewise.h).
// python/reluflow/quadrature.py (kink_partition, _zeros_on_pieces, _nodes_1d) is the reference: the
// formulas here are its formulas, operation for operation, so the nodes agree with numpy's to rounding
// (numpy's matrix products may sum in another order; nothing else differs).
//
// The loops (layer by layer over the current break points, merging, the per-network parallel loop)
// live in cpp/src/cpu/quad1d_cpu.cpp.
#pragma once
#include <math.h>
#include <stdint.h>

#include "dists.h"
#include "finite.h"
#include "gauss_legendre.h"
#include "piecewise.h"
#include "rf_hd.h"

namespace reluflow {
namespace kinks1d {

// Whether v is kept as a kink of the interval (lo, hi): finite and strictly inside.
RF_HD bool strictly_inside(double v, double lo, double hi) { return is_finite(v) && v > lo && v < hi; }

// Layer 1: neuron (w, b) has its kink at -b / w; a neuron with w = 0 is constant (no kink). Returns
// whether there is one (it may still lie outside the domain, or be infinite for a tiny w).
RF_HD bool first_layer_kink(double w, double b, double* x) {
  if (w == 0.0) return false;
  *x = -b / w;
  return true;
}

// The finite probe point that stands in for an infinite end: any point of the unbounded end piece
// does, and one unit (or |e|) beyond the last finite break keeps the extrapolation well scaled.
RF_HD double left_probe(double first) { return first - fmax(1.0, fabs(first)); }
RF_HD double right_probe(double last) { return last + fmax(1.0, fabs(last)); }

// Zero of a pre-activation that is affine on the finite piece [a, b], from its end values za, zb.
// It exists strictly inside iff the end values have strictly opposite signs. Interpolating from the
// end closer to the zero keeps the parameter in [0, 1/2] and computed without cancellation (|za - zb|
// = |za| + |zb|), which is exact for an affine function up to rounding; the clip only guards rounding.
// A NaN result (overflowed pre-activations) is returned as is and dropped by strictly_inside.
RF_HD bool zero_on_piece(double a, double b, double za, double zb, double* x) {
  if (!(za * zb < 0.0)) return false;
  const double h = b - a;
  const double ta = za / (za - zb);  // zero at a + ta h
  const double tb = zb / (zb - za);  // = 1 - ta: zero at b - tb h
  double v = ta <= 0.5 ? a + ta * h : b - tb * h;
  // np.clip(v, a, b) = minimum(maximum(v, a), b), NaN propagating
  if (v < a) v = a;
  if (v > b) v = b;
  *x = v;
  return true;
}

// Zero of the affine line through (e_probe, z_pr) and (e_in, z_in) beyond e_in, outwards (towards
// the probe and past it): the unbounded end piece of the partition, of which e_probe is only a finite
// point. s > 0 iff the zero lies on the probe's side of e_in.
RF_HD bool zero_beyond(double e_in, double e_probe, double z_in, double z_pr, double* x) {
  const double dz = z_in - z_pr;
  if (dz == 0.0) return false;
  const double s = z_in / dz;
  const double v = e_in - s * (e_in - e_probe);
  if (!(s > 0.0) || !is_finite(v)) return false;
  *x = v;
  return true;
}

// Whether a hidden pre-activation z vanishes at a point: |z| within kZeroUlps rounding errors per term
// of the sum that formed it (bias and products, over every layer up to it: `terms`) times m, the same
// sum taken over the absolute values of those terms (a standard running error bound). A neuron that
// vanishes at both ends of a piece, on which it is affine, is identically zero there in exact
// arithmetic (geometry.vanishing_on_pieces is the reference; ZERO_ULPS there).
constexpr double kZeroUlps = 4.0;
constexpr double kEpsilon = 2.220446049250313e-16;  // 2^-52, numpy's finfo(float64).eps
RF_HD bool vanishes(double z, double m, int terms) { return fabs(z) <= kZeroUlps * terms * kEpsilon * m; }

// Density of a 1-D piecewise-polynomial input at x, as dists.PiecewisePolynomial.pdf computes it:
// piece clip(searchsorted(breaks, x, side="right") - 1, 0, m - 1), Horner in local powers with the
// normalized coefficients coeffs (m, ncoef), zero outside [breaks[0], breaks[m]].
RF_HD double pwpoly_pdf(const PiecewisePolyDensity& d, const double* coeffs, double x) {
  const int i = piece_index(d.breaks, d.pieces, x);
  const double val = horner(coeffs + static_cast<int64_t>(i) * d.ncoef, d.ncoef - 1, 1, x - d.breaks[i]);
  const bool inside = x >= d.breaks[0] && x <= d.breaks[d.pieces];
  return inside ? val : 0.0;
}

// Density of the 1-D input at x (an interior point of a piece): uniform 1 / (high - low), or the
// piecewise polynomial above (coeffs: its normalized coefficients, unused for the uniform).
RF_HD double density_1d(const InputDist& dist, const double* coeffs, double x) {
  if (dist.kind == kDistUniform) return 1.0 / (dist.box.high[0] - dist.box.low[0]);
  return pwpoly_pdf(dist.poly, coeffs, x);
}

}  // namespace kinks1d
}  // namespace reluflow
