// Native targets f evaluated inside the kernels (python/reluflow/targets.py is the reference):
// Affine f(x) = A x + b, and 1-D piecewise polynomials in local powers (PiecewiseLinear is stored as
// one, with constant end pieces). Plain struct of pointers, passed by value to CPU loops and kernels.
#pragma once
#include <cstdint>

#include "piecewise.h"
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

// y (out,) = f(x), x (dim,).
RF_HD void target_eval(const TargetSpec& f, const double* x, double* y) {
  if (f.kind == kTargetAffine) {
    for (int o = 0; o < f.out; ++o) {
      double acc = 0.0;
      for (int k = 0; k < f.dim; ++k) acc += f.A[o * f.dim + k] * x[k];
      y[o] = acc + f.b[o];
    }
  } else if (f.kind == kTargetPiecewisePolynomial) {
    // left of breaks[0] the first piece's polynomial, right of breaks[m] the last's
    const int i = piece_index(f.breaks, f.pieces, x[0]);
    const double s = x[0] - f.breaks[i];
    const double* c = f.coeffs + static_cast<int64_t>(i) * f.ncoef * f.out;
    for (int o = 0; o < f.out; ++o) y[o] = horner(c + o, f.ncoef - 1, f.out, s);
  }
}

}  // namespace reluflow
