// The integrator loops: one kernel call per step (per stage for Heun/RK4) on all K networks, the
// parameter update, the divergence check and the records, all in C++.
//
// Bitwise contract with the Python driver (flows.py) for gradient descent: the gradient is rounded to
// theta's dtype, multiplied by the step size rounded to that dtype and subtracted (numpy's rules for
// `theta - lr * g` with a Python float lr), and -ffp-contract=off keeps that free of FMA.
#include "flow_cpu.h"

#include <cmath>
#include <vector>

#include "risk_grad_cpu.h"
#include "sampling_cpu.h"

namespace reluflow {

int64_t flow_num_records(int64_t steps, int64_t record_every) {
  return steps / record_every + 1 + (steps % record_every != 0 ? 1 : 0);
}

namespace {

// Removes from g the component along every hidden neuron's (w_i, b_i) (tangent projection).
template <class V>
void project_tangent(const Layout& lay, const V* theta, double* g) {
  for (int k = 0; k + 1 < lay.num_layers; ++k) {
    const int lo = lay.widths[k + 1], li = lay.widths[k];
    for (int i = 0; i < lo; ++i) {
      const V* W = theta + lay.w_offset[k] + static_cast<int64_t>(i) * li;
      double* gW = g + lay.w_offset[k] + static_cast<int64_t>(i) * li;
      const double b = theta[lay.b_offset[k] + i];
      double& gb = g[lay.b_offset[k] + i];
      double radial = 0.0;
      for (int j = 0; j < li; ++j) radial += gW[j] * static_cast<double>(W[j]);
      radial += gb * b;
      for (int j = 0; j < li; ++j) gW[j] -= radial * static_cast<double>(W[j]);
      gb -= radial * b;
    }
  }
}

// Renormalizes every hidden neuron's (w_i, b_i) to unit norm (the retraction).
template <class V>
void retract(const Layout& lay, V* theta) {
  for (int k = 0; k + 1 < lay.num_layers; ++k) {
    const int lo = lay.widths[k + 1], li = lay.widths[k];
    for (int i = 0; i < lo; ++i) {
      V* W = theta + lay.w_offset[k] + static_cast<int64_t>(i) * li;
      V& b = theta[lay.b_offset[k] + i];
      double s = static_cast<double>(b) * b;
      for (int j = 0; j < li; ++j) s += static_cast<double>(W[j]) * W[j];
      if (!(s > 0)) continue;
      const double inv = 1.0 / std::sqrt(s);
      for (int j = 0; j < li; ++j) W[j] = static_cast<V>(W[j] * inv);
      b = static_cast<V>(b * inv);
    }
  }
}

template <class V>
bool row_ok(const V* row, int64_t P, double max_abs) {
  for (int64_t p = 0; p < P; ++p) {
    const double v = static_cast<double>(row[p]);
    if (!std::isfinite(v) || std::fabs(v) > max_abs) return false;
  }
  return true;
}

}  // namespace

template <class T>
void flow_run_cpu(const FlowSpec& s, T* theta, FlowOut& out) {
  const int64_t K = s.K, P = s.lay.num_params;
  const int d = s.lay.widths[0], od = s.lay.widths[s.lay.num_layers];
  std::vector<double> xb, wb, yb;
  if (s.resample) {
    xb.resize(static_cast<size_t>(s.n * d));
    yb.resize(static_cast<size_t>(s.n * od));
    wb.assign(static_cast<size_t>(s.n), 1.0 / static_cast<double>(s.n));
  }
  RGProblem p;
  p.lay = s.lay;
  p.K = K;
  p.f32 = sizeof(T) == 4;
  p.N = s.resample ? s.n : s.N;
  p.x = s.resample ? xb.data() : s.x;
  p.w = s.resample ? wb.data() : s.w;
  p.y = s.resample ? yb.data() : s.y;

  std::vector<double> risk(K), last_risk(K, NAN), last_gn(K, NAN);
  const int stages = s.method == kFlowRK4 ? 4 : (s.method == kFlowHeun ? 2 : 1);
  std::vector<std::vector<double>> ks(stages, std::vector<double>(static_cast<size_t>(K * P)));
  std::vector<T> stage_theta(static_cast<size_t>(K * P));
  std::vector<double> stage_risk(K);
  static const double rk4_a[4] = {0.0, 0.5, 0.5, 1.0};
  static const double rk4_b[4] = {1.0 / 6, 2.0 / 6, 2.0 / 6, 1.0 / 6};
  int64_t rec = 0;

  auto evaluate = [&](const T* th, double* r, double* g) {
    p.theta = th;
    risk_and_grad_cpu(p, r, g);
    ++out.evaluations;
    if (s.normalized)
      for (int64_t k = 0; k < K; ++k) project_tangent(s.lay, th + k * P, g + k * P);
  };

  for (int64_t i = 0; i <= s.steps; ++i) {
    const int64_t n = s.start_step + i;
    if (s.resample) {
      mc_nodes_cpu(s.seed, static_cast<uint32_t>(n), s.n, s.dist, xb.data());
      for (int64_t j = 0; j < s.n; ++j) target_eval(s.target, xb.data() + j * d, yb.data() + j * od);
    }
    evaluate(theta, risk.data(), ks[0].data());
    bool any_active = false;
    for (int64_t k = 0; k < K; ++k) {
      if (!out.active[k]) continue;
      const double* g = ks[0].data() + k * P;
      double gn2 = 0.0;
      bool fin = std::isfinite(risk[k]);
      for (int64_t q = 0; q < P; ++q) {
        const double gq = static_cast<double>(static_cast<T>(g[q]));  // G in theta's dtype
        gn2 += gq * gq;
        fin = fin && std::isfinite(gq);
      }
      if (fin) {
        last_risk[k] = static_cast<double>(static_cast<T>(risk[k]));
        last_gn[k] = std::sqrt(gn2);
        any_active = true;
      } else {
        out.active[k] = 0;
      }
    }
    if (i % s.record_every == 0 || i == s.steps) {
      for (int64_t k = 0; k < K; ++k) {
        out.rec_risk[rec * K + k] = last_risk[k];
        out.rec_gnorm[rec * K + k] = last_gn[k];
        out.rec_energy[rec * K + k] = out.energy[k];
      }
      ++rec;
    }
    if (i == s.steps || !any_active) break;
    const double h = s.h[i];
    if (s.method == kFlowEuler) {
      const T ht = static_cast<T>(h);
      for (int64_t k = 0; k < K; ++k) {
        if (!out.active[k]) continue;
        T* row = stage_theta.data() + k * P;
        const T* th = theta + k * P;
        const double* g = ks[0].data() + k * P;
        for (int64_t q = 0; q < P; ++q) {
          const T step = ht * static_cast<T>(g[q]);
          row[q] = th[q] - step;
        }
        if (s.normalized) retract(s.lay, row);
        if (row_ok(row, P, s.max_abs)) {
          for (int64_t q = 0; q < P; ++q) theta[k * P + q] = row[q];
          out.energy[k] += h * last_gn[k] * last_gn[k];
        } else {
          out.active[k] = 0;
        }
      }
      continue;
    }
    // Heun / RK4: stages in float64, evaluated at theta's dtype
    for (int st = 1; st < stages; ++st) {
      const double a = s.method == kFlowRK4 ? rk4_a[st] : 1.0;
      for (int64_t q = 0; q < K * P; ++q)
        stage_theta[q] = static_cast<T>(static_cast<double>(theta[q]) - h * a * ks[st - 1][q]);
      evaluate(stage_theta.data(), stage_risk.data(), ks[st].data());
    }
    for (int64_t k = 0; k < K; ++k) {
      if (!out.active[k]) continue;
      T* row = stage_theta.data() + k * P;
      double en = 0.0;
      for (int64_t q = 0; q < P; ++q) {
        double incr = 0.0;
        for (int st = 0; st < stages; ++st) {
          const double b = s.method == kFlowRK4 ? rk4_b[st] : 0.5;
          incr += b * ks[st][k * P + q];
          en += b * ks[st][k * P + q] * ks[st][k * P + q];
        }
        row[q] = static_cast<T>(static_cast<double>(theta[k * P + q]) - h * incr);
      }
      if (s.normalized) retract(s.lay, row);
      if (row_ok(row, P, s.max_abs)) {
        for (int64_t q = 0; q < P; ++q) theta[k * P + q] = row[q];
        out.energy[k] += h * en;
      } else {
        out.active[k] = 0;
      }
    }
  }
  // networks not recorded at the end because the loop stopped early keep their last state
  for (; rec < flow_num_records(s.steps, s.record_every); ++rec)
    for (int64_t k = 0; k < K; ++k) {
      out.rec_risk[rec * K + k] = last_risk[k];
      out.rec_gnorm[rec * K + k] = last_gn[k];
      out.rec_energy[rec * K + k] = out.energy[k];
    }
}

template void flow_run_cpu<float>(const FlowSpec&, float*, FlowOut&);
template void flow_run_cpu<double>(const FlowSpec&, double*, FlowOut&);

}  // namespace reluflow
