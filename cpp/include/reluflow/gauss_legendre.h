// Gauss–Legendre quadrature, for host and device (RF_HD): the q-point rule on [-1, 1] and its map to a
// piece [a, b], written once for the exact sweeps (sweep1d.h) and the deep 1-D partition quadrature
// (cpp/src/cpu/quad1d_cpu.cpp). python/reluflow's rule (numpy.polynomial.legendre.leggauss) agrees to
// rounding; the map is its formula, operation for operation.
#pragma once
#include <math.h>
#include <stdint.h>

#include "rf_hd.h"

namespace reluflow {

// P_q'(x) by the three-term recurrence of the Legendre polynomials; *pq = P_q(x).
RF_HD double legendre_derivative(int q, double x, double* pq) {
  double p0 = 1.0, p1 = x;
  for (int k = 2; k <= q; ++k) {
    const double p2 = ((2.0 * k - 1.0) * x * p1 - (k - 1.0) * p0) / k;
    p0 = p1;
    p1 = p2;
  }
  *pq = p1;
  return q * (x * p1 - p0) / (x * x - 1.0);
}

// Gauss–Legendre rule of q points on [-1, 1] (Newton on the three-term recurrence; nodes
// increasing). Exact for polynomials of degree <= 2q - 1.
RF_HD void gauss_legendre(int q, double* t, double* wt) {
  const double pi = 3.14159265358979323846;
  for (int i = 0; i < q; ++i) {
    double x = cos(pi * (i + 0.75) / (q + 0.5));
    double pq;
    for (int it = 0; it < 100; ++it) {
      const double dp = legendre_derivative(q, x, &pq);
      const double dx = pq / dp;
      x -= dx;
      if (fabs(dx) <= 1e-16 * (1.0 + fabs(x))) break;
    }
    // the derivative at the converged root, for the weight
    const double dp = legendre_derivative(q, x, &pq);
    t[q - 1 - i] = x;  // cos(...) decreases with i: store increasing
    wt[q - 1 - i] = 2.0 / ((1.0 - x * x) * dp * dp);
  }
  if (q % 2 == 1) t[q / 2] = 0.0;  // the middle node is exactly 0
}

// Node and weight (without the density) on the piece [a, b] from the rule's (t, w) on [-1, 1]:
// x = mid + half t, weight = half w.
RF_HD double gl_node(double a, double b, double t) {
  const double half = 0.5 * (b - a), mid = 0.5 * (a + b);
  return mid + half * t;
}
RF_HD double gl_weight(double a, double b, double w) { return 0.5 * (b - a) * w; }

}  // namespace reluflow
