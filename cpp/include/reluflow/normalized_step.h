// The normalized flow's pieces of the device GD / fixed-step loop (cuda/src/gd_loop.cu), per network,
// as functions of explicit thread indices (RF_HD), shared with their host harnesses (cpu/gd_harness.cpp,
// _core._harness_project / _harness_nm_update): flow_cpu.cpp with FieldSpec::normalized.
//
//   projection: after every dense evaluation, the tangent projection of the raw float64 gradient at the
//     evaluated parameters, one thread per (network, hidden neuron) (manifold.h's project_neuron: the
//     same operations as the cpu Field's project_tangent, so bitwise); the frozen mask is applied at
//     every read afterwards (gd_step.h / rk_step.h), as the cpu Field zeroes after projecting;
//   update (a block per network still active after the watch): the new row (gradient descent / Euler:
//     theta - T(h) T(G) in T; Heun / RK4: T(theta - h sum_s b_s k_s)) into a scratch row, then every
//     hidden neuron retracted to the unit sphere (retract_neuron, one thread per neuron), then
//     params_reason's tests, accept (energy += h |G|^2, or h sum_s b_s |k_s|^2 for Heun / RK4) or
//     freeze (stop_iter = i + 1), then the store. Only the energy sum of Heun / RK4 is a block tree.
#pragma once
#include <math.h>
#include <stdint.h>

#include "finite.h"
#include "gd_step.h"
#include "layout.h"
#include "manifold.h"
#include "rf_hd.h"
#include "rk_step.h"
#include "tableaux.h"

namespace reluflow {
namespace nm {

constexpr int kThreads = gd::kThreads;
constexpr int kWidth = 3;  // non-finite count, beyond-max_abs count, energy sum

// Projection of grad (K, P) at theta (K, P): entry e of K x H (network e / H, hidden neuron e % H).
template <class T>
RF_HD void project_entry(const Layout& lay, int64_t H, const T* theta, double* grad, int64_t e) {
  const int64_t k = e / H, u = e - k * H;
  int layer = 0, i = 0;
  neuron_at(lay, u, &layer, &i);
  project_neuron(lay, theta + k * lay.num_params, grad + k * lay.num_params, layer, i);
}

template <class T>
struct UpdateArgs {
  Layout lay{};
  int64_t K = 0, H = 0;
  int method = tableaux::kEuler;  // kEuler: gradient descent's update in T; kHeun / kRK4: the tableau's
  int64_t i = 0;
  double h = 0.0, max_abs = 1e8;
  const uint8_t* frozen = nullptr;
  T* theta = nullptr;
  const double* k[rk::kMaxStages] = {nullptr, nullptr, nullptr, nullptr};  // projected stage values
  T* scratch = nullptr;  // (K, P)
  gd::State st{};
};

// Phase 1, thread t: the new row into scratch; Heun / RK4's energy terms into acc[2].
template <class T>
RF_HD void fill_thread(const UpdateArgs<T>& a, int64_t k, int t, double* acc) {
  const int64_t P = a.lay.num_params;
  acc[0] = acc[1] = acc[2] = 0.0;
  for (int64_t q = t; q < P; q += kThreads) {
    const int64_t e = k * P + q;
    if (a.method == tableaux::kEuler) {
      const T ht = static_cast<T>(a.h);
      const T g = (a.frozen && a.frozen[q]) ? T(0) : static_cast<T>(a.k[0][e]);
      const T step = ht * g;
      a.scratch[e] = a.theta[e] - step;
    } else {
      const tableaux::FixedTableau tab = tableaux::fixed_tableau(a.method);
      const double incr = tableaux::fixed_increment(
          tab, [&](int s) { return (a.frozen && a.frozen[q]) ? 0.0 : a.k[s][e]; }, acc + 2);
      a.scratch[e] = static_cast<T>(static_cast<double>(a.theta[e]) - a.h * incr);
    }
  }
}

// Phase 2, thread t (after a barrier): its hidden neurons of the scratch row retracted.
template <class T>
RF_HD void retract_thread(const UpdateArgs<T>& a, int64_t k, int t) {
  for (int64_t u = t; u < a.H; u += kThreads) {
    int layer = 0, i = 0;
    neuron_at(a.lay, u, &layer, &i);
    retract_neuron(a.lay, a.scratch + k * a.lay.num_params, layer, i);
  }
}

// Phase 3, thread t (after a barrier): params_reason's counts on the retracted row (acc[0], acc[1]).
template <class T>
RF_HD void test_thread(const UpdateArgs<T>& a, int64_t k, int t, double* acc) {
  const int64_t P = a.lay.num_params;
  for (int64_t q = t; q < P; q += kThreads) gd::count_param(static_cast<double>(a.scratch[k * P + q]), a.max_abs, acc);
}

// Phase 4, thread 0 (after the tree): accept or freeze; returns whether to store.
template <class T>
RF_HD bool accept_block(const UpdateArgs<T>& a, int64_t k, const double* sh) {
  const gd::State& s = a.st;
  return gd::accept_or_freeze(s, k, a.i, sh,
                              a.method == tableaux::kEuler ? a.h * s.last_gn[k] * s.last_gn[k] : a.h * sh[2]);
}

// Phase 5, thread t: theta = the retracted row.
template <class T>
RF_HD void store_thread(const UpdateArgs<T>& a, int64_t k, int t) {
  const int64_t P = a.lay.num_params;
  for (int64_t q = t; q < P; q += kThreads) a.theta[k * P + q] = a.scratch[k * P + q];
}

}  // namespace nm
}  // namespace reluflow
