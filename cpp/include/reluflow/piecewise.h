// 1-D piecewise polynomials in local powers, for host and device (RF_HD): on piece i,
// p(x) = sum_p c_p (x - breaks[i])^p. The piece search and the Horner evaluation are written here
// once for the targets (targets.h), the input densities (dists.h, kinks1d.h) and the sweeps
// (sweep1d.h); python/reluflow (np.searchsorted, the Horner loops) is the reference.
#pragma once
#include <stdint.h>

#include "rf_hd.h"

namespace reluflow {

// Index of the piece holding x among m >= 1 pieces with non-decreasing breaks (m + 1,):
// numpy's clip(searchsorted(breaks, x, side="right") - 1, 0, m - 1), i.e. (number of breaks <= x) - 1,
// so x left of breaks[0] falls in the first piece and x right of breaks[m] (or NaN) in the last.
RF_HD int piece_index(const double* breaks, int m, double x) {
  int lo = 0, hi = m + 1;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (breaks[mid] <= x) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  int i = lo - 1;
  if (i < 0) i = 0;
  if (i > m - 1) i = m - 1;
  return i;
}

// Horner in local powers: sum_p c[p * stride] s^p, p = 0..deg (a product, then a sum: no FMA under
// -ffp-contract=off / --fmad=false).
RF_HD double horner(const double* c, int deg, int64_t stride, double s) {
  double v = c[deg * stride];
  for (int p = deg - 1; p >= 0; --p) v = v * s + c[p * stride];
  return v;
}

}  // namespace reluflow
