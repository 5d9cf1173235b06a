// The stages and the update of one Heun / RK4 step of the fixed-step gradient flows, per network, as
// functions of explicit thread indices (RF_HD): the per-network logic of the stage and update kernels
// of cuda/src/gd_loop.cu AND of their host harnesses (cpu/gd_harness.cpp, bound as
// _core._harness_rk_stage / _core._harness_rk_update), so that the step is tested without a GPU.
// Euler is gradient descent with a constant step (gd_step.h's update, the same operations as
// flow_cpu.cpp's Euler branch); this file holds what the multi-stage methods add.
//
// At local iteration i (theta_i evaluated: k_0 = grad (K, P) float64; gd_step.h's watch has run with
// update = false, so a network still `active` is to be updated), with the tableau of tableaux.h:
//   stage s = 1..stages-1: stage_theta = T(theta - h a_s k_{s-1}) (tableaux::fixed_stage_point, in
//   float64, for every network and parameter, as flow_cpu.cpp), then the loop evaluates k_s there;
//   update: new_q = T(theta_q - h sum_s b_s k_s,q) (tableaux::fixed_increment, in float64),
//   en = sum_q sum_s b_s k_s,q^2; params_reason(new): not finite / beyond max_abs -> frozen at
//   theta_i (stop_iter = i + 1), else theta = new and energy += h en.
// k_s,q is 0 for a frozen parameter (the cpu Field zeroes the frozen velocity at every evaluation).
//
// The only difference from flow_cpu.cpp: en is summed by a block (threads strided over q, then a
// fixed tree) instead of in q order, so the energy differs from the CPU's in the last bits (it
// depends on P only). The new parameters are bitwise the CPU's given the same k_s: the same
// operations in the same order (no FMA: --fmad=false / -ffp-contract=off).
#pragma once
#include <math.h>
#include <stdint.h>

#include "finite.h"
#include "gd_step.h"
#include "rf_hd.h"
#include "tableaux.h"

namespace reluflow {
namespace rk {

constexpr int kThreads = gd::kThreads;  // threads per network's block in the update (a power of two)
constexpr int kWidth = 3;               // doubles per thread in the update's tree
constexpr int kMaxStages = 4;

template <class T>
struct RkArgs {
  int64_t K = 0, P = 0;
  int method = tableaux::kRK4;  // tableaux::FixedMethod (Heun or RK4; Euler works too)
  int64_t i = 0;                // local iteration (stop_iter of an update freeze is i + 1)
  double h = 0.0;
  double max_abs = 1e8;
  const uint8_t* frozen = nullptr;              // (P,) or null
  T* theta = nullptr;                           // (K, P): read by the stages, written by the update
  const double* k[kMaxStages] = {nullptr, nullptr, nullptr, nullptr};  // (K, P) each: stage values
  T* stage_theta = nullptr;                     // (K, P): the stage kernel's output
  gd::State st{};                               // active, reason, energy, stop_iter are used
};

// k_s of parameter q of network k: 0 where frozen.
template <class T>
RF_HD double k_at(const RkArgs<T>& a, int s, int64_t k, int64_t q) {
  if (a.frozen && a.frozen[q]) return 0.0;
  return a.k[s][k * a.P + q];
}

// Stage s's point, entry e = k P + q of (K, P): one thread per entry (every network, as the CPU).
template <class T>
RF_HD void stage_entry(const RkArgs<T>& a, int s, int64_t e) {
  const tableaux::FixedTableau tab = tableaux::fixed_tableau(a.method);
  const int64_t k = e / a.P, q = e - k * a.P;
  a.stage_theta[e] = static_cast<T>(
      tableaux::fixed_stage_point(static_cast<double>(a.theta[e]), a.h, tab.a[s], k_at(a, s - 1, k, q)));
}

// The new value of parameter q of network k; adds its energy terms to *en (the same bits each time).
template <class T>
RF_HD T new_param(const RkArgs<T>& a, int64_t k, int64_t q, double* en) {
  const tableaux::FixedTableau tab = tableaux::fixed_tableau(a.method);
  const double incr = tableaux::fixed_increment(tab, [&](int s) { return k_at(a, s, k, q); }, en);
  return static_cast<T>(static_cast<double>(a.theta[k * a.P + q]) - a.h * incr);
}

// Update phase 1, thread t (only for an active network): its strided share of the counts of
// non-finite new parameters (acc[0]), of finite ones beyond max_abs (acc[1]) and of en (acc[2]).
template <class T>
RF_HD void test_thread(const RkArgs<T>& a, int64_t k, int t, double* acc) {
  acc[0] = 0.0;
  acc[1] = 0.0;
  acc[2] = 0.0;
  for (int64_t q = t; q < a.P; q += kThreads)
    gd::count_param(static_cast<double>(new_param(a, k, q, acc + 2)), a.max_abs, acc);
}

// Update phase 2, one thread, after the tree of phase 1: accept (energy += h en) or freeze; returns
// whether to store.
template <class T>
RF_HD bool accept_block(const RkArgs<T>& a, int64_t k, const double* sh) {
  return gd::accept_or_freeze(a.st, k, a.i, sh, a.h * sh[2]);
}

// Update phase 3, thread t (only when phase 2 accepted): theta = new.
template <class T>
RF_HD void store_thread(const RkArgs<T>& a, int64_t k, int t) {
  double en = 0.0;
  for (int64_t q = t; q < a.P; q += kThreads) a.theta[k * a.P + q] = new_param(a, k, q, &en);
}

}  // namespace rk
}  // namespace reluflow
