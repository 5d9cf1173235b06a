// One gradient-descent step of one network, as functions of explicit thread indices (RF_HD): the
// per-network logic of the update kernel of cuda/src/gd_loop.cu (one block of kThreads threads per
// network) AND of its host harness (cpu/gd_harness.cpp, bound as _core._harness_gd_step), which runs
// the same phases block after block, thread after thread, so that the step is tested without a GPU.
//
// At local iteration i of a run (state theta_i evaluated: risk (K,), grad (K, P) float64), for a
// network k that is still active, the watch of flow_cpu.cpp's loop (tableaux.h's codes):
//   G_q = T(grad_q), 0 for a frozen parameter (frozen (P,) mask); |G| = sqrt(sum_q G_q^2);
//   r = T(risk_k) (theta's dtype); at i == 0 r is the run's starting risk r0;
//   risk_reason(r, r0, max_growth): not finite -> frozen (records keep the last finite risk);
//   a non-finite G with a finite risk -> frozen for kGradNotFinite (records unchanged);
//   else (rise_tol >= 0, i > 0: the flows' energy identity) rose = 1 when r > last risk (1 + rise_tol),
//   then the records' last risk and |G| become r and |G|; a risk above max_growth r0 -> frozen
//   (kRiskGrew, growth = r / r0);
// then, unless i == steps (the last state is only evaluated), the update of a running network:
//   new_q = theta_q - T(h) * G_q (in T, no FMA: --fmad=false / -ffp-contract=off, as numpy's
//   `theta - lr * g`); params_reason(new): not finite / beyond max_abs -> frozen at theta_i, else
//   theta = new and energy += h |G|^2.
// stop_iter[k]: the first iteration whose watch sees the network frozen (i for a watch freeze, i + 1
// for an update freeze), -1 while it runs: the loop derives the CPU loop's evaluation count from it.
//
// The only difference from flow_cpu.cpp: sum_q G_q^2 is taken by a block (threads strided over q,
// then a tree in a fixed order) instead of in q order, so |G| differs from the CPU's in the last bits
// (it depends on P only: a network's bits do not depend on K). The new parameters are computed twice
// (once for the test, once to store them): the same operations, so the same bits, and no scratch row.
#pragma once
#include <math.h>
#include <stdint.h>

#include "finite.h"
#include "rf_hd.h"
#include "risk_grad_grid.h"
#include "tableaux.h"

namespace reluflow {
namespace gd {

constexpr int kThreads = grid::kThreads;  // threads per network's block (a power of two: the trees)
constexpr int kWidth = 2;                 // doubles per thread in the block's trees

// Per-network state of a run (K,) each: device memory in the loop, host memory in the harness.
struct State {
  uint8_t* active = nullptr;   // 1 running, 0 frozen
  uint8_t* reason = nullptr;   // tableaux::StopReason of a frozen network
  double* growth = nullptr;    // r / r0 of a network frozen for kRiskGrew, else 0
  double* risk0 = nullptr;     // the run's starting risk (theta's dtype)
  double* last_risk = nullptr; // what the records show: the last risk seen (NaN before any)
  double* last_gn = nullptr;   // and the last |G|
  double* energy = nullptr;    // sum of h |G|^2 over the accepted steps
  int64_t* stop_iter = nullptr;
  uint8_t* rose = nullptr;     // the risk rose from an iteration to the next (null: not watched)
};

// One step for K networks: theta (K, P) in/out; risk (K,), grad (K, P) of theta_i; record slot pointers
// (null: iteration i is not recorded) receive, per network, theta_i (before the update) and the last
// risk, |G| and energy after the watch (before the update's energy).
template <class T>
struct StepArgs {
  int64_t K = 0, P = 0;
  int64_t i = 0;        // local iteration
  bool update = true;   // i < steps
  double h = 0.0;       // lr of this step
  double max_abs = 1e8, max_growth = 1e6;
  double rise_tol = -1.0;  // >= 0: flag a rise of the risk beyond this relative amount (st.rose)
  const uint8_t* frozen = nullptr;  // (P,) or null
  T* theta = nullptr;
  const double* risk = nullptr;
  const double* grad = nullptr;
  State st{};
  double* rec_risk = nullptr;   // (K,) slot
  double* rec_gn = nullptr;     // (K,)
  double* rec_energy = nullptr; // (K,)
  T* rec_theta = nullptr;       // (K, P) slot
};

// G_q of network k: grad rounded to theta's dtype, 0 where frozen.
template <class T>
RF_HD double grad_in_dtype(const StepArgs<T>& a, int64_t k, int64_t q) {
  if (a.frozen && a.frozen[q]) return 0.0;
  return static_cast<double>(static_cast<T>(a.grad[k * a.P + q]));
}

// Phase 1, thread t: its strided share q = t, t + kThreads, ... of sum G_q^2 and of the count of
// non-finite G_q into acc (kWidth); copies theta_i to the record slot when there is one.
template <class T>
RF_HD void grad_thread(const StepArgs<T>& a, int64_t k, int t, double* acc) {
  acc[0] = 0.0;
  acc[1] = 0.0;
  for (int64_t q = t; q < a.P; q += kThreads) {
    if (a.rec_theta) a.rec_theta[k * a.P + q] = a.theta[k * a.P + q];
    const double g = grad_in_dtype(a, k, q);
    acc[0] += g * g;
    if (!is_finite(g)) acc[1] += 1.0;
  }
}

// Phase 2, one thread, after the tree of phase 1 (sh[0] = sum G^2, sh[1] = non-finite count): the
// watch and the records; returns whether the network is to be updated.
template <class T>
RF_HD bool watch_block(const StepArgs<T>& a, int64_t k, const double* sh) {
  const State& s = a.st;
  bool go = false;
  if (s.active[k]) {
    const double r = static_cast<double>(static_cast<T>(a.risk[k]));
    if (a.i == 0) s.risk0[k] = r;
    int why = tableaux::risk_reason(r, s.risk0[k], a.max_growth);
    if (why != tableaux::kRiskNotFinite) {
      if (sh[1] > 0) why = tableaux::kGradNotFinite;
      if (why != tableaux::kGradNotFinite) {
        if (s.rose && a.rise_tol >= 0 && a.i > 0 && r > s.last_risk[k] * (1.0 + a.rise_tol)) s.rose[k] = 1;
        s.last_risk[k] = r;
        s.last_gn[k] = sqrt(sh[0]);
      }
    }
    if (why == tableaux::kRunning) {
      go = a.update;
    } else {
      s.active[k] = 0;
      s.reason[k] = static_cast<uint8_t>(why);
      s.stop_iter[k] = a.i;
      if (why == tableaux::kRiskGrew) s.growth[k] = r / s.risk0[k];
    }
  }
  if (a.rec_risk) {
    a.rec_risk[k] = s.last_risk[k];
    a.rec_gn[k] = s.last_gn[k];
    a.rec_energy[k] = s.energy[k];
  }
  return go;
}

// The new value of parameter q of network k (the same bits each time it is computed).
template <class T>
RF_HD T new_param(const StepArgs<T>& a, int64_t k, int64_t q) {
  const T ht = static_cast<T>(a.h);
  const T g = (a.frozen && a.frozen[q]) ? T(0) : static_cast<T>(a.grad[k * a.P + q]);
  const T step = ht * g;
  return a.theta[k * a.P + q] - step;
}

// params_reason's tests of one new parameter value v, counted for a block's tree: acc[0] not finite,
// acc[1] finite but beyond max_abs. Shared by every update of the device loops (this file, rk_step.h,
// normalized_step.h).
RF_HD void count_param(double v, double max_abs, double* acc) {
  if (!is_finite(v)) acc[0] += 1.0;
  else if (fabs(v) > max_abs) acc[1] += 1.0;
}

// The update's verdict for network k at local iteration i from the tree's counts sh[0], sh[1]
// (count_param): accepted (energy += energy_term; returns true: store) or frozen at theta_i with the
// reason (stop_iter = i + 1; returns false).
RF_HD bool accept_or_freeze(const State& s, int64_t k, int64_t i, const double* sh, double energy_term) {
  const int why = sh[0] > 0 ? tableaux::kParamsNotFinite : sh[1] > 0 ? tableaux::kParamsOverMaxAbs : tableaux::kRunning;
  if (why == tableaux::kRunning) {
    s.energy[k] += energy_term;
    return true;
  }
  s.active[k] = 0;
  s.reason[k] = static_cast<uint8_t>(why);
  s.stop_iter[k] = i + 1;
  return false;
}

// Phase 3, thread t (only when phase 2 said go): its share of the counts of non-finite new parameters
// (acc[0]) and of finite ones beyond max_abs (acc[1]): params_reason's tests.
template <class T>
RF_HD void test_thread(const StepArgs<T>& a, int64_t k, int t, double* acc) {
  acc[0] = 0.0;
  acc[1] = 0.0;
  for (int64_t q = t; q < a.P; q += kThreads) count_param(static_cast<double>(new_param(a, k, q)), a.max_abs, acc);
}

// Phase 4, one thread, after the tree of phase 3: accept (energy) or freeze; returns whether to store.
template <class T>
RF_HD bool accept_block(const StepArgs<T>& a, int64_t k, const double* sh) {
  return accept_or_freeze(a.st, k, a.i, sh, a.h * a.st.last_gn[k] * a.st.last_gn[k]);
}

// Phase 5, thread t (only when phase 4 accepted): theta = new.
template <class T>
RF_HD void store_thread(const StepArgs<T>& a, int64_t k, int t) {
  for (int64_t q = t; q < a.P; q += kThreads) a.theta[k * a.P + q] = new_param(a, k, q);
}

// ---- host-side planning of the loop's blocks (no device code: tested through the harness) --------

// Whether local iteration i (0..steps) is recorded: i % record_every == 0 or i == steps.
inline bool is_record(int64_t i, int64_t steps, int64_t record_every) {
  return i % record_every == 0 || i == steps;
}

// Records among local iterations [i0, i1).
inline int64_t records_in(int64_t i0, int64_t i1, int64_t steps, int64_t record_every) {
  if (i1 <= i0) return 0;
  // multiples of record_every in [i0, i1), plus `steps` when it lies there and is not a multiple
  const int64_t mult = (i1 - 1) / record_every - (i0 + record_every - 1) / record_every + 1;
  const bool last = steps >= i0 && steps < i1 && steps % record_every != 0;
  return mult + (last ? 1 : 0);
}

// The end of the block of iterations that starts at i0 (< steps + 1): about `want` iterations (>= 1),
// never past steps + 1, and with at most `slots` (>= 2) records in it.
inline int64_t block_end(int64_t i0, int64_t want, int64_t steps, int64_t record_every, int64_t slots) {
  const int64_t cap = (slots - 1) * record_every;  // ceil(b / re) + 1 <= slots for b <= cap
  int64_t b = want < 1 ? 1 : want;
  if (b > cap) b = cap;
  const int64_t end = i0 + b;
  return end > steps + 1 ? steps + 1 : end;
}

}  // namespace gd
}  // namespace reluflow
