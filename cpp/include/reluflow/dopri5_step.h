// One Dormand–Prince 5(4) iteration of the device dopri5 loop, per network, as functions of explicit
// thread indices (RF_HD): the per-network logic of the kernels of cuda/src/dopri5_loop.cu AND of their
// host harness (cpu/gd_harness.cpp, bound as _core._harness_dp), which runs the same phases block after
// block, thread after thread, so that the loop is tested without a GPU.
//
// cpu/dopri5_cpu.cpp is the reference, step for step (tableaux.h's tableau, error norm, controller,
// landing on the record grid, statuses). Per network k the loop keeps its float64 state y (K, P),
// time t, step h, energy, next record index, rejection streak and status; k[0] (K, P) holds the field
// at y (k1; FSAL: the 7th stage of an accepted step), k[1..6] the stages. The field values are the
// dense kernels' raw float64 output: k_at rounds them to theta's dtype and zeroes frozen parameters at
// every read (the cpu Field's round_to<T> and frozen mask; both idempotent).
//
// Phases of iteration `it` (1-based; the CPU's `iters`):
//   begin (one thread per network): it > max_steps -> every running network "max_steps" (done);
//     else target = grid[min(nxt, T-1)], hh = dopri5_step_to(h, t, target);
//   stage s = 1..6 (a block per network): stage_q = T(y_q - hh sum_j a_sj k_j,q), the whole row
//     replaced by T(y) when a component is not finite (two passes: count, then write: the same bits);
//     the loop then evaluates k[s] at the stage points (the networks that are done keep their row);
//   finish (a block per running network): y_new = y - hh sum b_j k_j, the error norm
//     rms(dopri5_err_term(hh sum e_j k_j, y, y_new)), the finiteness / max_abs tests, the energy
//     terms sum_q k_j,q^2 (j with b_j != 0) and |k_6|^2 by a block tree; thread 0 accepts or rejects,
//     advances t, writes the records reached (risk = T(risk of the 7th stage), |G| = |k_6|), the risk
//     test, the controller and the give-up rules (dopri5_cpu.cpp's order); every thread then stores
//     y_new, the records' theta rows and k[0] = k[6] (FSAL) of an accepted network.
// Normalized (dopri5_cpu.cpp with FieldSpec::normalized; manifold.h): the loop projects every dense
// evaluation on the tangent space at the evaluated points (normalized_step.h's project_entry), and the
// finish splits in two around one more evaluation:
//   finish (a block per running network): y_new = y - hh sum b_j k_j into ynew, every hidden neuron of
//     it retracted to the unit sphere, then the error norm and the tests on the retracted y_new (as
//     the CPU); thread 0 decides (decide_block: counters, energy, time) and leaves the outcome in
//     `pending`; an accepted network stores y = y_new and the stage row T(y_new);
//   the loop evaluates the field at the stage rows (and projects it) into k[1] (free until the next
//     iteration's first stage);
//   conclude (a block per network with an outcome pending): an accepted network takes k[0] = that
//     field (not the 7th stage: the retraction moved the point), |G| of it by a block tree, its risk
//     for the records and the risk test; then the controller and the give-up rules (conclude_block).
//   The evaluation count is the CPU's: the extra evaluation counts in an iteration where some network
//   was accepted (any_accepted, tallied by the next begin).
// Differences from dopri5_cpu.cpp: the error norm, the energy and the records' |G| sum over q by a block
// tree (their last bits; a decision err <= 1 exactly at the boundary could differ). The state update
// is the same operations in the same order (no FMA).
#pragma once
#include <math.h>
#include <stdint.h>

#include "finite.h"
#include "gd_step.h"
#include "layout.h"
#include "manifold.h"
#include "rf_hd.h"
#include "risk_grad_grid.h"
#include "tableaux.h"

namespace reluflow {
namespace dp {

constexpr int kThreads = gd::kThreads;  // threads per network's block (a power of two: the trees)
constexpr int kWidth = 9;               // finish's tree: e2, non-finite, over, 5 energy sums, |k6|^2
constexpr int kStages = 7;

// Dopri5Status codes of cpu/dopri5_cpu.h (repeated: that header is not device code)
enum Status : int32_t { kOk = 0, kDiverged = 1, kMaxRejections = 2, kMinStep = 3, kMaxSteps = 4, kInterrupted = 5 };

// Per-network state (K,) each: device memory in the loop, host memory in the harness.
struct State {
  double* t = nullptr;
  double* h = nullptr;       // the next step size to try
  double* energy = nullptr;
  double* risk0 = nullptr;   // starting risk (theta's dtype)
  double* growth = nullptr;  // r / r0 of a network diverged for kRiskGrew
  double* hh = nullptr;      // this iteration's step (begin -> finish)
  double* target = nullptr;  // this iteration's record time
  int64_t* nxt = nullptr;    // next record index
  int64_t* streak = nullptr; // consecutive rejections
  int64_t* accepted = nullptr;
  int64_t* rejected = nullptr;
  int32_t* status = nullptr; // Status
  uint8_t* done = nullptr;   // 1: finished (any status), left alone
  uint8_t* reason = nullptr; // tableaux::StopReason
  // normalized only: the outcome finish leaves for conclude
  uint8_t* pending = nullptr;  // kNone, or kPending | (accepted ? kAccepted : 0) | (bad ? kBad : 0)
  uint8_t* bad_why = nullptr;  // the bad step's reason
  double* err = nullptr;       // the error norm
  int32_t* any_accepted = nullptr;  // (1,): a network was accepted this iteration (the extra evaluation)
  int64_t* extra_evals = nullptr;   // (1,): iterations with the extra evaluation, tallied by begin
};

enum Pending : uint8_t { kNone = 0, kPending = 1, kAccepted = 2, kBad = 4 };

// The outcome of a step (decide_block).
struct Decision {
  double err = 0.0;
  bool acc = false, bad = false;
  int bad_why = tableaux::kRunning;
};

template <class T>
struct Args {
  int64_t K = 0, P = 0, nT = 0;
  const double* grid = nullptr;  // (nT,) record times
  double t_end = 1.0, t_tol = 0.0, h0 = 0.0, rtol = 1e-6, atol = 1e-9;
  double max_abs = 1e8, max_growth = 1e6, min_step = 1e-14;
  int64_t max_steps = 1000000, max_rejections = 50;
  bool normalized = false;          // the normalized flow (lay, H and ynew then set)
  Layout lay{};
  int64_t H = 0;                    // hidden neurons per network (manifold.h's hidden_neurons)
  double* ynew = nullptr;           // (K, P) float64: the retracted y_new (normalized only)
  const uint8_t* frozen = nullptr;  // (P,) or null
  const T* theta0 = nullptr;        // (K, P): the start (init only)
  double* y = nullptr;              // (K, P) float64 state
  double* k[kStages] = {};          // (K, P) each: k[0] = field at y, k[1..6] the stages (raw)
  const double* risk = nullptr;     // (K,): raw risk of the last evaluation (init: at theta0; finish: 7th stage)
  T* stage = nullptr;               // (K, P): the stage points
  State st{};
  double* rec_risk = nullptr;       // (nT, K)
  double* rec_gn = nullptr;         // (nT, K)
  double* rec_energy = nullptr;     // (nT, K)
  T* rec_theta = nullptr;           // (nT, K, P) or null
};

// k_j of parameter q of network k in theta's dtype, 0 where frozen.
template <class T>
RF_HD double k_at(const Args<T>& a, int j, int64_t k, int64_t q) {
  if (a.frozen && a.frozen[q]) return 0.0;
  return static_cast<double>(static_cast<T>(a.k[j][k * a.P + q]));
}

template <class T>
RF_HD double risk_in_dtype(const Args<T>& a, int64_t k) {
  return static_cast<double>(static_cast<T>(a.risk[k]));
}

// ---- init (a block per network; after the evaluation at theta0 into k[0] and risk) ------------------

// Thread t: y = theta0, stage = theta0, k[0] rounded and masked in place (what the CPU's k1 holds).
template <class T>
RF_HD void init_thread(const Args<T>& a, int64_t k, int t) {
  for (int64_t q = t; q < a.P; q += kThreads) {
    const int64_t e = k * a.P + q;
    a.y[e] = static_cast<double>(a.theta0[e]);
    a.stage[e] = a.theta0[e];
    a.k[0][e] = k_at(a, 0, k, q);
  }
}

// Thread 0, after init_thread's barrier: the initial step (Hairer–Wanner, in q order: bitwise the
// CPU's), the records at t = 0 (|G| in q order, as row_norm; their theta rows: record_rows_thread over
// [0, nxt)), risk0, a non-finite start.
template <class T>
RF_HD void init_block(const Args<T>& a, int64_t k) {
  const State& s = a.st;
  const double* yk = a.y + k * a.P;
  const double* gk = a.k[0] + k * a.P;
  s.t[k] = 0.0;
  s.energy[k] = 0.0;
  s.growth[k] = 0.0;
  s.nxt[k] = 0;
  s.streak[k] = s.accepted[k] = s.rejected[k] = 0;
  s.status[k] = kOk;
  s.reason[k] = tableaux::kRunning;
  s.done[k] = 0;
  s.h[k] = tableaux::dopri5_initial_step(a.h0, yk, gk, a.P, a.atol, a.rtol, a.t_end);
  double g2 = 0.0;
  for (int64_t q = 0; q < a.P; ++q) g2 += gk[q] * gk[q];
  const double r = risk_in_dtype(a, k);
  s.risk0[k] = r;
  const double gn = sqrt(g2);
  while (s.nxt[k] < a.nT && a.grid[s.nxt[k]] <= s.t[k] + a.t_tol) {
    const int64_t j = s.nxt[k]++;
    a.rec_risk[j * a.K + k] = r;
    a.rec_gn[j * a.K + k] = gn;
    a.rec_energy[j * a.K + k] = 0.0;
  }
  if (!is_finite(r)) {
    s.status[k] = kDiverged;
    s.reason[k] = tableaux::kRiskNotFinite;
    s.done[k] = 1;
  }
}

// Thread t: theta rows of the records [j0, j1) of network k from y (after init_block / finish).
template <class T>
RF_HD void record_rows_thread(const Args<T>& a, int64_t k, int t, int64_t j0, int64_t j1) {
  if (!a.rec_theta) return;
  for (int64_t j = j0; j < j1; ++j)
    for (int64_t q = t; q < a.P; q += kThreads)
      a.rec_theta[(j * a.K + k) * a.P + q] = static_cast<T>(a.y[k * a.P + q]);
}

// ---- begin (one thread per network) -----------------------------------------------------------------

template <class T>
RF_HD void begin_network(const Args<T>& a, int64_t k, int64_t it) {
  const State& s = a.st;
  if (k == 0 && a.normalized) {  // the last iteration's extra evaluation, if it counted
    *s.extra_evals += *s.any_accepted;
    *s.any_accepted = 0;
  }
  if (s.done[k]) return;
  if (it > a.max_steps) {
    s.status[k] = kMaxSteps;
    s.done[k] = 1;
    return;
  }
  const int64_t j = s.nxt[k] < a.nT - 1 ? s.nxt[k] : a.nT - 1;
  s.target[k] = a.grid[j];
  s.hh[k] = tableaux::dopri5_step_to(s.h[k], s.t[k], s.target[k]);
}

// ---- stage st = 1..6 (a block per running network) ------------------------------------------------

template <class T>
RF_HD double stage_value(const Args<T>& a, int st, int64_t k, int64_t q) {
  constexpr tableaux::Dopri5Tableau tab = tableaux::dopri5_tableau();
  const double sum = tableaux::tableau_sum(tab.a[st], st, [&](int j) { return k_at(a, j, k, q); });
  return a.y[k * a.P + q] - a.st.hh[k] * sum;
}

// Thread t: its share of the count of non-finite stage components (acc[0]).
template <class T>
RF_HD void stage_count_thread(const Args<T>& a, int st, int64_t k, int t, double* acc) {
  acc[0] = 0.0;
  for (int64_t q = t; q < a.P; q += kThreads)
    if (!is_finite(stage_value(a, st, k, q))) acc[0] += 1.0;
}

// Thread t, after the count's tree (bad: a non-finite component): the stage row (or y's).
template <class T>
RF_HD void stage_store_thread(const Args<T>& a, int st, int64_t k, int t, bool bad) {
  for (int64_t q = t; q < a.P; q += kThreads)
    a.stage[k * a.P + q] = static_cast<T>(bad ? a.y[k * a.P + q] : stage_value(a, st, k, q));
}

// ---- finish (a block per running network) ---------------------------------------------------------

template <class T>
RF_HD double new_value(const Args<T>& a, int64_t k, int64_t q) {
  constexpr tableaux::Dopri5Tableau tab = tableaux::dopri5_tableau();
  const double sum = tableaux::tableau_sum(tab.b, kStages, [&](int j) { return k_at(a, j, k, q); });
  return a.y[k * a.P + q] - a.st.hh[k] * sum;
}

// Normalized, before finish_thread: thread t's share of y_new into ynew, then (after a barrier) its
// hidden neurons of that row retracted (retract_neuron in float64, as the CPU's retract on y_new).
template <class T>
RF_HD void new_row_thread(const Args<T>& a, int64_t k, int t) {
  for (int64_t q = t; q < a.P; q += kThreads) a.ynew[k * a.P + q] = new_value(a, k, q);
}
template <class T>
RF_HD void retract_row_thread(const Args<T>& a, int64_t k, int t) {
  for (int64_t u = t; u < a.H; u += kThreads) {
    int layer = 0, i = 0;
    neuron_at(a.lay, u, &layer, &i);
    retract_neuron(a.lay, a.ynew + k * a.P, layer, i);
  }
}

// y_new's component q: the retracted row (normalized) or the tableau's sum.
template <class T>
RF_HD double next_value(const Args<T>& a, int64_t k, int64_t q) {
  return a.normalized ? a.ynew[k * a.P + q] : new_value(a, k, q);
}

// Thread t: its strided share of the finish's sums (kWidth): e2, non-finite y_new, finite y_new beyond
// max_abs, sum k_j^2 for j = 0, 2, 3, 4, 5 (b_j != 0), |k_6|^2.
template <class T>
RF_HD void finish_thread(const Args<T>& a, int64_t k, int t, double* acc) {
  constexpr tableaux::Dopri5Tableau tab = tableaux::dopri5_tableau();
  for (int w = 0; w < kWidth; ++w) acc[w] = 0.0;
  const double hh = a.st.hh[k];
  for (int64_t q = t; q < a.P; q += kThreads) {
    const double y = a.y[k * a.P + q], yn = next_value(a, k, q);
    const double esum = tableaux::tableau_sum(tab.e, kStages, [&](int j) { return k_at(a, j, k, q); });
    acc[0] += tableaux::dopri5_err_term(hh * esum, y, yn, a.atol, a.rtol);
    if (!is_finite(yn)) acc[1] += 1.0;
    else if (fabs(yn) > a.max_abs) acc[2] += 1.0;
    int w = 3;
    for (int j = 0; j < kStages; ++j) {
      if (tab.b[j] == 0) continue;
      const double v = k_at(a, j, k, q);
      acc[w++] += v * v;
    }
    const double v6 = k_at(a, 6, k, q);
    acc[8] += v6 * v6;
  }
}

// Thread 0, after the tree (sh: the block's sums): dopri5_cpu.cpp's decision, and for an accepted step
// the energy, the time and the counters.
template <class T>
RF_HD Decision decide_block(const Args<T>& a, int64_t k, const double* sh) {
  constexpr tableaux::Dopri5Tableau tab = tableaux::dopri5_tableau();
  const State& s = a.st;
  const double hh = s.hh[k];
  Decision d;
  d.err = tableaux::rms_norm(sh[0], a.P);
  const bool finite = !(sh[1] > 0), over = sh[2] > 0;
  d.bad_why = !finite ? tableaux::kParamsNotFinite
              : over  ? tableaux::kParamsOverMaxAbs
              : !is_finite(d.err) ? tableaux::kGradNotFinite
                                  : tableaux::kRunning;
  d.bad = !(finite && is_finite(d.err)) || over;
  d.acc = d.err <= 1.0 && !d.bad;
  if (!d.acc) {
    ++s.rejected[k];
    ++s.streak[k];
  } else {
    double en = 0.0;
    int w = 3;
    for (int j = 0; j < kStages; ++j) {
      if (tab.b[j] == 0) continue;
      en += tab.b[j] * sh[w++];
    }
    s.energy[k] += hh * en;
    s.t[k] = tableaux::dopri5_advance(s.t[k], hh, s.target[k], a.t_tol);
    ++s.accepted[k];
    s.streak[k] = 0;
  }
  return d;
}

// Thread 0, after decide_block (and, normalized, the field at y_new): the records reached with risk r
// and |G| gn (their theta rows by record_rows_thread over [*j0, *j1)), the risk test, the controller and
// the give-up rules, in dopri5_cpu.cpp's order.
template <class T>
RF_HD void conclude_block(const Args<T>& a, int64_t k, const Decision& d, double r, double gn, int64_t* j0,
                          int64_t* j1) {
  const State& s = a.st;
  int risk_why = tableaux::kRunning;
  *j0 = *j1 = s.nxt[k];
  if (d.acc) {
    while (s.nxt[k] < a.nT && a.grid[s.nxt[k]] <= s.t[k] + a.t_tol) {
      const int64_t j = s.nxt[k]++;
      a.rec_risk[j * a.K + k] = r;
      a.rec_gn[j * a.K + k] = gn;
      a.rec_energy[j * a.K + k] = s.energy[k];
    }
    *j1 = s.nxt[k];
    risk_why = tableaux::risk_reason(r, s.risk0[k], a.max_growth);
    if (risk_why == tableaux::kRiskGrew) s.growth[k] = r / s.risk0[k];
  }
  s.h[k] = s.hh[k] * tableaux::dopri5_step_factor(d.err, d.acc, d.bad);
  const bool stuck = s.streak[k] >= a.max_rejections, tiny = s.h[k] < a.min_step;
  if (d.bad && (stuck || tiny)) {
    s.status[k] = kDiverged;
    s.reason[k] = static_cast<uint8_t>(d.bad_why);
  } else if (stuck) {
    s.status[k] = kMaxRejections;
  } else if (tiny) {
    s.status[k] = kMinStep;
  }
  if (risk_why != tableaux::kRunning) {
    s.status[k] = kDiverged;
    s.reason[k] = static_cast<uint8_t>(risk_why);
  }
  if (s.t[k] >= a.t_end - a.t_tol || s.status[k] != kOk) s.done[k] = 1;
}

// Thread 0, after the tree: the whole finish of a plain run (the records from the 7th stage: FSAL).
// Normalized: the decision only, left in pending (conclude_pending_block finishes). Returns whether the
// step was accepted (then every thread stores: store_thread); *j0 / *j1: the records written.
template <class T>
RF_HD bool finish_block(const Args<T>& a, int64_t k, const double* sh, int64_t* j0, int64_t* j1) {
  const Decision d = decide_block(a, k, sh);
  if (a.normalized) {
    const State& s = a.st;
    s.pending[k] = static_cast<uint8_t>(kPending | (d.acc ? kAccepted : 0) | (d.bad ? kBad : 0));
    s.bad_why[k] = static_cast<uint8_t>(d.bad_why);
    s.err[k] = d.err;
    if (d.acc) *s.any_accepted = 1;  // (every writer stores 1)
    *j0 = *j1 = s.nxt[k];
    return d.acc;
  }
  conclude_block(a, k, d, risk_in_dtype(a, k), sqrt(sh[8]), j0, j1);
  return d.acc;
}

// Thread t of an accepted network (after finish_block): y = y_new; plain: k[0] = k[6] (FSAL: the field
// at y_new, its risk the 7th stage's) and the records' theta rows; normalized: the stage row T(y_new)
// for the field there (the records come with conclude).
template <class T>
RF_HD void store_thread(const Args<T>& a, int64_t k, int t, int64_t j0, int64_t j1) {
  for (int64_t q = t; q < a.P; q += kThreads) {
    const int64_t e = k * a.P + q;
    a.y[e] = next_value(a, k, q);
    if (a.normalized) a.stage[e] = static_cast<T>(a.y[e]);
    else a.k[0][e] = a.k[6][e];
  }
  if (!a.normalized) record_rows_thread(a, k, t, j0, j1);
}

// ---- conclude (normalized; a block per network with an outcome pending, after the field at the stage
// rows, projected, is in k[1]) ----------------------------------------------------------------------

// Thread t: an accepted network's k[0] = k[1] (the field at y_new) and its share of |k[0]|^2 (acc[0]).
template <class T>
RF_HD void conclude_thread(const Args<T>& a, int64_t k, int t, double* acc) {
  acc[0] = 0.0;
  if (!(a.st.pending[k] & kAccepted)) return;
  for (int64_t q = t; q < a.P; q += kThreads) {
    const int64_t e = k * a.P + q;
    a.k[0][e] = a.k[1][e];
    const double v = k_at(a, 0, k, q);
    acc[0] += v * v;
  }
}

// Thread 0, after the tree (sh[0] = |G|^2): conclude_block with the field at y_new's risk (a.risk).
template <class T>
RF_HD void conclude_pending_block(const Args<T>& a, int64_t k, const double* sh, int64_t* j0, int64_t* j1) {
  const State& s = a.st;
  Decision d;
  d.acc = (s.pending[k] & kAccepted) != 0;
  d.bad = (s.pending[k] & kBad) != 0;
  d.bad_why = s.bad_why[k];
  d.err = s.err[k];
  s.pending[k] = kNone;
  conclude_block(a, k, d, d.acc ? risk_in_dtype(a, k) : 0.0, sqrt(sh[0]), j0, j1);
}

}  // namespace dp
}  // namespace reluflow
