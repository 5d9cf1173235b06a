// Integrator loops in C++ (flow_cpu.cpp): gradient descent / SGD and fixed-step Runge–Kutta methods
// for K networks, calling the fused kernels directly, with no Python between steps.
#pragma once
#include <cstdint>
#include <functional>

#include "cpu/field_cpu.h"
#include "reluflow/tableaux.h"

namespace reluflow {

// the fixed-step methods of reluflow/tableaux.h (the method indexes tableaux::fixed_tableau)
enum FlowMethod : int { kFlowEuler = tableaux::kEuler, kFlowHeun = tableaux::kHeun, kFlowRK4 = tableaux::kRK4 };

struct FlowSpec {
  FieldSpec field;  // nodes, target, kernel choice, normalized (field_cpu.h)
  int64_t K = 0;
  int method = kFlowEuler;
  int64_t steps = 0, start_step = 0, record_every = 1;
  // step size of local step i (lr_n or dt): h[i] when h_len == steps, h[0] for every step when
  // h_len == 1 (a constant lr or dt is never materialized: 2e8 steps would take 1.5 GiB)
  const double* h = nullptr;
  int64_t h_len = 0;
  double max_abs = 1e8;
  // a network whose risk exceeds max_growth x its risk at step 0 of this run is frozen (kRiskGrew)
  double max_growth = 1e6;
  // the energy identity of the exact flow (the risk never increases): a network whose risk at a step
  // exceeds its previous step's risk by more than this relative amount is flagged in FlowOut::rose;
  // negative: not checked (gradient descent, a resampled field)
  double rise_tol = -1.0;
  // called with the number of steps done, at most every ~0.25 s of wall time and after the last step
  // (the binding shows a progress bar and checks for Ctrl-C there); returning true stops the run
  // between two steps (FlowOut::interrupted); it may also throw
  std::function<bool(int64_t)> progress;
};

// Records T = number of i in [0, steps] with i % record_every == 0 or i == steps.
int64_t flow_num_records(int64_t steps, int64_t record_every);

struct FlowOut {
  double* rec_risk = nullptr;    // (T, K): risk at the recorded states (NaN never: last value kept)
  double* rec_gnorm = nullptr;   // (T, K): |G| at the recorded states
  double* rec_energy = nullptr;  // (T, K): ∫|G|^2 dt accumulated so far
  double* energy = nullptr;      // (K,) in/out
  uint8_t* active = nullptr;     // (K,) in/out: 0 = frozen (diverged)
  uint8_t* reason = nullptr;     // (K,) out: why a frozen network was frozen (tableaux::StopReason)
  double* growth = nullptr;      // (K,) out: risk / starting risk where frozen for kRiskGrew, else 0
  uint8_t* rose = nullptr;       // (K,) out: the risk rose from a step to the next (see rise_tol)
  int64_t evaluations = 0;       // kernel calls
  // Ctrl-C: the loop stopped at the start of local step steps_done (theta is the state after
  // steps_done steps) with the first `records` records written; the rest are left untouched. A stop
  // requested at the final report leaves a complete run (steps_done = steps) flagged all the same.
  bool interrupted = false;
  int64_t steps_done = 0, records = 0;
};

// Runs the loop in place on theta (K, P), float (T = float) or double. rec_theta (T_rec, K, P), when
// not null, receives theta at every record (a frozen network's last parameters, as the Python
// driver's theta.copy()).
template <class T>
void flow_run_cpu(const FlowSpec& spec, T* theta, FlowOut& out, T* rec_theta = nullptr);

}  // namespace reluflow
