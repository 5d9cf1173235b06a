// The integrator loops: one kernel call per step (per stage for Heun/RK4) on all K networks, the
// parameter update, the divergence check and the records, all in C++.
//
// Bitwise contract with the Python driver (flows.py) for gradient descent: the gradient is rounded to
// theta's dtype, multiplied by the step size rounded to that dtype and subtracted (numpy's rules for
// `theta - lr * g` with a Python float lr), and -ffp-contract=off keeps that free of FMA.
#include "cpu/flow_cpu.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "reluflow/finite.h"
#include "reluflow/manifold.h"
#include "reluflow/tableaux.h"
#include "cpu/parallel_policy.h"

namespace reluflow {

int64_t flow_num_records(int64_t steps, int64_t record_every) {
  return steps / record_every + 1 + (steps % record_every != 0 ? 1 : 0);
}


template <class T>
void flow_run_cpu(const FlowSpec& s, T* theta, FlowOut& out, T* rec_theta) {
  const Layout& lay = s.field.problem.lay;
  const int64_t K = s.K, P = lay.num_params;
  const bool normalized = s.field.normalized;
  Field<T> field(s.field);
  std::vector<double> risk(K), last_risk(K, NAN), last_gn(K, NAN), risk0(K, NAN);
  for (int64_t k = 0; k < K; ++k) {
    out.reason[k] = tableaux::kRunning;
    out.growth[k] = 0.0;
    out.rose[k] = 0;
  }
  // freezes network k for `why` (called by the thread that owns k)
  auto freeze = [&](int64_t k, int why) {
    out.active[k] = 0;
    out.reason[k] = static_cast<uint8_t>(why);
  };
  const tableaux::FixedTableau tab = tableaux::fixed_tableau(s.method);
  const int stages = tab.stages;
  std::vector<std::vector<double>> ks(stages, std::vector<double>(static_cast<size_t>(K * P)));
  std::vector<T> stage_theta(static_cast<size_t>(K * P));
  std::vector<double> stage_risk(K);
  int64_t rec = 0;
  // the next record: every network's last risk, |G| and energy (and theta: a frozen network's last)
  auto record = [&]() {
    for (int64_t k = 0; k < K; ++k) {
      out.rec_risk[rec * K + k] = last_risk[k];
      out.rec_gnorm[rec * K + k] = last_gn[k];
      out.rec_energy[rec * K + k] = out.energy[k];
    }
    if (rec_theta != nullptr) std::copy(theta, theta + K * P, rec_theta + rec * K * P);
    ++rec;
  };
  using clock = std::chrono::steady_clock;
  auto last_report = clock::now();

  ThreadTuner tuner;
  const bool par = K > 1 && K * P >= kMinParallelFlowUpdate;
  for (int64_t i = 0; i <= s.steps; ++i) {
    if (i > 0) tuner.end(i - 1);  // a step's time runs to the start of the next one
    tuner.begin(i);
    if (s.progress && i > 0 && clock::now() - last_report > std::chrono::milliseconds(250)) {
      if (s.progress(i)) {  // Ctrl-C: return the state after i steps and the records so far
        out.interrupted = true;
        out.steps_done = i;
        break;
      }
      last_report = clock::now();
    }
    const int64_t n = s.start_step + i;
    field.eval(theta, K, n, risk.data(), ks[0].data());
    bool any_active = false;
    // the per-network passes below are independent across networks (each network's sums in a fixed
    // order): threads change nothing but the speed (parallel_policy.h)
#pragma omp parallel for schedule(static) reduction(|| : any_active) if (par)
    for (int64_t k = 0; k < K; ++k) {
      if (!out.active[k]) continue;
      const double* g = ks[0].data() + k * P;
      double gn2 = 0.0;
      bool gfin = true;
      for (int64_t q = 0; q < P; ++q) {
        const double gq = static_cast<double>(static_cast<T>(g[q]));  // G in theta's dtype
        gn2 += gq * gq;
        gfin = gfin && is_finite(gq);
      }
      const double r = static_cast<double>(static_cast<T>(risk[k]));  // the risk in theta's dtype
      if (i == 0) risk0[k] = r;
      int why = tableaux::risk_reason(r, risk0[k], s.max_growth);
      if (why == tableaux::kRiskNotFinite) {
        freeze(k, why);  // the records keep its last finite risk
        continue;
      }
      if (!gfin) why = tableaux::kGradNotFinite;
      if (why != tableaux::kGradNotFinite) {
        if (s.rise_tol >= 0 && i > 0 && r > last_risk[k] * (1.0 + s.rise_tol)) out.rose[k] = 1;
        // a blown-up risk is recorded (the risk of the parameters the network is frozen at)
        last_risk[k] = r;
        last_gn[k] = std::sqrt(gn2);
      }
      if (why == tableaux::kRunning) {
        any_active = true;
      } else {
        freeze(k, why);
        if (why == tableaux::kRiskGrew) out.growth[k] = r / risk0[k];
      }
    }
    if (i % s.record_every == 0 || i == s.steps) record();
    if (i == s.steps || !any_active) break;
    const double h = s.h_len == 1 ? s.h[0] : s.h[i];
    if (s.method == kFlowEuler) {
      const T ht = static_cast<T>(h);
#pragma omp parallel for schedule(static) if (par)
      for (int64_t k = 0; k < K; ++k) {
        if (!out.active[k]) continue;
        T* row = stage_theta.data() + k * P;
        const T* th = theta + k * P;
        const double* g = ks[0].data() + k * P;
        for (int64_t q = 0; q < P; ++q) {
          const T step = ht * static_cast<T>(g[q]);
          row[q] = th[q] - step;
        }
        if (normalized) retract(lay, row);
        const int why = tableaux::params_reason(row, P, s.max_abs);
        if (why == tableaux::kRunning) {
          for (int64_t q = 0; q < P; ++q) theta[k * P + q] = row[q];
          out.energy[k] += h * last_gn[k] * last_gn[k];
        } else {
          freeze(k, why);
        }
      }
      continue;
    }
    // Heun / RK4: stages in float64, evaluated at theta's dtype
    for (int st = 1; st < stages; ++st) {
      const double a = tab.a[st];
#pragma omp parallel for schedule(static) if (par)
      for (int64_t q = 0; q < K * P; ++q)
        stage_theta[q] = static_cast<T>(tableaux::fixed_stage_point(static_cast<double>(theta[q]), h, a, ks[st - 1][q]));
      field.eval(stage_theta.data(), K, n, stage_risk.data(), ks[st].data());
    }
#pragma omp parallel for schedule(static) if (par)
    for (int64_t k = 0; k < K; ++k) {
      if (!out.active[k]) continue;
      T* row = stage_theta.data() + k * P;
      double en = 0.0;
      for (int64_t q = 0; q < P; ++q) {
        const double incr = tableaux::fixed_increment(tab, [&](int st) { return ks[st][k * P + q]; }, &en);
        row[q] = static_cast<T>(static_cast<double>(theta[k * P + q]) - h * incr);
      }
      if (normalized) retract(lay, row);
      const int why = tableaux::params_reason(row, P, s.max_abs);
      if (why == tableaux::kRunning) {
        for (int64_t q = 0; q < P; ++q) theta[k * P + q] = row[q];
        out.energy[k] += h * en;
      } else {
        freeze(k, why);
      }
    }
  }
  out.evaluations = field.evaluations;
  if (!out.interrupted) {
    out.steps_done = s.steps;
    if (s.progress && s.progress(s.steps)) out.interrupted = true;
    // networks not recorded at the end because the loop stopped early keep their last state
    while (rec < flow_num_records(s.steps, s.record_every)) record();
  }
  out.records = rec;
}

template void flow_run_cpu<float>(const FlowSpec&, float*, FlowOut&, float*);
template void flow_run_cpu<double>(const FlowSpec&, double*, FlowOut&, double*);

}  // namespace reluflow
