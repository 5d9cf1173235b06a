// Host API of the CUDA kernels (cuda/src/*.cu, a static library): plain C++ with host pointers in
// and out, so that the pybind11 bindings (cuda/bindings/, compiled by the host compiler) never see
// CUDA. Errors are thrown as std::runtime_error / std::invalid_argument.
#pragma once
#include <cstdint>
#include <functional>

#include "reluflow/dists.h"
#include "reluflow/layout.h"
#include "reluflow/spec.h"
#include "reluflow/sweep_grid.h"
#include "reluflow/targets.h"

namespace reluflow::cuda {

// Number of CUDA devices visible (0 when there is no driver or GPU).
int device_count();

// Philox uniforms (n, d) of samples first..first+n-1 of (seed, stream, step) into host memory out.
void philox_uniforms(uint64_t seed, uint32_t stream, uint32_t step, uint32_t first, int64_t n, int d, double* out);

// Monte-Carlo nodes (n, d) of step into host memory out, bitwise mc_nodes_cpu's. `dist` views host
// arrays (the box's low/high, the density's breaks/anti/cum, or the Gaussian's mean/chol), which are
// copied to the device. sizes: the lengths of those arrays, in that order (2 for the box and the
// Gaussian, 3 for the density).
void mc_nodes(uint64_t seed, uint32_t step, int64_t n, const InputDist& dist, const int64_t* sizes, double* out);

// Device copies of a distribution's arrays (the box's low/high, or the density's breaks/anti/cum;
// sizes as for mc_nodes), freed with the object; dist() describes the same distribution with device
// pointers (for mc_nodes_device).
class DeviceInputDist {
 public:
  DeviceInputDist(const InputDist& host, const int64_t* sizes);
  ~DeviceInputDist();
  DeviceInputDist(const DeviceInputDist&) = delete;
  DeviceInputDist& operator=(const DeviceInputDist&) = delete;
  const InputDist& dist() const { return dist_; }

 private:
  InputDist dist_{};
  double* buf_[3] = {nullptr, nullptr, nullptr};
};

// mc_nodes into DEVICE memory out (n, d), queued on `stream` with no host synchronization; `dist`
// points at device arrays (DeviceInputDist::dist()).
void mc_nodes_device(uint64_t seed, uint32_t step, int64_t n, const InputDist& dist, double* out, uintptr_t stream);

// ---- the dense risk and gradient (risk_grad.cu) -----------------------------------------------
// Unlike the samplers above, these take and return DEVICE memory (the caller's CuPy arrays) and run
// asynchronously on the caller's stream (a cudaStream_t as an integer; 0: the legacy default stream).

// The problem: device pointers, C-contiguous. theta (K, P) float32 (f32) or float64; x (N, d), w (N,),
// y (N, out) float64 (the target values at the nodes, computed by the caller), or y == nullptr and the
// target evaluated per node: `teacher` when its theta is set (a shallow teacher, net.h), else `target`
// (affine or piecewise polynomial, targets.h); out <= 16. Both view HOST arrays, copied to the device
// here.
struct DenseDevice {
  Layout lay{};
  int64_t K = 0, N = 0;
  bool f32 = false;
  const void* theta = nullptr;
  const double* x = nullptr;
  const double* w = nullptr;
  const double* y = nullptr;
  TargetSpec target{};
  TeacherSpec teacher{};
  // the arrays of target / teacher are already device memory (the GD loop copies them once per run):
  // no copy per call
  bool target_on_device = false;
};

enum class DensePath { Auto, Shallow, Deep };

// Auto: Shallow for [d, H, out] with d <= 8 and out <= 3, else Deep; std::invalid_argument when
// Shallow is asked for other widths.
DensePath resolve_dense_path(const Layout& lay, DensePath path);

// risk (K,) and, unless grad == nullptr, grad (K, P): float64 device arrays, every entry written.
// Deterministic: the same bits on every run and for any K (reluflow/risk_grad_grid.h).
void risk_and_grad_dense(const DenseDevice& p, DensePath path, double* risk, double* grad, uintptr_t stream);

// The ragged deep path (the exact 1-D quadrature on the device: each network its own kink partition's
// nodes, _core.quad1d_nodes_batch): network k of theta (K, P) (float32 when f32, else float64) over rows
// node_offset[k] .. node_offset[k + 1] - 1 of x (N, d), w (N,), y (N, out) float64 and of zero (N, hidden)
// flags (hidden pre-activations that vanish identically there) or null: device arrays; node_offset
// (K + 1) is HOST memory (the work items are planned on the host: reluflow/risk_grad_grid.h "ragged
// nodes"). Networks run in groups that bound the partials' memory; a network's bits depend on its own
// nodes only.
struct RaggedDevice {
  DenseDevice nodes{};                   // lay, K, N (all rows), f32, theta, x, w, y (y required)
  const uint8_t* zero = nullptr;
  const int64_t* node_offset = nullptr;  // host memory
};

// risk (K,) and, unless grad == nullptr, grad (K, P): float64 device arrays, every entry written (0 for a
// network without nodes). Deterministic, as risk_and_grad_dense.
void risk_and_grad_ragged(const RaggedDevice& p, double* risk, double* grad, uintptr_t stream);

// ---- the point sweep of shallow 1-D nets (sweep_points.cu) ---------------------------------------
// risk (K,) and, unless grad == nullptr, grad (K, P) of K nets [1, H, out] (out <= 3) theta (K, P) float64
// at N weighted nodes x (N,), w (N,) with target values y (N, out): DEVICE memory, C-contiguous, queued
// on `stream`. O(N + H) work per network (sorts, scans, binary searches: reluflow/sweep_grid.h);
// deterministic, the bits of a network independent of K. Networks run in groups of
// point_sweep_group(H, out, N) (scratch bounded by 512 MiB per group).
void point_sweep_device(const double* theta, int64_t K, int64_t H, int out, int64_t N, const double* x,
                        const double* w, const double* y, double* risk, double* grad, uintptr_t stream);
int64_t point_sweep_group(int64_t H, int out, int64_t N);

// The exact quadrature sweep (reluflow/sweep_grid.h): risk (K,) = ∫_lo^hi |N_k - f|^2 rho and, unless grad ==
// nullptr, grad (K, P) of K nets [1, H, out] (out <= 3) theta (K, P) float64 (DEVICE memory, on `stream`). ex:
// the support, the fixed grid, the target and the density with HOST pointers (copied here) and the
// Gauss–Legendre rule (sweep_grid::exact_args).
void exact_sweep_device(const double* theta, int64_t K, int64_t H, int out, const sweep_grid::ExactArgs& ex,
                        double* risk, double* grad, uintptr_t stream);

// ---- gradient descent / SGD and the fixed-step flows with the whole loop on the device (gd_loop.cu) --
// Local iterations i = 0..steps of flow_cpu.cpp's loop: the nodes of step start_step + i (drawn
// on the device when resampling), the dense risk/gradient, then one update kernel (the watch, the
// records and theta -= h_i G: reluflow/gd_step.h) or, for Heun / RK4, the watch, then per stage a
// stage-point kernel and the dense gradient there, then the update kernel (reluflow/rk_step.h), with
// no host synchronization inside a block of iterations; records come back once per block (one copy
// into pinned memory), where progress and Ctrl-C are checked.
struct GdLoopSpec {
  // the problem: prob.theta is the (K, P) DEVICE array updated in place; prob.x / w / y: the fixed
  // nodes on the device (y may be null: the target evaluated in the kernel), unused when resampling;
  // prob.target / teacher: HOST arrays (copied to the device once)
  DenseDevice prob{};
  DensePath path = DensePath::Auto;
  // Monte-Carlo nodes of every step: n nodes of `input` (host arrays, sizes as for mc_nodes) from
  // Philox (seed, stream MC, step), weights 1/n, the target evaluated in the kernel
  bool resample = false;
  uint64_t seed = 0;
  int64_t n = 0;
  InputDist input{};
  int64_t input_sizes[3] = {0, 0, 0};
  // resampling with a target the kernels do not evaluate (a Python Function, a deep teacher): once per
  // step target_fn(x, n, y) fills the DEVICE array y (n, out) from the step's DEVICE nodes x (n, d),
  // queued on `stream` (the bindings' CuPy callback); empty: the target is evaluated in the kernel
  std::function<void(const double*, int64_t, double*)> target_fn;
  int64_t steps = 0, start_step = 0, record_every = 1;
  // step size of local step i: h[0] (h_len == 1), h[i] (h_len == steps), or h_fill(first, count, out)
  // (a callable schedule, asked once per block for that block's steps)
  const double* h = nullptr;
  int64_t h_len = 0;
  std::function<void(int64_t, int64_t, double*)> h_fill;
  double max_abs = 1e8, max_growth = 1e6;
  // the method (tableaux::FixedMethod): gradient descent is kEuler (the same update) with its step
  // sizes; Heun / RK4 take several stages per step (evaluated on the nodes of the step)
  int method = 0;
  // >= 0 (the deterministic flows): flag a network whose risk rises from a step to the next by more
  // than this relative amount (GdLoopOut::rose), as flow_cpu.cpp; < 0: not watched
  double rise_tol = -1.0;
  const uint8_t* frozen = nullptr;  // HOST (P,) or null
  // the normalized flow (flow_cpu.cpp's FieldSpec::normalized): every gradient projected on the
  // tangent space of the hidden neurons' spheres, every update retracted (reluflow/normalized_step.h);
  // theta must start on the manifold (the caller's job, as on the cpu)
  bool normalized = false;
  bool record_theta = false;
  // called with the steps done after every block (about every 0.25 s) and after the last step; true
  // stops the run there (GdLoopOut::interrupted); it may throw
  std::function<bool(int64_t)> progress;
  uintptr_t stream = 0;
};

// Host memory, allocated by the caller: T = gd_num_records(steps, record_every) records.
struct GdLoopOut {
  double* rec_risk = nullptr;    // (T, K)
  double* rec_gnorm = nullptr;   // (T, K)
  double* rec_energy = nullptr;  // (T, K)
  void* rec_theta = nullptr;     // (T, K, P) in theta's dtype, when spec.record_theta
  uint8_t* active = nullptr;     // (K,)
  uint8_t* reason = nullptr;     // (K,) tableaux::StopReason
  double* growth = nullptr;      // (K,)
  int64_t* stop_iter = nullptr;  // (K,) first local iteration that saw the network frozen, -1: never
  uint8_t* rose = nullptr;       // (K,) or null: the risk rose (spec.rise_tol)
  int64_t evaluations = 0;       // the CPU loop's count of dense evaluations (stages included; it stops
                                 // once every network is frozen)
  int64_t steps_done = 0, records = 0, blocks = 0;
  int64_t compactions = 0;       // block boundaries where the evaluations shrank to the active networks
  bool interrupted = false;
};

int64_t gd_num_records(int64_t steps, int64_t record_every);

void gd_loop(const GdLoopSpec& spec, GdLoopOut& out);

}  // namespace reluflow::cuda

namespace reluflow::cuda {

// ---- Dormand–Prince 5(4) with the whole adaptive loop on the device (dopri5_loop.cu) ----------------
// cpu/dopri5_cpu.cpp's loop (per-network step size, error control, landing on the record grid,
// statuses) with every iteration queued on one stream: begin (targets, step sizes, max_steps), per stage
// the stage points and the dense gradient there, finish (error norm, accept / reject, records, the
// controller and the give-up rules: reluflow/dopri5_step.h). The done flags come back once per block of
// iterations (about 0.25 s), where progress and Ctrl-C are checked and the loop ends once every
// network is done. Fixed nodes only (a deterministic field).
struct Dopri5LoopSpec {
  DenseDevice prob{};  // prob.theta: the (K, P) DEVICE array, overwritten with the final state
  DensePath path = DensePath::Auto;
  const double* grid = nullptr;  // HOST (T,) increasing record times in [0, t_end]
  int64_t T = 0;
  double t_end = 1.0, h0 = -1.0, rtol = 1e-6, atol = 1e-9;
  double max_abs = 1e8, max_growth = 1e6, min_step = 1e-14;
  int64_t max_steps = 1000000, max_rejections = 50;
  const uint8_t* frozen = nullptr;  // HOST (P,) or null (not with normalized)
  bool record_theta = false;
  // the normalized flow (dopri5_cpu.cpp with FieldSpec::normalized): every evaluation projected, y_new
  // retracted before its tests, the field re-evaluated there instead of FSAL
  bool normalized = false;
  // called with the smallest time of a running network after every block and with t_end at the end;
  // true stops the run (Dopri5LoopOut::interrupted); it may throw
  std::function<bool(double)> progress;
  uintptr_t stream = 0;
};

// Host memory, allocated by the caller (as cpu/dopri5_cpu.h's Dopri5Out).
struct Dopri5LoopOut {
  double* rec_risk = nullptr;    // (T, K), NaN where never reached
  double* rec_gnorm = nullptr;   // (T, K)
  double* rec_energy = nullptr;  // (T, K)
  void* rec_theta = nullptr;     // (T, K, P) in theta's dtype (NaN where never reached), with record_theta
  int32_t* status = nullptr;     // (K,) Dopri5Status codes
  int64_t* accepted = nullptr;   // (K,)
  int64_t* rejected = nullptr;   // (K,)
  uint8_t* reason = nullptr;     // (K,)
  double* growth = nullptr;      // (K,)
  double* t = nullptr;           // (K,)
  int64_t evaluations = 0;       // the cpu loop's count of kernel calls: 1 + 6 x its iterations (+ 1 per
                                 // iteration with an accepted step, normalized)
  int64_t blocks = 0;
  int64_t compactions = 0;       // block boundaries where the evaluated set shrank to the running networks
  bool interrupted = false;
};

void dopri5_loop(const Dopri5LoopSpec& spec, Dopri5LoopOut& out);

}  // namespace reluflow::cuda
