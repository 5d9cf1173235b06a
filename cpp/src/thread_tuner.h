// Thread count of an integrator loop: all OpenMP threads or one, chosen by timing both now and then.
//
// Why: a loop makes thousands of small kernel calls (0.1-1 ms). When another busy process shares the
// cores, every barrier of a parallel region can wait for a scheduler time slice; steps were measured
// 27x slower with two threads than with one on a 2-core machine with one busy neighbour. Results do
// not depend on the thread count (the kernels' reductions have a fixed order), only the speed does,
// so the loop may switch freely.
#pragma once
#include <chrono>
#include <cstdint>

#ifdef RELUFLOW_OPENMP
#include <omp.h>
#endif

namespace reluflow {

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

  int threads() const { return chosen_; }

 private:
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
