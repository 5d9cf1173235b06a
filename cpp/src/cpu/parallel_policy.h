// Every threading threshold of the CPU loops, and the integrator loops' thread tuner, in one place.
//
// None of these decides a result bit: each switches a loop between one thread and all of them, and
// every value such a loop computes is summed in a fixed order either way (per network, per chunk of
// a fixed chunking, per sample), so they trade only speed. What they weigh: entering and leaving a
// parallel region costs ~1-10 us, and far more when another process holds a core, since OpenMP's
// barriers may then wait for a scheduler time slice; a loop below its threshold is cheaper than that.
#pragma once
#include <chrono>
#include <cstdint>

#ifdef RELUFLOW_OPENMP
#include <omp.h>
#endif

namespace reluflow {

// risk_grad_cpu.cpp (risk_and_grad_cpu, realization_cpu): work K * N * P (node-parameter products)
// below which a call runs on one thread (many small calls: per-network quadrature nodes, tiny
// integrator steps).
inline constexpr int64_t kMinParallelWork = int64_t(1) << 20;

// hvp_cpu.cpp: work K * N * B * P (node-direction-parameter products) below which the Hessian-vector
// products run on one thread.
inline constexpr int64_t kMinParallelHvp = int64_t(1) << 20;

// quad1d_cpu.cpp: networks x parameters (K * P) below which the deep 1-D quadrature handles its
// networks one at a time (each with the dense kernel's own threading) instead of in parallel.
inline constexpr int64_t kMinParallelNetsQuad1D = int64_t(1) << 14;

// sweep1d_cpu.cpp: K * (neurons or nodes) below which the sweeps run on one thread.
inline constexpr int64_t kMinParallelSweep = int64_t(1) << 14;
// Nodes from which the point sweep's radix sort runs on several threads (a pass over 64k keys is
// ~0.1 ms: below that the fork and the barriers cost more than the second thread saves).
inline constexpr int64_t kMinParallelSort = int64_t(1) << 16;
// Sort scratch kept per thread between calls (above it the buffers are freed after the call): fresh
// pages cost more than the sort itself at N ~ 10^5 (first-touch faults), so repeated calls reuse them.
inline constexpr int64_t kMaxRetainedSortBytes = int64_t(64) << 20;

// sampling_cpu.cpp, sobol_cpu.cpp: values n * d above which the samplers use threads (SGD draws
// ~10^3 samples per step).
inline constexpr int64_t kMinParallelSamples = 16384;

// bind_flow.cpp (target_values): values N * out above which the target is evaluated in parallel.
inline constexpr int64_t kMinParallelTargetValues = 65536;

// flow_cpu.cpp: K * P from which the per-network passes of a fixed-step loop (gradient norm, update,
// divergence check) use threads; they are cheap next to the kernel call and pay off from ~10^5 on.
inline constexpr int64_t kMinParallelFlowUpdate = int64_t(1) << 16;

// dopri5_cpu.cpp: running networks x P from which the stage and error loops use threads.
inline constexpr int64_t kMinParallelDopri5Update = int64_t(1) << 15;

// Thread count of an integrator loop: all OpenMP threads or one, chosen by timing both now and then.
//
// Why: a loop makes thousands of small kernel calls (0.1-1 ms). When another busy process shares the
// cores, every barrier of a parallel region can wait for a scheduler time slice; steps were measured
// 27x slower with two threads than with one on a 2-core machine with one busy neighbour. Results do
// not depend on the thread count (the kernels' reductions have a fixed order), only the speed does,
// so the loop may switch freely.
class ThreadTuner {
 public:
  ThreadTuner() {
#ifdef RELUFLOW_OPENMP
    max_threads_ = omp_get_max_threads();
#endif
    chosen_ = max_threads_;
  }
  ~ThreadTuner() { set(max_threads_); }  // the calling thread's setting is restored
  ThreadTuner(const ThreadTuner&) = delete;
  ThreadTuner& operator=(const ThreadTuner&) = delete;

  // Before the work of local step i: sets the thread count for it.
  void begin(int64_t i) {
    if (max_threads_ <= 1) return;
    const int64_t p = i % kPeriod;
    // p = 0: warm-up; [1, 1 + kTrial): all threads; [1 + kTrial, 1 + 2 kTrial): one thread
    trial_ = p >= 1 && p < 1 + 2 * kTrial ? (p < 1 + kTrial ? 0 : 1) : -1;
    set(trial_ == 0 ? max_threads_ : (trial_ == 1 ? 1 : chosen_));
    if (trial_ >= 0) start_ = std::chrono::steady_clock::now();
  }

  // After the work of local step i: records a trial's time; the last trial of a period chooses.
  void end(int64_t i) {
    if (max_threads_ <= 1 || trial_ < 0) return;
    seconds_[trial_] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (i % kPeriod == 2 * kTrial) {
      chosen_ = seconds_[1] < seconds_[0] ? 1 : max_threads_;
      seconds_[0] = seconds_[1] = 0.0;
    }
  }

 private:
  // Every kPeriod steps the tuner times kTrial steps with all threads and kTrial with one, then keeps
  // the faster count for the rest of the period: ~1% of the steps are trials, and a change in the
  // machine's load is noticed within a period.
  static constexpr int64_t kPeriod = 500, kTrial = 3;
  void set(int n) {
#ifdef RELUFLOW_OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
  }
  int max_threads_ = 1, chosen_ = 1, trial_ = -1;
  double seconds_[2] = {0.0, 0.0};
  std::chrono::steady_clock::time_point start_;
};

}  // namespace reluflow
