// Dormand–Prince 5(4) with the whole adaptive loop on the device (issue 13): cpu/dopri5_cpu.cpp's loop
// with every iteration queued on one stream and no host synchronization inside a block of iterations.
//
// Start: the dense risk / gradient at theta (k[0]), then dp_init_kernel (the state in float64, the
// initial step per network, the records at t = 0). Iteration it = 1, 2, ...:
//   dp_begin_kernel (one thread per network): max_steps, the record time to land on, the step tried;
//   for s = 1..6: dp_stage_kernel (a block per running network: the stage points) and the dense
//     gradient there into k[s] (every network, until at most 3/4 of them run at a block boundary: from
//     then on only the running ones, their stage rows gathered into a compact array and the results
//     scattered back (loop_common.cuh's RunningSet); a network's bits do not depend on the batch either way, and the
//     done ones are not read);
//   dp_finish_kernel (a block per running network): the 5th-order solution, the error norm, accept /
//     reject, energy, time, the records reached, the controller and the give-up rules, FSAL.
// Normalized: every dense evaluation is projected on the tangent space (loop_common.cuh's project), the
// finish retracts y_new before its tests and only decides; the field at the accepted y_new (the stage
// rows) then goes into k[1], and dp_conclude_kernel takes it as k[0], writes the records and runs the
// controller (reluflow/dopri5_step.h).
// Records: the whole (T, K) grid lives on the device (each network writes its rows when it reaches
// them) and comes back once at the end. At the end of a block one copy of the done flags and times
// into pinned memory and one stream synchronization: progress, Ctrl-C, and the end once every network
// is done. Per-network math: reluflow/dopri5_step.h (its host harness: cpu/gd_harness.cpp).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "launchers.h"
#include "loop_common.cuh"
#include "reluflow/dopri5_step.h"

namespace reluflow::cuda {
namespace {

using loop::block_tree;
using loop::check;
using loop::DeviceMem;
using loop::PinnedMem;
using loop::upload;

template <class T>
__global__ void __launch_bounds__(dp::kThreads) dp_init_kernel(dp::Args<T> a) {
  const int64_t k = blockIdx.x;
  const int t = threadIdx.x;
  dp::init_thread(a, k, t);
  __syncthreads();
  if (t == 0) dp::init_block(a, k);
  __syncthreads();
  dp::record_rows_thread(a, k, t, 0, a.st.nxt[k]);
}

constexpr int kBeginThreads = 128;

template <class T>
__global__ void __launch_bounds__(kBeginThreads) dp_begin_kernel(dp::Args<T> a, int64_t it) {
  const int64_t k = int64_t(blockIdx.x) * kBeginThreads + threadIdx.x;
  if (k < a.K) dp::begin_network(a, k, it);
}

template <class T>
__global__ void __launch_bounds__(dp::kThreads) dp_stage_kernel(dp::Args<T> a, int st) {
  __shared__ double sh[dp::kThreads];
  const int64_t k = blockIdx.x;
  const int t = threadIdx.x;
  if (a.st.done[k]) return;  // uniform over the block; written by an earlier launch
  dp::stage_count_thread(a, st, k, t, sh + t);
  block_tree(sh, 1);
  dp::stage_store_thread(a, st, k, t, sh[0] > 0);
}

template <class T>
__global__ void __launch_bounds__(dp::kThreads) dp_finish_kernel(dp::Args<T> a) {
  __shared__ double sh[dp::kThreads * dp::kWidth];
  __shared__ int go;
  __shared__ int64_t j0, j1;
  const int64_t k = blockIdx.x;
  const int t = threadIdx.x;
  // written by earlier launches; read by every thread before the tree's first barrier, after which
  // thread 0 may set it
  if (a.st.done[k]) return;
  if (a.normalized) {  // y_new, then its neurons retracted, before the tests (the sums read it)
    dp::new_row_thread(a, k, t);
    __syncthreads();
    dp::retract_row_thread(a, k, t);
    __syncthreads();
  }
  dp::finish_thread(a, k, t, sh + t * dp::kWidth);
  block_tree(sh, dp::kWidth);
  if (t == 0) go = dp::finish_block(a, k, sh, &j0, &j1);
  __syncthreads();
  if (go) dp::store_thread(a, k, t, j0, j1);
}

template <class T>
__global__ void __launch_bounds__(dp::kThreads) dp_conclude_kernel(dp::Args<T> a) {
  __shared__ double sh[dp::kThreads];
  __shared__ int64_t j0, j1;
  const int64_t k = blockIdx.x;
  const int t = threadIdx.x;
  // written by dp_finish_kernel; read by every thread before the tree, after which thread 0 resets it
  if (!a.st.pending[k]) return;
  dp::conclude_thread(a, k, t, sh + t);
  block_tree(sh, 1);
  if (t == 0) dp::conclude_pending_block(a, k, sh, &j0, &j1);
  __syncthreads();
  dp::record_rows_thread(a, k, t, j0, j1);
}

template <class T>
void dopri5_loop_t(const Dopri5LoopSpec& s, Dopri5LoopOut& out) {
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(s.stream);
  const int64_t K = s.prob.K, P = s.prob.lay.num_params, nT = s.T;
  loop::DeviceProblem dprob(s.prob, !s.prob.y);
  const DenseDevice& p = dprob.p;

  // state: y (K, P) float64, k[0..6] (K, P) float64, the stage points (K, P) in T
  DeviceMem y{size_t(K * P) * 8}, ks{size_t(dp::kStages) * size_t(K * P) * 8}, stage{size_t(K * P) * sizeof(T)};
  DeviceMem risk{size_t(K) * 8}, grid{size_t(nT) * 8}, frozen{s.frozen ? size_t(P) : 0};
  DeviceMem f64s{size_t(K) * 8 * 7};                 // t, h, energy, risk0, growth, hh, target
  DeviceMem i64s{size_t(K) * 8 * 4};                 // nxt, streak, accepted, rejected
  DeviceMem status{size_t(K) * 4}, flags{size_t(K) * 2};  // done, reason
  DeviceMem recs{size_t(nT * K) * 8 * 3}, rec_theta{s.record_theta ? size_t(nT * K * P) * sizeof(T) : 0};
  // normalized: the retracted y_new (K, P), err (K), pending / bad_why (K each), and the counters
  // extra_evals (int64) and any_accepted (int32)
  const bool nz = s.normalized;
  DeviceMem ynew{nz ? size_t(K * P) * 8 : 0}, nz_err{nz ? size_t(K) * 8 : 0}, nz_flags{nz ? size_t(K) * 2 : 0};
  DeviceMem nz_count{nz ? size_t(16) : 0};
  if (nz) {
    check(cudaMemsetAsync(nz_flags.ptr, 0, size_t(K) * 2, st), "cudaMemsetAsync");
    check(cudaMemsetAsync(nz_count.ptr, 0, 16, st), "cudaMemsetAsync");
  }
  upload(grid.as<double>(), std::vector<double>(s.grid, s.grid + nT));
  if (s.frozen) to_device(frozen.ptr, s.frozen, size_t(P));
  upload(recs.as<double>(), std::vector<double>(size_t(nT * K) * 3, NAN));
  if (s.record_theta)
    upload(rec_theta.as<T>(), std::vector<T>(size_t(nT * K * P), std::numeric_limits<T>::quiet_NaN()));

  dp::Args<T> a;
  a.K = K;
  a.P = P;
  a.nT = nT;
  a.grid = grid.as<double>();
  a.t_end = s.t_end;
  a.t_tol = 1e-12 * s.t_end;
  a.h0 = s.h0;
  a.rtol = s.rtol;
  a.atol = s.atol;
  a.max_abs = s.max_abs;
  a.max_growth = s.max_growth;
  a.min_step = s.min_step;
  a.max_steps = s.max_steps;
  a.max_rejections = s.max_rejections;
  a.frozen = frozen.as<uint8_t>();
  a.theta0 = static_cast<const T*>(s.prob.theta);
  a.y = y.as<double>();
  for (int j = 0; j < dp::kStages; ++j) a.k[j] = ks.as<double>() + size_t(j) * size_t(K * P);
  a.risk = risk.as<double>();
  a.stage = stage.as<T>();
  double* f = f64s.as<double>();
  a.st = dp::State{f,          f + K,      f + 2 * K, f + 3 * K, f + 4 * K, f + 5 * K, f + 6 * K,
                   i64s.as<int64_t>(), i64s.as<int64_t>() + K, i64s.as<int64_t>() + 2 * K, i64s.as<int64_t>() + 3 * K,
                   status.as<int32_t>(), flags.as<uint8_t>(), flags.as<uint8_t>() + K};
  a.rec_risk = recs.as<double>();
  a.rec_gn = a.rec_risk + nT * K;
  a.rec_energy = a.rec_risk + 2 * nT * K;
  a.rec_theta = s.record_theta ? rec_theta.as<T>() : nullptr;
  a.normalized = nz;
  a.lay = s.prob.lay;
  a.H = nz ? hidden_neurons(s.prob.lay) : 0;
  if (nz) {
    a.ynew = ynew.as<double>();
    a.st.err = nz_err.as<double>();
    a.st.pending = nz_flags.as<uint8_t>();
    a.st.bad_why = nz_flags.as<uint8_t>() + K;
    a.st.extra_evals = nz_count.as<int64_t>();
    a.st.any_accepted = reinterpret_cast<int32_t*>(nz_count.as<int64_t>() + 1);
  }
  // after a dense evaluation at th (K, P): the normalized flow's projection
  auto project = [&](const T* th, double* grad) {
    if (nz) loop::project(a.lay, K, a.H, th, grad, st);
  };
  DenseDevice ps = p;  // the problem at the stage points
  ps.theta = stage.ptr;
  // the evaluated networks: all K, or (after a compaction at a block boundary) the running ones
  loop::RunningSet<T> evaluated(K, P);
  // the field at the stage rows into k[j] and risk, then (normalized) the projection
  auto evaluate_stages = [&](double* kj) {
    evaluated.evaluate(ps, s.path, a.stage, risk.as<double>(), kj, st);
    project(a.stage, kj);
  };
  const unsigned blocks_k = static_cast<unsigned>(K);
  const unsigned begin_blocks = static_cast<unsigned>((K + kBeginThreads - 1) / kBeginThreads);

  // the start: the field at theta, the state and the records at t = 0
  risk_and_grad_dense(p, s.path, risk.as<double>(), const_cast<double*>(a.k[0]), s.stream);
  project(a.theta0, a.k[0]);
  if (K > 0) dp_init_kernel<T><<<blocks_k, dp::kThreads, 0, st>>>(a);
  check(cudaGetLastError(), "dp_init_kernel");
  out.evaluations = 1;

  // per block: done flags (K bytes) then t (K doubles) into pinned memory
  PinnedMem look(loop::round8(size_t(K)) + size_t(K) * 8);
  const uint8_t* done_h = static_cast<const uint8_t*>(look.ptr);
  const double* t_h = reinterpret_cast<const double*>(static_cast<const char*>(look.ptr) + loop::round8(size_t(K)));
  using clock = std::chrono::steady_clock;
  int64_t want = 4, it = 0;
  bool any_running = K > 0;
  while (any_running) {
    const auto t0 = clock::now();
    for (int64_t b = 0; b < want; ++b) {
      ++it;
      dp_begin_kernel<T><<<begin_blocks, kBeginThreads, 0, st>>>(a, it);
      check(cudaGetLastError(), "dp_begin_kernel");
      for (int j = 1; j < dp::kStages; ++j) {
        dp_stage_kernel<T><<<blocks_k, dp::kThreads, 0, st>>>(a, j);
        check(cudaGetLastError(), "dp_stage_kernel");
        evaluate_stages(const_cast<double*>(a.k[j]));
      }
      dp_finish_kernel<T><<<blocks_k, dp::kThreads, 0, st>>>(a);
      check(cudaGetLastError(), "dp_finish_kernel");
      if (nz) {  // the field at the accepted y_new (the stage rows) into k[1], then the records
        evaluate_stages(a.k[1]);
        dp_conclude_kernel<T><<<blocks_k, dp::kThreads, 0, st>>>(a);
        check(cudaGetLastError(), "dp_conclude_kernel");
      }
    }
    check(cudaMemcpyAsync(look.ptr, a.st.done, size_t(K), cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
    check(cudaMemcpyAsync(static_cast<char*>(look.ptr) + loop::round8(size_t(K)), a.st.t, size_t(K) * 8,
                          cudaMemcpyDeviceToHost, st),
          "cudaMemcpyAsync");
    check(cudaStreamSynchronize(st), "dopri5_loop (a kernel of the block)");
    ++out.blocks;
    double t_min = s.t_end;
    any_running = false;
    for (int64_t k = 0; k < K; ++k)
      if (!done_h[k]) {
        any_running = true;
        t_min = std::min(t_min, t_h[k]);
      }
    if (!any_running) break;
    if (s.progress && s.progress(t_min)) {  // Ctrl-C: every running network keeps its state at its time
      out.interrupted = true;
      break;
    }
    std::vector<uint8_t> still(done_h, done_h + K);  // running flags (the stream is idle here: synchronized)
    for (uint8_t& f : still) f = f == 0;
    if (evaluated.update(still.data())) ++out.compactions;
    want = loop::next_block(std::chrono::duration<double>(clock::now() - t0).count(), want);
  }

  // the final state: theta = T(y) on the device, then the records and the per-network arrays
  std::vector<double> yh(size_t(K * P));
  loop::download(yh.data(), y.ptr, K * P);
  std::vector<T> th(yh.begin(), yh.end());
  if (K * P > 0)
    to_device(const_cast<void*>(s.prob.theta), th.data(), th.size() * sizeof(T));
  loop::download(out.rec_risk, a.rec_risk, nT * K);
  loop::download(out.rec_gnorm, a.rec_gn, nT * K);
  loop::download(out.rec_energy, a.rec_energy, nT * K);
  if (s.record_theta) loop::download(static_cast<T*>(out.rec_theta), rec_theta.ptr, nT * K * P);
  loop::download(out.status, a.st.status, K);
  loop::download(out.accepted, a.st.accepted, K);
  loop::download(out.rejected, a.st.rejected, K);
  loop::download(out.reason, a.st.reason, K);
  loop::download(out.growth, a.st.growth, K);
  loop::download(out.t, a.st.t, K);
  std::vector<uint8_t> done(static_cast<size_t>(K));
  loop::download(done.data(), a.st.done, K);
  int64_t tries = 0;
  for (int64_t k = 0; k < K; ++k) {
    tries = std::max(tries, out.accepted[k] + out.rejected[k]);
    if (out.interrupted && !done[k]) out.status[k] = dp::kInterrupted;
  }
  // every iteration with a running network evaluated 6 stages, and each running network tried a step
  // in each (networks start together and run without gaps): the cpu loop's count; normalized: plus the
  // iterations where some network was accepted (the field at y_new; the last one not yet tallied)
  out.evaluations = 1 + 6 * tries;
  if (nz) {
    int64_t counts[2] = {0, 0};
    loop::download(counts, nz_count.ptr, 2);
    int32_t last = 0;
    std::memcpy(&last, &counts[1], sizeof last);
    out.evaluations += counts[0] + last;
  }
  if (!out.interrupted && s.progress && s.progress(s.t_end)) out.interrupted = true;
}

}  // namespace

void dopri5_loop(const Dopri5LoopSpec& s, Dopri5LoopOut& out) {
  if (s.T < 1 || !s.grid) throw std::invalid_argument("grid: expected at least one record time");
  for (int64_t j = 0; j < s.T; ++j)
    if (!(s.grid[j] >= 0 && s.grid[j] <= s.t_end) || (j > 0 && !(s.grid[j] > s.grid[j - 1])))
      throw std::invalid_argument("grid: expected increasing times in [0, t_end]");
  if (!(s.t_end > 0)) throw std::invalid_argument("t_end: expected a positive time");
  if (!(s.rtol >= 0) || !(s.atol >= 0) || !(s.rtol + s.atol > 0))
    throw std::invalid_argument("rtol, atol: expected >= 0, not both 0");
  if (s.max_steps < 1 || s.max_rejections < 1) throw std::invalid_argument("max_steps, max_rejections: expected >= 1");
  if (!s.prob.x || !s.prob.w) throw std::invalid_argument("x, w: dopri5 on the device needs fixed nodes");
  resolve_dense_path(s.prob.lay, s.path);
  if (s.prob.f32)
    dopri5_loop_t<float>(s, out);
  else
    dopri5_loop_t<double>(s, out);
}

}  // namespace reluflow::cuda
