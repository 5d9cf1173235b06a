// Adaptive Dormand–Prince 5(4) for the gradient flow of K networks in C++ (dopri5_cpu.cpp): each
// network has its own time, step size, accept/reject decision and status, so its trajectory does not
// depend on which other networks share the batch (SPEC §4). One kernel call per stage serves every
// network still running; no Python runs between steps. Mirrors `_dopri5` in python/reluflow/flows.py.
#pragma once
#include <cstdint>
#include <functional>

#include "cpu/field_cpu.h"

namespace reluflow {

// Final state of a network; the names are exported to Python as `_core.dopri5_status_names`.
enum Dopri5Status : int32_t {
  kDopri5Ok = 0,             // reached t_end
  kDopri5Diverged = 1,       // parameters non-finite or above max_abs while giving up, or a risk at an
                             // accepted state non-finite or above max_growth x the starting risk
  kDopri5MaxRejections = 2,  // max_rejections consecutive rejected steps
  kDopri5MinStep = 3,        // the step size fell below min_step
  kDopri5MaxSteps = 4,       // still running after max_steps step attempts
  kDopri5Interrupted = 5     // still running when Ctrl-C stopped the loop
};
inline constexpr int kDopri5NumStatus = 6;
inline constexpr const char* kDopri5StatusNames[kDopri5NumStatus] = {"ok", "diverged", "max_rejections",
                                                                     "min_step", "max_steps", "interrupted"};

struct Dopri5Spec {
  FieldSpec field;  // nodes, target, kernel choice, normalized (field_cpu.h); evaluated at step 0
  int64_t K = 0;
  double t_end = 1.0;
  double h0 = 0.0;  // initial step; <= 0: Hairer–Wanner's simple guess, per network
  double rtol = 1e-6, atol = 1e-9;
  const double* grid = nullptr;  // (T,) increasing record times in [0, t_end]; steps land on them
  int64_t T = 0;
  double max_abs = 1e8;
  double max_growth = 1e6;  // see FlowSpec::max_growth (flow_cpu.h); tested at every accepted state
  int64_t max_steps = 1000000, max_rejections = 50;
  double min_step = 1e-14;
  // called with the smallest time reached by a running network, at most every ~0.25 s and at the end
  // (the binding shows a progress bar and checks for Ctrl-C there); returning true stops the run
  // between two steps (Dopri5Out::interrupted); it may also throw
  std::function<bool(double)> progress;
};

struct Dopri5Out {
  double* rec_risk = nullptr;    // (T, K): risk at the grid times, NaN where never reached
  double* rec_gnorm = nullptr;   // (T, K): |G| (projected when normalized) at the grid times
  double* rec_energy = nullptr;  // (T, K): ∫|G|^2 dt by the b-weights of the stages
  int32_t* status = nullptr;     // (K,): Dopri5Status
  int64_t* accepted = nullptr;   // (K,)
  int64_t* rejected = nullptr;   // (K,)
  uint8_t* reason = nullptr;     // (K,): tableaux::StopReason of a "diverged" network, else kRunning
  double* growth = nullptr;      // (K,): risk / starting risk where diverged for kRiskGrew, else 0
  int64_t evaluations = 0;       // kernel calls (each on the batch of running networks)
  double* t = nullptr;           // (K,): the time each network reached
  // Ctrl-C: the networks still running have status kDopri5Interrupted and their state at t
  bool interrupted = false;
};

// Integrates theta (K, P) in place (float or double; the state is kept in float64 and every stage is
// evaluated at theta's dtype, as the Python driver does) from t = 0 to spec.t_end. rec_theta
// (spec.T, K, P), when not null, receives the state (rounded to T) at every grid time a network
// reached, NaN where it never got there (as the Python driver's theta records).
template <class T>
void dopri5_run_cpu(const Dopri5Spec& spec, T* theta, Dopri5Out& out, T* rec_theta = nullptr);

}  // namespace reluflow
