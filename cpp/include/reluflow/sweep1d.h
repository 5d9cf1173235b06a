// Per-piece and per-neuron math of the sweeps for shallow 1-D networks [1, H, out] (SPEC §3):
// N(x) = V relu(w x + b) + c, parameters (w_1..w_H, b_1..b_H, V (out x H row-major), c (out)).
//
// Between two consecutive kinks -b_i / w_i the network is affine. The sweeps keep it as
// N(x) = A (x - c0) + B (A, B vectors over the outputs, c0 a fixed centre of the domain, which keeps
// the constant term small and free of cancellation for domains away from 0) and update A, B by
// +-V_i w_i, +-V_i (w_i c0 + b_i) when crossing neuron i's kink. Every gradient component is then a
// linear combination of two moments of the weighted residual over the neuron's active set (a
// half-line), S0 = ∫_active r rho and S1 = ∫_active (x - c0) r rho:
//   dL/dw_i    = 2 sum_o V_oi (S1_o + c0 S0_o)
//   dL/db_i    = 2 sum_o V_oi S0_o
//   dL/dV_oi   = 2 (w_i S1_o + (w_i c0 + b_i) S0_o)
//   dL/dc_o    = 2 ∫ r_o rho
// The loops (OpenMP over networks, CUDA later) live elsewhere; everything here is RF_HD.
#pragma once
#include <math.h>
#include <stdint.h>

#include "gauss_legendre.h"
#include "piecewise.h"
#include "rf_hd.h"

namespace reluflow {

// A 1-D piecewise polynomial in local powers: on [breaks[j], breaks[j+1]],
// p(x) = sum_p coeffs[(j * (deg + 1) + p) * cols + o] (x - breaks[j])^p, o < cols.
struct PiecewisePoly1D {
  int64_t m = 0;                  // pieces (breaks has m + 1 entries, strictly increasing)
  int deg = 0;                    // degree
  const double* breaks = nullptr;
  const double* coeffs = nullptr;
};

namespace sweep1d {

// Number of hidden neurons H of a shallow [1, H, out] net with P parameters, or -1 if P does not fit.
RF_HD int64_t hidden_width(int64_t P, int out) {
  if (out < 1 || P <= out) return -1;
  const int64_t rest = P - out;
  if (rest % (static_cast<int64_t>(out) + 2) != 0) return -1;
  return rest / (static_cast<int64_t>(out) + 2);
}

RF_HD int64_t num_params(int64_t H, int out) { return H * (2 + static_cast<int64_t>(out)) + out; }

// Offsets in the flat parameter vector.
RF_HD int64_t off_b(int64_t H) { return H; }
RF_HD int64_t off_V(int64_t H) { return 2 * H; }
RF_HD int64_t off_c(int64_t H, int out) { return 2 * H + static_cast<int64_t>(out) * H; }

// Neumaier's compensated summation: the sum is s + c.
RF_HD void csum_add(double& s, double& c, double t) {
  const double u = s + t;
  if (fabs(s) >= fabs(t)) {
    c += (s - u) + t;
  } else {
    c += (t - u) + s;
  }
  s = u;
}

// relu'(w x + b) with the pre-activation formed exactly as the reference does (no FMA: the product is
// rounded, then the bias added), compared with '>' (relu'(0) = 0, relu(0) = 0). For w > 0 it is
// monotone non-decreasing in x, for w < 0 non-increasing (rounding is monotone), so the active nodes
// of a neuron are a contiguous range of the sorted nodes.
RF_HD bool relu_active(double w, double b, double x) {
  const double p = w * x;
  const double z = p + b;
  return z > 0.0;
}

// Gauss–Legendre order for an exact integral of |r|^2 rho on a piece: r has degree max(1, tdeg),
// rho degree ddeg; the gradient integrands have smaller degree.
RF_HD int exact_order(int tdeg, int ddeg) {
  const int deg = 2 * (tdeg > 1 ? tdeg : 1) + ddeg;
  return (deg + 2) / 2;
}

// Moments of one piece [a, b] of the exact sweep, by q-point Gauss–Legendre (exact for the
// polynomial integrands). On the piece N(x) = A (x - c0) + B, the target is
// f_o(x) = sum_p tc[p * out + o] (x - t0)^p and the density rho(x) = sum_p dc[p] (x - s0)^p
// (dc == nullptr: rho = 0 there). Adds nothing to m0, m1: it overwrites them with
//   m0[o] = ∫ r_o rho,  m1[o] = ∫ (x - c0) r_o rho,   r = N - f,
// and returns ∫ |r|^2 rho.
RF_HD double piece_moments(double a, double b, int q, const double* gt, const double* gw, int out,
                           const double* A, const double* B, double c0, const double* tc, int tdeg,
                           double t0, const double* dc, int ddeg, double s0, double* m0, double* m1) {
  for (int o = 0; o < out; ++o) {
    m0[o] = 0.0;
    m1[o] = 0.0;
  }
  if (dc == nullptr) return 0.0;
  double risk = 0.0;
  for (int j = 0; j < q; ++j) {
    const double x = gl_node(a, b, gt[j]);
    const double wq = gl_weight(a, b, gw[j]) * horner(dc, ddeg, 1, x - s0);
    const double dx = x - c0;
    const double st = x - t0;
    for (int o = 0; o < out; ++o) {
      const double f = horner(tc + o, tdeg, out, st);
      const double r = (A[o] * dx + B[o]) - f;
      const double wr = wq * r;
      risk += wr * r;
      m0[o] += wr;
      m1[o] += wr * dx;
    }
  }
  return risk;
}

// Gradient of one neuron (w, b, outgoing weights v[o * vstride]) from the moments S0, S1 (out each) of
// its active set, see the header comment: writes gw, gb and gv[o * gvstride].
RF_HD void neuron_grad(double w, double b, const double* v, int64_t vstride, int out, double c0,
                       const double* S0, const double* S1, double* gw, double* gb, double* gv,
                       int64_t gvstride) {
  const double z0 = w * c0 + b;
  double sw = 0.0, sb = 0.0;
  for (int o = 0; o < out; ++o) {
    const double vo = v[o * vstride];
    sw += vo * (S1[o] + c0 * S0[o]);
    sb += vo * S0[o];
    gv[o * gvstride] = 2.0 * (w * S1[o] + z0 * S0[o]);
  }
  *gw = 2.0 * sw;
  *gb = 2.0 * sb;
}

// Adds sign * the neuron's affine piece v (w (x - c0) + w c0 + b) to the compensated sums of A and B.
RF_HD void toggle_neuron(double w, double b, const double* v, int64_t vstride, int out, double sign,
                         double c0, double* As, double* Ac, double* Bs, double* Bc) {
  const double z0 = w * c0 + b;
  for (int o = 0; o < out; ++o) {
    const double vo = sign * v[o * vstride];
    csum_add(As[o], Ac[o], vo * w);
    csum_add(Bs[o], Bc[o], vo * z0);
  }
}

// First index j in [0, n] with pred(j) true, for a predicate false...false true...true on [0, n)
// (pred(n) is taken as true), by bisection: the sweeps' searches (lower and upper bounds, a neuron's
// first active node) are all this one.
template <class Pred>
RF_HD int64_t first_true(int64_t n, const Pred& pred) {
  int64_t lo = 0, len = n;
  while (len > 0) {
    const int64_t half = len / 2;
    if (pred(lo + half)) {
      len = half;
    } else {
      lo += half + 1;
      len -= half + 1;
    }
  }
  return lo;
}

}  // namespace sweep1d
}  // namespace reluflow
