// Dormand–Prince 5(4) with per-network error control (see dopri5_cpu.h).
//
// This is a line-by-line port of `_dopri5` in python/reluflow/flows.py, which stays the reference:
// same tableau, same sums in the same order, same controller and the same status rules, so that the
// two drivers agree to rounding (the only differences are numpy's pairwise sums in the error norm,
// the gradient norm and the energy). numpy semantics that matter are reproduced on purpose:
// np.minimum/np.maximum propagate NaN (a network whose first gradient is NaN gets a NaN step and is
// given up by the rejection rules, exactly as in Python), and risk and gradient are rounded to
// theta's dtype (Problem.risk_and_grad returns them in theta's dtype).
#include "dopri5_cpu.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "manifold_cpu.h"
#include "thread_tuner.h"

namespace reluflow {

namespace {

// Butcher tableau of Dormand–Prince 5(4) (flows.py _DP_A, _DP_B, _DP_E = b - b_hat).
constexpr double kA[7][7] = {
    {0, 0, 0, 0, 0, 0, 0},
    {1.0 / 5, 0, 0, 0, 0, 0, 0},
    {3.0 / 40, 9.0 / 40, 0, 0, 0, 0, 0},
    {44.0 / 45, -56.0 / 15, 32.0 / 9, 0, 0, 0, 0},
    {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729, 0, 0, 0},
    {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656, 0, 0},
    {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84, 0},
};
constexpr double kB[7] = {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84, 0};
constexpr double kBhat[7] = {5179.0 / 57600,   0, 7571.0 / 16695, 393.0 / 640, -92097.0 / 339200,
                             187.0 / 2100, 1.0 / 40};
constexpr double kE[7] = {kB[0] - kBhat[0], kB[1] - kBhat[1], kB[2] - kBhat[2], kB[3] - kBhat[3],
                          kB[4] - kBhat[4], kB[5] - kBhat[5], kB[6] - kBhat[6]};

// np.minimum / np.maximum: NaN if either argument is NaN (std::min/max would drop it).
inline double np_min(double a, double b) { return (std::isnan(a) || std::isnan(b)) ? NAN : (a < b ? a : b); }
inline double np_max(double a, double b) { return (std::isnan(a) || std::isnan(b)) ? NAN : (a > b ? a : b); }

// Rounds risk (n,) and grad (n, P) to T: the Python driver receives them in theta's dtype.
template <class T>
void round_to(double* risk, double* grad, int64_t n, int64_t P) {
  if (sizeof(T) == sizeof(double)) return;
  for (int64_t k = 0; k < n; ++k) risk[k] = static_cast<double>(static_cast<T>(risk[k]));
  for (int64_t q = 0; q < n * P; ++q) grad[q] = static_cast<double>(static_cast<T>(grad[q]));
}

inline double row_norm(const double* g, int64_t P) {
  double s = 0.0;
  for (int64_t q = 0; q < P; ++q) s += g[q] * g[q];
  return std::sqrt(s);
}

// the per-row loops are cheap next to a kernel call; threads only pay off on big batches
constexpr int64_t kParallelWork = int64_t(1) << 15;

}  // namespace

template <class T>
void dopri5_run_cpu(const Dopri5Spec& s, T* theta, Dopri5Out& out) {
  const Layout& lay = s.field.lay;
  const int64_t K = s.K, P = lay.num_params, nT = s.T;
  const bool normalized = s.field.normalized;
  const double t_tol = 1e-12 * s.t_end;  // times within this of a grid time / t_end count as there
  Field<T> field(s.field);

  for (int64_t q = 0; q < nT * K; ++q) out.rec_risk[q] = out.rec_gnorm[q] = out.rec_energy[q] = NAN;
  std::vector<double> th(static_cast<size_t>(K * P)), k1(static_cast<size_t>(K * P));
  std::vector<double> t(K, 0.0), h(K), energy(K, 0.0), risk(K);
  std::vector<int64_t> nxt(K, 0), streak(K, 0);
  std::vector<uint8_t> done(K, 0);
  for (int64_t k = 0; k < K; ++k) {
    out.status[k] = kDopri5Ok;
    out.accepted[k] = out.rejected[k] = 0;
  }
  for (int64_t q = 0; q < K * P; ++q) th[q] = static_cast<double>(theta[q]);

  // records every grid time network k has reached (its time t[k]), with its current values
  auto record_due = [&](int64_t k, double r, double gn) {
    while (nxt[k] < nT && s.grid[nxt[k]] <= t[k] + t_tol) {
      const int64_t j = nxt[k];
      out.rec_risk[j * K + k] = r;
      out.rec_gnorm[j * K + k] = gn;
      out.rec_energy[j * K + k] = energy[k];
      ++nxt[k];
    }
  };

  field.eval(theta, K, 0, risk.data(), k1.data());
  round_to<T>(risk.data(), k1.data(), K, P);
  for (int64_t k = 0; k < K; ++k) {
    if (s.h0 > 0) {
      h[k] = s.h0;
    } else {  // Hairer–Wanner's simple initial guess: 1% of |theta| / |G| in the error norm
      double d0 = 0.0, d1 = 0.0;
      for (int64_t q = 0; q < P; ++q) {
        const double y = th[k * P + q], g = k1[k * P + q], sc = s.atol + s.rtol * std::fabs(y);
        d0 += (y / sc) * (y / sc);
        d1 += (g / sc) * (g / sc);
      }
      d0 = std::sqrt(d0 / P);
      d1 = std::sqrt(d1 / P);
      h[k] = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / np_max(d1, 1e-300);
    }
    h[k] = np_min(h[k], s.t_end);
    record_due(k, risk[k], row_norm(k1.data() + k * P, P));
  }

  // work arrays sized for the whole batch; the first Kc rows hold the running networks
  std::vector<int64_t> idx;
  idx.reserve(K);
  std::vector<double> y(static_cast<size_t>(K * P)), ynew(static_cast<size_t>(K * P));
  std::vector<std::vector<double>> ks(7, std::vector<double>(static_cast<size_t>(K * P)));
  std::vector<T> stage(static_cast<size_t>(K * P));
  std::vector<double> hh(K), target(K), err(K), r_last(K), risk_a(K);
  std::vector<uint8_t> acc(K), bad(K);
  std::vector<int64_t> acc_rows;
  acc_rows.reserve(K);
  int64_t iters = 0;
  ThreadTuner tuner;
  using clock = std::chrono::steady_clock;
  auto last_report = clock::now();

  while (true) {
    if (iters > 0) tuner.end(iters - 1);
    tuner.begin(iters);
    idx.clear();
    double t_min = s.t_end;
    for (int64_t k = 0; k < K; ++k)
      if (!done[k]) {
        idx.push_back(k);
        t_min = std::min(t_min, t[k]);
      }
    if (idx.empty()) break;
    if (s.progress && clock::now() - last_report > std::chrono::milliseconds(250)) {
      s.progress(t_min);
      last_report = clock::now();
    }
    if (++iters > s.max_steps) {
      for (int64_t k : idx) out.status[k] = kDopri5MaxSteps;
      break;
    }
    const int64_t Kc = static_cast<int64_t>(idx.size());
    const bool par = Kc * P >= kParallelWork;
    (void)par;
    for (int64_t c = 0; c < Kc; ++c) {
      const int64_t k = idx[c];
      // land exactly on the next record time (keeps records exact and per-network independent)
      target[c] = s.grid[std::min(nxt[k], nT - 1)];
      const double x = np_min(h[k], np_max(target[c] - t[k], 0.0));
      hh[c] = x <= 0 ? h[k] : x;
      std::copy(th.begin() + k * P, th.begin() + (k + 1) * P, y.begin() + c * P);
      std::copy(k1.begin() + k * P, k1.begin() + (k + 1) * P, ks[0].begin() + c * P);
    }
    // stages 2..7: one kernel call on the stacked stage states of every running network
    for (int st = 1; st < 7; ++st) {
#pragma omp parallel for schedule(static) if (par)
      for (int64_t c = 0; c < Kc; ++c) {
        const double* yc = y.data() + c * P;
        T* row = stage.data() + c * P;
        bool fin = true;
        for (int64_t q = 0; q < P; ++q) {
          double sum = 0.0;  // Python's sum() starts at 0 and adds the nonzero terms in order
          for (int j = 0; j < st; ++j)
            if (kA[st][j] != 0) sum += kA[st][j] * ks[j][c * P + q];
          const double v = yc[q] - hh[c] * sum;
          fin = fin && std::isfinite(v);
          row[q] = static_cast<T>(v);
        }
        // a non-finite stage is replaced by y: the step will be rejected as bad anyway, and the
        // kernel should not see infinities
        if (!fin)
          for (int64_t q = 0; q < P; ++q) row[q] = static_cast<T>(yc[q]);
      }
      field.eval(stage.data(), Kc, 0, r_last.data(), ks[st].data());
      round_to<T>(r_last.data(), ks[st].data(), Kc, P);
    }
    // the 5th-order solution, the embedded error estimate and the acceptance test, per network
#pragma omp parallel for schedule(static) if (par)
    for (int64_t c = 0; c < Kc; ++c) {
      const double* yc = y.data() + c * P;
      double* yn = ynew.data() + c * P;
      for (int64_t q = 0; q < P; ++q) {
        double sum = 0.0;
        for (int j = 0; j < 7; ++j)
          if (kB[j] != 0) sum += kB[j] * ks[j][c * P + q];
        yn[q] = yc[q] - hh[c] * sum;
      }
      if (normalized) retract(lay, yn);
      double e2 = 0.0;
      bool finite = true, over = false;
      for (int64_t q = 0; q < P; ++q) {
        double sum = 0.0;
        for (int j = 0; j < 7; ++j)
          if (kE[j] != 0) sum += kE[j] * ks[j][c * P + q];
        const double ev = hh[c] * sum;
        const double sc = s.atol + s.rtol * np_max(std::fabs(yc[q]), std::fabs(yn[q]));
        e2 += (ev / sc) * (ev / sc);
        if (std::isfinite(yn[q])) over = over || std::fabs(yn[q]) > s.max_abs;
        else finite = false;
      }
      err[c] = std::sqrt(e2 / P);
      finite = finite && std::isfinite(err[c]);
      bad[c] = !finite || over;
      acc[c] = err[c] <= 1.0 && !bad[c];
    }
    acc_rows.clear();
    for (int64_t c = 0; c < Kc; ++c) {
      const int64_t k = idx[c];
      if (!acc[c]) {
        ++out.rejected[k];
        ++streak[k];
        continue;
      }
      acc_rows.push_back(c);
      double en = 0.0;  // ∫|G|^2 over the step by the b-weights of the stages
      for (int j = 0; j < 7; ++j) {
        if (kB[j] == 0) continue;
        double s2 = 0.0;
        for (int64_t q = 0; q < P; ++q) s2 += ks[j][c * P + q] * ks[j][c * P + q];
        en += kB[j] * s2;
      }
      energy[k] += hh[c] * en;
      std::copy(ynew.begin() + c * P, ynew.begin() + (c + 1) * P, th.begin() + k * P);
      t[k] = std::fabs(t[k] + hh[c] - target[c]) <= t_tol ? target[c] : t[k] + hh[c];
      ++out.accepted[k];
      streak[k] = 0;
    }
    if (!acc_rows.empty()) {
      const int64_t Na = static_cast<int64_t>(acc_rows.size());
      if (normalized) {
        // the retraction moved the point: the field at the retracted point (one more kernel call on
        // the accepted networks), not the 7th stage, starts the next step
        for (int64_t a = 0; a < Na; ++a) {
          const int64_t c = acc_rows[a];
          for (int64_t q = 0; q < P; ++q) stage[a * P + q] = static_cast<T>(ynew[c * P + q]);
        }
        std::vector<double>& g = ks[1];  // free until the next step
        field.eval(stage.data(), Na, 0, risk_a.data(), g.data());
        round_to<T>(risk_a.data(), g.data(), Na, P);
        for (int64_t a = 0; a < Na; ++a)
          std::copy(g.begin() + a * P, g.begin() + (a + 1) * P, k1.begin() + idx[acc_rows[a]] * P);
      } else {
        // FSAL: the 7th stage is G at y_new
        for (int64_t a = 0; a < Na; ++a) {
          const int64_t c = acc_rows[a];
          risk_a[a] = r_last[c];
          std::copy(ks[6].begin() + c * P, ks[6].begin() + (c + 1) * P, k1.begin() + idx[c] * P);
        }
      }
      for (int64_t a = 0; a < Na; ++a) {
        const int64_t k = idx[acc_rows[a]];
        record_due(k, risk_a[a], row_norm(k1.data() + k * P, P));
      }
    }
    // step size update: standard controller, safety 0.9, factor in [0.2, 5], no growth after a
    // rejection; then the give-up rules
    for (int64_t c = 0; c < Kc; ++c) {
      const int64_t k = idx[c];
      double fac = err[c] > 0 ? 0.9 * std::pow(np_max(err[c], 1e-300), -0.2) : 5.0;
      if (!std::isfinite(fac)) fac = 0.2;
      fac = std::min(std::max(fac, 0.2), 5.0);
      if (bad[c]) fac = 0.2;
      h[k] = hh[c] * (acc[c] ? std::min(fac, 5.0) : std::min(fac, 1.0));
      const bool stuck = streak[k] >= s.max_rejections, tiny = h[k] < s.min_step;
      if (bad[c] && (stuck || tiny)) out.status[k] = kDopri5Diverged;
      else if (stuck) out.status[k] = kDopri5MaxRejections;
      else if (tiny) out.status[k] = kDopri5MinStep;
      if (t[k] >= s.t_end - t_tol || out.status[k] != kDopri5Ok) done[k] = 1;
    }
  }
  for (int64_t q = 0; q < K * P; ++q) theta[q] = static_cast<T>(th[q]);
  out.evaluations = field.evaluations;
  if (s.progress) s.progress(s.t_end);
}

template void dopri5_run_cpu<float>(const Dopri5Spec&, float*, Dopri5Out&);
template void dopri5_run_cpu<double>(const Dopri5Spec&, double*, Dopri5Out&);

}  // namespace reluflow
