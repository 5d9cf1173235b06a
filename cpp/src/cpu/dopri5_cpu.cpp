// Dormand–Prince 5(4) with per-network error control (see dopri5_cpu.h).
//
// This is a line-by-line port of `_dopri5` in python/reluflow/flows.py, which stays the reference:
// same tableau, same sums in the same order, same controller and the same status rules, so that the
// two drivers agree to rounding (the only differences are numpy's pairwise sums in the error norm,
// the gradient norm and the energy). numpy semantics that matter are reproduced on purpose:
// np.minimum/np.maximum propagate NaN (a network whose first gradient is NaN gets a NaN step and is
// given up by the rejection rules, exactly as in Python), and risk and gradient are rounded to
// theta's dtype (Problem.risk_and_grad returns them in theta's dtype).
#include "cpu/dopri5_cpu.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

#include "reluflow/finite.h"
#include "reluflow/manifold.h"
#include "reluflow/tableaux.h"
#include "cpu/parallel_policy.h"

namespace reluflow {

namespace {

// Dormand–Prince 5(4) (reluflow/tableaux.h, flows.py _DP_A, _DP_B, _DP_E = b - b_hat).
constexpr tableaux::Dopri5Tableau kDP = tableaux::dopri5_tableau();

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

}  // namespace

template <class T>
void dopri5_run_cpu(const Dopri5Spec& s, T* theta, Dopri5Out& out, T* rec_theta) {
  const Layout& lay = s.field.problem.lay;
  const int64_t K = s.K, P = lay.num_params, nT = s.T;
  const bool normalized = s.field.normalized;
  const double t_tol = 1e-12 * s.t_end;  // times within this of a grid time / t_end count as there
  Field<T> field(s.field);

  for (int64_t q = 0; q < nT * K; ++q) out.rec_risk[q] = out.rec_gnorm[q] = out.rec_energy[q] = NAN;
  if (rec_theta != nullptr) std::fill(rec_theta, rec_theta + nT * K * P, std::numeric_limits<T>::quiet_NaN());
  std::vector<double> th(static_cast<size_t>(K * P)), k1(static_cast<size_t>(K * P));
  std::vector<double> t(K, 0.0), h(K), energy(K, 0.0), risk(K), risk0(K);
  std::vector<int64_t> nxt(K, 0), streak(K, 0);
  std::vector<uint8_t> done(K, 0);
  for (int64_t k = 0; k < K; ++k) {
    out.status[k] = kDopri5Ok;
    out.accepted[k] = out.rejected[k] = 0;
    out.reason[k] = tableaux::kRunning;
    out.growth[k] = 0.0;
  }
  for (int64_t q = 0; q < K * P; ++q) th[q] = static_cast<double>(theta[q]);

  // records every grid time network k has reached (its time t[k]), with its current values
  auto record_due = [&](int64_t k, double r, double gn) {
    while (nxt[k] < nT && s.grid[nxt[k]] <= t[k] + t_tol) {
      const int64_t j = nxt[k];
      out.rec_risk[j * K + k] = r;
      out.rec_gnorm[j * K + k] = gn;
      out.rec_energy[j * K + k] = energy[k];
      if (rec_theta != nullptr)
        for (int64_t q = 0; q < P; ++q) rec_theta[(j * K + k) * P + q] = static_cast<T>(th[k * P + q]);
      ++nxt[k];
    }
  };

  field.eval(theta, K, 0, risk.data(), k1.data());
  round_to<T>(risk.data(), k1.data(), K, P);
  for (int64_t k = 0; k < K; ++k) {
    h[k] = tableaux::dopri5_initial_step(s.h0, th.data() + k * P, k1.data() + k * P, P, s.atol, s.rtol,
                                         s.t_end);
    record_due(k, risk[k], row_norm(k1.data() + k * P, P));
    risk0[k] = risk[k];
    // a network whose starting risk is not finite has nowhere to go
    if (!is_finite(risk[k])) {
      out.status[k] = kDopri5Diverged;
      out.reason[k] = tableaux::kRiskNotFinite;
      done[k] = 1;
    }
  }

  // work arrays sized for the whole batch; the first Kc rows hold the running networks
  std::vector<int64_t> idx;
  idx.reserve(K);
  std::vector<double> y(static_cast<size_t>(K * P)), ynew(static_cast<size_t>(K * P));
  std::vector<std::vector<double>> ks(7, std::vector<double>(static_cast<size_t>(K * P)));
  std::vector<T> stage(static_cast<size_t>(K * P));
  std::vector<double> hh(K), target(K), err(K), r_last(K), risk_a(K);
  std::vector<uint8_t> acc(K), bad(K), bad_why(K), risk_why(K);
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
      if (s.progress(t_min)) {  // Ctrl-C: every running network keeps its state at its time
        out.interrupted = true;
        for (int64_t k : idx) out.status[k] = kDopri5Interrupted;
        break;
      }
      last_report = clock::now();
    }
    if (++iters > s.max_steps) {
      for (int64_t k : idx) out.status[k] = kDopri5MaxSteps;
      break;
    }
    const int64_t Kc = static_cast<int64_t>(idx.size());
    const bool par = Kc * P >= kMinParallelDopri5Update;
    (void)par;
    for (int64_t c = 0; c < Kc; ++c) {
      const int64_t k = idx[c];
      // land exactly on the next record time (keeps records exact and per-network independent)
      target[c] = s.grid[std::min(nxt[k], nT - 1)];
      hh[c] = tableaux::dopri5_step_to(h[k], t[k], target[c]);
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
          const double sum = tableaux::tableau_sum(kDP.a[st], st, [&](int j) { return ks[j][c * P + q]; });
          const double v = yc[q] - hh[c] * sum;
          fin = fin && is_finite(v);
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
        const double sum = tableaux::tableau_sum(kDP.b, 7, [&](int j) { return ks[j][c * P + q]; });
        yn[q] = yc[q] - hh[c] * sum;
      }
      if (normalized) retract(lay, yn);
      double e2 = 0.0;
      bool finite = true, over = false;
      for (int64_t q = 0; q < P; ++q) {
        const double sum = tableaux::tableau_sum(kDP.e, 7, [&](int j) { return ks[j][c * P + q]; });
        e2 += tableaux::dopri5_err_term(hh[c] * sum, yc[q], yn[q], s.atol, s.rtol);
        if (is_finite(yn[q])) over = over || std::fabs(yn[q]) > s.max_abs;
        else finite = false;
      }
      err[c] = tableaux::rms_norm(e2, P);
      // why the step is bad, in the order of tableaux::params_reason; a NaN error estimate alone
      // comes from a non-finite stage gradient
      bad_why[c] = !finite ? tableaux::kParamsNotFinite
                   : over  ? tableaux::kParamsOverMaxAbs
                   : !is_finite(err[c]) ? tableaux::kGradNotFinite
                                        : tableaux::kRunning;
      finite = finite && is_finite(err[c]);
      bad[c] = !finite || over;
      risk_why[c] = tableaux::kRunning;
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
        if (kDP.b[j] == 0) continue;
        double s2 = 0.0;
        for (int64_t q = 0; q < P; ++q) s2 += ks[j][c * P + q] * ks[j][c * P + q];
        en += kDP.b[j] * s2;
      }
      energy[k] += hh[c] * en;
      std::copy(ynew.begin() + c * P, ynew.begin() + (c + 1) * P, th.begin() + k * P);
      t[k] = tableaux::dopri5_advance(t[k], hh[c], target[c], t_tol);
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
        risk_why[acc_rows[a]] = static_cast<uint8_t>(tableaux::risk_reason(risk_a[a], risk0[k], s.max_growth));
        if (risk_why[acc_rows[a]] == tableaux::kRiskGrew) out.growth[k] = risk_a[a] / risk0[k];
      }
    }
    // step size update (tableaux::dopri5_step_factor), then the give-up rules
    for (int64_t c = 0; c < Kc; ++c) {
      const int64_t k = idx[c];
      h[k] = hh[c] * tableaux::dopri5_step_factor(err[c], acc[c], bad[c]);
      const bool stuck = streak[k] >= s.max_rejections, tiny = h[k] < s.min_step;
      if (bad[c] && (stuck || tiny)) {
        out.status[k] = kDopri5Diverged;
        out.reason[k] = bad_why[c];
      } else if (stuck) {
        out.status[k] = kDopri5MaxRejections;
      } else if (tiny) {
        out.status[k] = kDopri5MinStep;
      }
      // a blown-up risk at the accepted state ends the network whatever the step size says: frozen there
      if (risk_why[c] != tableaux::kRunning) {
        out.status[k] = kDopri5Diverged;
        out.reason[k] = risk_why[c];
      }
      if (t[k] >= s.t_end - t_tol || out.status[k] != kDopri5Ok) done[k] = 1;
    }
  }
  for (int64_t q = 0; q < K * P; ++q) theta[q] = static_cast<T>(th[q]);
  out.evaluations = field.evaluations;
  for (int64_t k = 0; k < K; ++k) out.t[k] = t[k];
  if (!out.interrupted && s.progress && s.progress(s.t_end)) out.interrupted = true;
}

template void dopri5_run_cpu<float>(const Dopri5Spec&, float*, Dopri5Out&, float*);
template void dopri5_run_cpu<double>(const Dopri5Spec&, double*, Dopri5Out&, double*);

}  // namespace reluflow
