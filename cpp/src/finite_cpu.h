// Whether every entry of an array is finite: the check a kernel makes on a network's parameters
// before computing it (a network with a NaN / inf parameter gets NaN results).
#pragma once
#include <cstdint>

namespace reluflow {

// x * 0 is 0 for finite x and NaN for inf / NaN; eight independent sums vectorize (this runs once per
// network per call, on every parameter), with no early exit.
template <class T>
bool all_finite(const T* a, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int q = 0; q < 8; ++q) acc[q] += static_cast<double>(a[j + q]) * 0.0;
  for (; j < n; ++j) acc[0] += static_cast<double>(a[j]) * 0.0;
  double s = 0.0;
  for (double v : acc) s += v;
  return s == 0.0;
}

}  // namespace reluflow
