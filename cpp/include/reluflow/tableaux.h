// The integrator math of the gradient-flow loops, for host and device (RF_HD): the fixed-step
// Runge–Kutta coefficients (Euler/Heun/RK4), the Dormand–Prince 5(4) tableau, its error norm, its
// step-size controller and the Hairer–Wanner initial step. Everything here is per network or per
// parameter component; the loops over networks and stages live in cpp/src/cpu/flow_cpu.cpp and
// cpp/src/cpu/dopri5_cpu.cpp (and later in CUDA kernels).
//
// python/reluflow/flows.py is the reference (gradient_flow, _dopri5, _DP_A/_DP_B/_DP_E): every sum
// here is its sum, term for term in the same order, so the C++ loops agree with it bitwise where the
// Python driver sums in order (see dopri5_cpu.cpp for the exceptions).
//
// The tables are returned by value from constexpr functions rather than kept as namespace-scope
// arrays: device code cannot index a host array, and a constexpr copy folds away on either side.
#pragma once
#include <math.h>
#include <stdint.h>

#include "finite.h"
#include "rf_hd.h"

namespace reluflow {
namespace tableaux {

// ---- fixed-step methods: theta_{n+1} = theta_n - h sum_s b_s k_s, k_s = G(theta_n - h a_s k_{s-1}) ----

enum FixedMethod : int { kEuler = 0, kHeun = 1, kRK4 = 2 };

struct FixedTableau {
  int stages;
  double a[4];  // stage s is evaluated at theta - h a[s] k_{s-1} (a[0] unused)
  double b[4];  // weights of the stages in the update and in the energy
};

RF_HD constexpr FixedTableau fixed_tableau(int method) {
  return method == kRK4    ? FixedTableau{4, {0.0, 0.5, 0.5, 1.0}, {1.0 / 6, 2.0 / 6, 2.0 / 6, 1.0 / 6}}
         : method == kHeun ? FixedTableau{2, {0.0, 1.0, 0.0, 0.0}, {0.5, 0.5, 0.0, 0.0}}
                           : FixedTableau{1, {0.0, 0.0, 0.0, 0.0}, {1.0, 0.0, 0.0, 0.0}};
}

// Component of stage s's evaluation point: theta - h a_s k_{s-1} (in float64, rounded by the caller).
RF_HD double fixed_stage_point(double theta, double h, double a, double k_prev) {
  return theta - h * a * k_prev;
}

// The update of one component: incr = sum_s b_s k_s, and adds sum_s b_s k_s^2 to *energy (the
// integrand of ∫|G|^2 dt). k(s) returns stage s's value of this component.
template <class KAt>
RF_HD double fixed_increment(const FixedTableau& tab, const KAt& k, double* energy) {
  double incr = 0.0;
  for (int st = 0; st < tab.stages; ++st) {
    const double ks = k(st);
    incr += tab.b[st] * ks;
    *energy += tab.b[st] * ks * ks;
  }
  return incr;
}

// ---- Dormand–Prince 5(4) ---------------------------------------------------------------------

struct Dopri5Tableau {
  double a[7][7];
  double b[7];  // 5th-order weights (FSAL: b = a[6])
  double e[7];  // b - b_hat: the embedded error estimate
};

RF_HD constexpr Dopri5Tableau dopri5_tableau() {
  // b_hat, the 4th-order weights, enter only through e = b - b_hat (computed at compile time, in
  // double, as flows.py's _DP_E = _DP_B - _DP_BHAT)
  constexpr double bh[7] = {5179.0 / 57600, 0, 7571.0 / 16695, 393.0 / 640, -92097.0 / 339200,
                            187.0 / 2100, 1.0 / 40};
  constexpr double b[7] = {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84, 0};
  return Dopri5Tableau{
      {
          {0, 0, 0, 0, 0, 0, 0},
          {1.0 / 5, 0, 0, 0, 0, 0, 0},
          {3.0 / 40, 9.0 / 40, 0, 0, 0, 0, 0},
          {44.0 / 45, -56.0 / 15, 32.0 / 9, 0, 0, 0, 0},
          {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729, 0, 0, 0},
          {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656, 0, 0},
          {b[0], b[1], b[2], b[3], b[4], b[5], b[6]},
      },
      {b[0], b[1], b[2], b[3], b[4], b[5], b[6]},
      {b[0] - bh[0], b[1] - bh[1], b[2] - bh[2], b[3] - bh[3], b[4] - bh[4], b[5] - bh[5], b[6] - bh[6]},
  };
}

// sum_j c[j] k(j) over j < n, as Python's sum() of the nonzero terms: starts at 0 and skips the zero
// coefficients (adding a +-0 term could turn a -0 sum into +0 and a NaN k into a NaN sum).
template <class KAt>
RF_HD double tableau_sum(const double* c, int n, const KAt& k) {
  double sum = 0.0;
  for (int j = 0; j < n; ++j)
    if (c[j] != 0) sum += c[j] * k(j);
  return sum;
}

// Term of one component in the squared error norm: (err / (atol + rtol max(|y|, |y_new|)))^2, with
// np.maximum's NaN propagation.
RF_HD double dopri5_err_term(double err, double y, double y_new, double atol, double rtol) {
  const double sc = atol + rtol * np_max(fabs(y), fabs(y_new));
  return (err / sc) * (err / sc);
}

// RMS error norm of a network from the sum of its P terms.
RF_HD double rms_norm(double sum_sq, int64_t P) { return sqrt(sum_sq / P); }

// Hairer–Wanner's simple initial step (Hairer, Nørsett & Wanner I.4): 1% of |y| / |G| in the error
// norm, 1e-6 when either is tiny; h0 > 0 overrides it; never beyond t_end. y, g: (P,) of a network.
RF_HD double dopri5_initial_step(double h0, const double* y, const double* g, int64_t P, double atol,
                                 double rtol, double t_end) {
  double h;
  if (h0 > 0) {
    h = h0;
  } else {
    double d0 = 0.0, d1 = 0.0;
    for (int64_t q = 0; q < P; ++q) {
      const double sc = atol + rtol * fabs(y[q]);
      d0 += (y[q] / sc) * (y[q] / sc);
      d1 += (g[q] / sc) * (g[q] / sc);
    }
    d0 = rms_norm(d0, P);
    d1 = rms_norm(d1, P);
    h = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / np_max(d1, 1e-300);
  }
  return np_min(h, t_end);
}

// The step actually tried from time t: h, cut to land exactly on the next record time `target`
// (keeps records exact and per-network independent); h itself if t is already there.
RF_HD double dopri5_step_to(double h, double t, double target) {
  const double x = np_min(h, np_max(target - t, 0.0));
  return x <= 0 ? h : x;
}

// The time after an accepted step of size hh: snapped to target when within t_tol of it.
RF_HD double dopri5_advance(double t, double hh, double target, double t_tol) {
  return fabs(t + hh - target) <= t_tol ? target : t + hh;
}

// Multiplier of the step size after a try with error norm err: the standard controller with safety
// 0.9 and exponent -1/5, the factor clipped to [0.2, 5]; a non-finite factor or a bad step (non-finite
// or too large state) shrinks by 0.2; no growth after a rejection. The comparisons are those of
// std::min / std::max (fac is finite where they run).
RF_HD double dopri5_step_factor(double err, bool accepted, bool bad) {
  double fac = err > 0 ? 0.9 * pow(np_max(err, 1e-300), -0.2) : 5.0;
  if (!is_finite(fac)) fac = 0.2;
  fac = fac < 0.2 ? 0.2 : fac;
  fac = 5.0 < fac ? 5.0 : fac;
  if (bad) fac = 0.2;
  const double cap = accepted ? 5.0 : 1.0;
  return cap < fac ? cap : fac;
}

// ---- how a network's run ends --------------------------------------------------------------------

// Why a network was frozen (diverged), per network: flows.py's _REASONS mirrors these codes (the
// Python driver computes the same ones) and turns them into Run.reason.
enum StopReason : uint8_t {
  kRunning = 0,          // not frozen
  kRiskGrew = 1,         // risk > max_growth x its risk at the start of the run
  kRiskNotFinite = 2,    // risk inf / NaN
  kGradNotFinite = 3,    // gradient (or dopri5's error estimate) inf / NaN with a finite risk
  kParamsOverMaxAbs = 4, // a new parameter beyond max_abs
  kParamsNotFinite = 5   // a new parameter (or a stage point) inf / NaN
};

// The risk test at an evaluated state: r (rounded to theta's dtype) against the run's starting risk r0
// of that network. A network starting at risk 0 (or whose start was not finite) is only checked for
// finiteness: no factor of 0 means anything.
RF_HD int risk_reason(double r, double r0, double max_growth) {
  if (!is_finite(r)) return kRiskNotFinite;
  return (r0 > 0 && r > max_growth * r0) ? kRiskGrew : kRunning;
}

// The parameter test on a network's new parameters row (P,): non-finite first, then beyond max_abs.
template <class V>
RF_HD int params_reason(const V* row, int64_t P, double max_abs) {
  bool finite = true, over = false;
  for (int64_t p = 0; p < P; ++p) {
    const double v = static_cast<double>(row[p]);
    if (!is_finite(v)) finite = false;
    else if (fabs(v) > max_abs) over = true;
  }
  return !finite ? kParamsNotFinite : over ? kParamsOverMaxAbs : kRunning;
}

}  // namespace tableaux
}  // namespace reluflow
