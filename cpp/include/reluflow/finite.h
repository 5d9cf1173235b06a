// Finiteness and NaN tests with numpy's semantics, for host and device (RF_HD): std::isfinite and
// std::isnan are host functions, and math.h's isfinite is a macro in C and a function in C++; the
// arithmetic forms below mean the same on both sides of nvcc (the build never uses -ffast-math).
#pragma once
#include <math.h>
#include <stdint.h>

#include "rf_hd.h"

namespace reluflow {

// numpy's isfinite: v - v is 0 for finite v and NaN for inf / NaN.
RF_HD bool is_finite(double v) { return v - v == 0.0; }
RF_HD bool is_nan(double v) { return v != v; }

// np.minimum / np.maximum: NaN if either argument is NaN (std::min/max and fmin/fmax would drop it).
RF_HD double np_min(double a, double b) { return (is_nan(a) || is_nan(b)) ? NAN : (a < b ? a : b); }
RF_HD double np_max(double a, double b) { return (is_nan(a) || is_nan(b)) ? NAN : (a > b ? a : b); }

// Whether every entry of a (n,) is finite: the check a kernel makes on a network's parameters before
// computing it (a network with a NaN / inf parameter gets NaN results). x * 0 is 0 for finite x and
// NaN for inf / NaN; eight independent sums vectorize (this runs once per network per call, on every
// parameter), with no early exit.
template <class T>
RF_HD bool all_finite(const T* a, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int q = 0; q < 8; ++q) acc[q] += static_cast<double>(a[j + q]) * 0.0;
  for (; j < n; ++j) acc[0] += static_cast<double>(a[j]) * 0.0;
  double s = 0.0;
  for (int q = 0; q < 8; ++q) s += acc[q];
  return s == 0.0;
}

}  // namespace reluflow
