// Native targets f evaluated inside the kernels (python/reluflow/targets.py is the reference):
// Affine f(x) = A x + b, and 1-D piecewise polynomials in local powers (PiecewiseLinear is stored as
// one, with constant end pieces). Plain struct of pointers, passed by value to CPU loops and kernels.
#pragma once
#include <cstdint>

#include "rf_hd.h"

namespace reluflow {

enum TargetKind : int { kTargetData = 0, kTargetAffine = 1, kTargetPiecewisePolynomial = 2 };

struct TargetSpec {
  int kind = kTargetData;
  int dim = 0, out = 0;
  const double* A = nullptr;       // (out, dim) row-major         (affine)
  const double* b = nullptr;       // (out,)                        (affine)
  int pieces = 0, ncoef = 0;       // m pieces, degree + 1          (piecewise polynomial, dim = 1)
  const double* breaks = nullptr;  // (m + 1,)
  const double* coeffs = nullptr;  // (m, ncoef, out): f_o(x) = sum_p c[i, p, o] (x - breaks[i])^p
};

// Index of the piece of t: clip(searchsorted(breaks, t, side="right") - 1, 0, m - 1).
RF_HD int target_piece(const TargetSpec& f, double t) {
  int lo = 0, hi = f.pieces + 1;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (f.breaks[mid] <= t) lo = mid + 1; else hi = mid;
  }
  int i = lo - 1;
  if (i < 0) i = 0;
  if (i > f.pieces - 1) i = f.pieces - 1;
  return i;
}

// y (out,) = f(x), x (dim,).
RF_HD void target_eval(const TargetSpec& f, const double* x, double* y) {
  if (f.kind == kTargetAffine) {
    for (int o = 0; o < f.out; ++o) {
      double acc = 0.0;
      for (int k = 0; k < f.dim; ++k) acc += f.A[o * f.dim + k] * x[k];
      y[o] = acc + f.b[o];
    }
  } else if (f.kind == kTargetPiecewisePolynomial) {
    const int i = target_piece(f, x[0]);
    const double s = x[0] - f.breaks[i];
    const double* c = f.coeffs + static_cast<int64_t>(i) * f.ncoef * f.out;
    for (int o = 0; o < f.out; ++o) {
      double val = c[(f.ncoef - 1) * f.out + o];
      for (int p = f.ncoef - 2; p >= 0; --p) val = val * s + c[p * f.out + o];
      y[o] = val;
    }
  }
}

}  // namespace reluflow
