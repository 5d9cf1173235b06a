// Gradient descent / SGD and the fixed-step gradient flows (Euler, Heun, RK4) with the whole loop on
// the device (issue 13): flow_cpu.cpp's loop with every step queued on one stream, no host
// synchronization inside a block of iterations.
//
// Per local iteration i (0..steps; the last only evaluates and records):
//   1. resampling: the Monte-Carlo nodes of step start_step + i by mc_nodes_kernel (sampling.cu:
//      Philox addressed by (seed, stream, step, sample index), bitwise mc_nodes_cpu's);
//   2. risk (K,) and grad (K, P) by the dense kernels of risk_grad.cu (the target evaluated per node
//      in the kernel unless fixed y is given);
//   3. gd_step_kernel: one block per network, the phases of reluflow/gd_step.h (watch, records, update
//      with the frozen mask, divergence tests); h_i is a kernel argument (no lr array on the device).
//      Gradient descent and Euler are this update. Heun / RK4: the kernel only watches and records
//      (update = false), then per stage s = 1..stages-1 rk_stage_kernel (the stage points of every
//      network) and the dense gradient there (the same nodes), then rk_update_kernel (one block per
//      network still active: reluflow/rk_step.h).
// Once at most 3/4 of the networks are active at a block boundary, only the active ones are evaluated
// (loop_common.cuh's RunningSet: their rows gathered, the results scattered back; no bit changes).
// Records go to slots of one device buffer (a header with `active`, then per recorded iteration the
// risk, |G| and energy (K,) each and, with record_theta, theta (K, P)); at the end of a block one
// cudaMemcpyAsync copies header + slots into pinned memory and one stream synchronization waits for
// it: that is where progress, Ctrl-C and "every network frozen" are checked. Blocks are sized to take
// about 0.25 s (the results never depend on where blocks end).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "launchers.h"
#include "loop_common.cuh"
#include "reluflow/gd_step.h"
#include "reluflow/normalized_step.h"
#include "reluflow/rk_step.h"

namespace reluflow::cuda {
namespace {

using loop::block_tree;
using loop::check;
using loop::DeviceMem;
using loop::PinnedMem;
using loop::round8;
using loop::upload;

// ---- the update kernel: grid (K), gd::kThreads threads per block -------------------------------------

template <class T>
__global__ void __launch_bounds__(gd::kThreads) gd_step_kernel(gd::StepArgs<T> a) {
  __shared__ double sh[gd::kThreads * gd::kWidth];
  __shared__ int go;
  const int64_t k = blockIdx.x;
  const int t = threadIdx.x;
  gd::grad_thread(a, k, t, sh + t * gd::kWidth);
  block_tree(sh, gd::kWidth);
  if (t == 0) go = gd::watch_block(a, k, sh);
  __syncthreads();
  if (!go) return;  // uniform over the block
  gd::test_thread(a, k, t, sh + t * gd::kWidth);
  block_tree(sh, gd::kWidth);
  if (t == 0) go = gd::accept_block(a, k, sh);
  __syncthreads();
  if (go) gd::store_thread(a, k, t);
}

// ---- the Heun / RK4 kernels: stage points (one thread per entry), update (grid (K), rk::kThreads) ------

constexpr int kStageThreads = 256;

template <class T>
__global__ void __launch_bounds__(kStageThreads) rk_stage_kernel(rk::RkArgs<T> a, int s) {
  const int64_t n = a.K * a.P;
  for (int64_t e = int64_t(blockIdx.x) * kStageThreads + threadIdx.x; e < n; e += int64_t(gridDim.x) * kStageThreads)
    rk::stage_entry(a, s, e);
}

template <class T>
__global__ void __launch_bounds__(rk::kThreads) rk_update_kernel(rk::RkArgs<T> a) {
  __shared__ double sh[rk::kThreads * rk::kWidth];
  __shared__ int go;
  const int64_t k = blockIdx.x;
  const int t = threadIdx.x;
  // written by this step's watch (gd_step_kernel, an earlier launch); uniform over the block, and
  // read by every thread before block_tree's first barrier, after which thread 0 may clear it
  if (!a.st.active[k]) return;
  rk::test_thread(a, k, t, sh + t * rk::kWidth);
  block_tree(sh, rk::kWidth);
  if (t == 0) go = rk::accept_block(a, k, sh);
  __syncthreads();
  if (go) rk::store_thread(a, k, t);
}

// ---- the normalized flow: the retracting update (grid (K), nm::kThreads); the tangent projection is
// loop_common.cuh's ------------------------------------------------------------------------------------

template <class T>
__global__ void __launch_bounds__(nm::kThreads) nm_update_kernel(nm::UpdateArgs<T> a) {
  __shared__ double sh[nm::kThreads * nm::kWidth];
  __shared__ int go;
  const int64_t k = blockIdx.x;
  const int t = threadIdx.x;
  if (!a.st.active[k]) return;  // as rk_update_kernel: uniform, read before the first barrier
  nm::fill_thread(a, k, t, sh + t * nm::kWidth);
  __syncthreads();
  nm::retract_thread(a, k, t);
  __syncthreads();
  nm::test_thread(a, k, t, sh + t * nm::kWidth);
  block_tree(sh, nm::kWidth);
  if (t == 0) go = nm::accept_block(a, k, sh);
  __syncthreads();
  if (go) nm::store_thread(a, k, t);
}

constexpr int64_t kRecordBufferBytes = int64_t(256) << 20;  // record slots of a block, at most
constexpr int64_t kMaxSlots = 4096;

template <class T>
void gd_loop_t(const GdLoopSpec& s, GdLoopOut& out) {
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(s.stream);
  const Layout& lay = s.prob.lay;
  const int64_t K = s.prob.K, P = lay.num_params, steps = s.steps, re = s.record_every;
  const int64_t total_rec = gd_num_records(steps, re);
  const int d = lay.widths[0];

  // the problem on the device, once: target / teacher arrays, resampling buffers
  const bool target_fn = s.resample && s.target_fn;  // the step's target values from the callback
  const bool kernel_target = (!s.prob.y || s.resample) && !target_fn;
  loop::DeviceProblem dprob(s.prob, kernel_target);
  DenseDevice& p = dprob.p;
  std::unique_ptr<DeviceInputDist> dist;
  const int out_dim = lay.widths[lay.num_layers];
  DeviceMem xs(s.resample ? size_t(s.n * d) * 8 : 0), ws(s.resample ? size_t(s.n) * 8 : 0),
      ys(target_fn ? size_t(s.n * out_dim) * 8 : 0);
  if (s.resample) {
    dist = std::make_unique<DeviceInputDist>(s.input, s.input_sizes);
    upload(ws.as<double>(), std::vector<double>(size_t(s.n), 1.0 / static_cast<double>(s.n)));
    p.x = xs.as<double>();
    p.w = ws.as<double>();
    p.y = target_fn ? ys.as<double>() : nullptr;  // the stages see the same buffer
    p.N = s.n;
  }
  // k_0 (the gradient at theta_i) then the stages' k_s (Heun / RK4), (K, P) each; the stage points
  const tableaux::FixedTableau tab = tableaux::fixed_tableau(s.method);
  const int stages = tab.stages;
  DeviceMem risk{size_t(K) * 8}, ks{size_t(stages) * size_t(K * P) * 8};
  DeviceMem stage_theta{stages > 1 ? size_t(K * P) * sizeof(T) : 0};
  DeviceMem frozen{s.frozen ? size_t(P) : 0};
  if (s.frozen) to_device(frozen.ptr, s.frozen, size_t(P));

  // per-network state
  DeviceMem active{size_t(K)}, reason{size_t(K)}, stop{size_t(K) * 8}, rose{size_t(K)};
  DeviceMem f64s{size_t(K) * 8 * 5};  // growth, risk0, last_risk, last_gn, energy
  // byte flags set by cudaMemset (a temporary std::vector<uint8_t> here trips GCC 12's
  // -Wfree-nonheap-object false positive once upload() is inlined)
  if (K > 0) {
    check(cudaMemset(active.ptr, 1, size_t(K)), "cudaMemset");
    check(cudaMemset(reason.ptr, 0, size_t(K)), "cudaMemset");
    check(cudaMemset(rose.ptr, 0, size_t(K)), "cudaMemset");
  }
  upload(stop.as<int64_t>(), std::vector<int64_t>(size_t(K), -1));
  {
    std::vector<double> init(size_t(K) * 5, NAN);
    std::fill(init.begin(), init.begin() + K, 0.0);           // growth
    std::fill(init.begin() + 4 * K, init.end(), 0.0);         // energy
    upload(f64s.as<double>(), init);
  }
  gd::State state{active.as<uint8_t>(), reason.as<uint8_t>(), f64s.as<double>(),        f64s.as<double>() + K,
                  f64s.as<double>() + 2 * K, f64s.as<double>() + 3 * K, f64s.as<double>() + 4 * K, stop.as<int64_t>(),
                  s.rise_tol >= 0 ? rose.as<uint8_t>() : nullptr};

  // record slots: [active (K bytes) | slot 0 | slot 1 | ...], a slot = risk, |G|, energy (K doubles
  // each) then theta (K, P) with record_theta
  const size_t head = round8(size_t(K));
  const size_t slot = round8(size_t(K) * 24 + (s.record_theta ? size_t(K * P) * sizeof(T) : 0));
  const int64_t slots = std::max<int64_t>(2, std::min<int64_t>({total_rec, kMaxSlots, kRecordBufferBytes / int64_t(slot)}));
  DeviceMem rec_dev(head + size_t(slots) * slot);
  PinnedMem rec_host(head + size_t(slots) * slot);
  char* rd = rec_dev.as<char>();
  const char* rh = static_cast<const char*>(rec_host.ptr);

  gd::StepArgs<T> a;
  a.K = K;
  a.P = P;
  a.max_abs = s.max_abs;
  a.max_growth = s.max_growth;
  a.rise_tol = s.rise_tol;
  a.frozen = frozen.as<uint8_t>();
  a.theta = static_cast<T*>(const_cast<void*>(s.prob.theta));
  a.risk = risk.as<double>();
  a.grad = ks.as<double>();
  a.st = state;
  rk::RkArgs<T> rka;
  rka.K = K;
  rka.P = P;
  rka.method = s.method;
  rka.max_abs = s.max_abs;
  rka.frozen = a.frozen;
  rka.theta = a.theta;
  for (int j = 0; j < stages; ++j) rka.k[j] = ks.as<double>() + size_t(j) * size_t(K * P);
  rka.stage_theta = stage_theta.as<T>();
  rka.st = state;
  // the normalized flow: a scratch row per network for the retraction, the projection's grid
  const int64_t H = s.normalized ? hidden_neurons(lay) : 0;
  DeviceMem scratch{s.normalized ? size_t(K * P) * sizeof(T) : 0};
  nm::UpdateArgs<T> nma;
  nma.lay = lay;
  nma.K = K;
  nma.H = H;
  nma.method = s.method;
  nma.max_abs = s.max_abs;
  nma.frozen = a.frozen;
  nma.theta = a.theta;
  for (int j = 0; j < stages; ++j) nma.k[j] = rka.k[j];
  nma.scratch = scratch.as<T>();
  nma.st = state;
  auto project = [&](const void* th, double* grad) {  // after a dense evaluation at th
    if (s.normalized) loop::project(lay, K, H, static_cast<const T*>(th), grad, st);
  };
  // the evaluated networks: all K, or (after a compaction at a block boundary) the active ones; the stage
  // points are evaluated on the same nodes (those of the step)
  loop::RunningSet<T> evaluated(K, P);
  const unsigned stage_blocks =
      static_cast<unsigned>(std::min<int64_t>((K * P + kStageThreads - 1) / kStageThreads, int64_t(1) << 20));

  std::vector<double> hblock;
  using clock = std::chrono::steady_clock;
  int64_t want = 4, i = 0, rec = 0;
  bool all_frozen = false;
  std::vector<uint8_t> act(static_cast<size_t>(K));
  while (i <= steps) {
    const int64_t i1 = gd::block_end(i, want, steps, re, slots);
    const auto t0 = clock::now();
    const int64_t nupd = std::min(i1, steps) - i;  // updates in this block
    if (s.h_fill && nupd > 0) {
      hblock.resize(size_t(nupd));
      s.h_fill(i, nupd, hblock.data());
    }
    int64_t nrec = 0;
    for (int64_t it = i; it < i1; ++it) {
      if (s.resample)
        mc_nodes_device(s.seed, static_cast<uint32_t>(s.start_step + it), s.n, dist->dist(), xs.as<double>(), s.stream);
      if (target_fn) s.target_fn(xs.as<double>(), s.n, ys.as<double>());
      evaluated.evaluate(p, s.path, a.theta, risk.as<double>(), ks.as<double>(), st);
      project(a.theta, ks.as<double>());
      const bool update = it < steps;
      const double h = !update ? 0.0 : s.h_fill ? hblock[size_t(it - i)] : s.h_len == 1 ? s.h[0] : s.h[it];
      a.i = it;
      a.update = update && stages == 1 && !s.normalized;  // else the watch and the records only
      a.h = h;
      if (gd::is_record(it, steps, re)) {
        char* sl = rd + head + size_t(nrec++) * slot;
        a.rec_risk = reinterpret_cast<double*>(sl);
        a.rec_gn = a.rec_risk + K;
        a.rec_energy = a.rec_risk + 2 * K;
        a.rec_theta = s.record_theta ? reinterpret_cast<T*>(sl + size_t(K) * 24) : nullptr;
      } else {
        a.rec_risk = a.rec_gn = a.rec_energy = nullptr;
        a.rec_theta = nullptr;
      }
      if (K > 0) gd_step_kernel<T><<<static_cast<unsigned>(K), gd::kThreads, 0, st>>>(a);
      check(cudaGetLastError(), "gd_step_kernel");
      if (s.normalized && stages == 1 && update && K > 0) {
        nma.i = it;
        nma.h = h;
        nm_update_kernel<T><<<static_cast<unsigned>(K), nm::kThreads, 0, st>>>(nma);
        check(cudaGetLastError(), "nm_update_kernel");
      }
      if (stages > 1 && update && K > 0) {
        rka.i = it;
        rka.h = h;
        for (int j = 1; j < stages; ++j) {
          if (P > 0) rk_stage_kernel<T><<<stage_blocks, kStageThreads, 0, st>>>(rka, j);
          check(cudaGetLastError(), "rk_stage_kernel");
          // the stage's risk is not used: written over `risk`, already read by this step's watch
          evaluated.evaluate(p, s.path, stage_theta.as<T>(), risk.as<double>(), const_cast<double*>(rka.k[j]), st);
          project(stage_theta.ptr, const_cast<double*>(rka.k[j]));
        }
        if (s.normalized) {
          nma.i = it;
          nma.h = h;
          nm_update_kernel<T><<<static_cast<unsigned>(K), nm::kThreads, 0, st>>>(nma);
          check(cudaGetLastError(), "nm_update_kernel");
        } else {
          rk_update_kernel<T><<<static_cast<unsigned>(K), rk::kThreads, 0, st>>>(rka);
          check(cudaGetLastError(), "rk_update_kernel");
        }
      }
      out.evaluations += update ? stages : 1;
    }
    // the block's records and the active flags: one copy, one synchronization
    check(cudaMemcpyAsync(rd, active.ptr, size_t(K), cudaMemcpyDeviceToDevice, st), "cudaMemcpyAsync");
    check(cudaMemcpyAsync(rec_host.ptr, rd, head + size_t(nrec) * slot, cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
    check(cudaStreamSynchronize(st), "gd_loop (a kernel of the block)");
    for (int64_t r = 0; r < nrec; ++r, ++rec) {
      const double* sl = reinterpret_cast<const double*>(rh + head + size_t(r) * slot);
      std::memcpy(out.rec_risk + rec * K, sl, size_t(K) * 8);
      std::memcpy(out.rec_gnorm + rec * K, sl + K, size_t(K) * 8);
      std::memcpy(out.rec_energy + rec * K, sl + 2 * K, size_t(K) * 8);
      if (s.record_theta)
        std::memcpy(static_cast<char*>(out.rec_theta) + size_t(rec * K * P) * sizeof(T), sl + 3 * K,
                    size_t(K * P) * sizeof(T));
    }
    std::memcpy(act.data(), rh, size_t(K));
    const int64_t iters = i1 - i;
    ++out.blocks;
    i = i1;
    all_frozen = std::none_of(act.begin(), act.end(), [](uint8_t v) { return v != 0; });
    if (all_frozen || i > steps) break;
    if (s.progress && s.progress(i)) {  // Ctrl-C: the state after i steps, the records so far
      out.interrupted = true;
      out.steps_done = i;
      break;
    }
    if (evaluated.update(act.data())) ++out.compactions;  // the frozen networks no longer evaluated
    // the next block: about kBlockSeconds of work, growing at most 4x at a time
    want = loop::next_block(std::chrono::duration<double>(clock::now() - t0).count(), iters);
  }

  // the final state
  check(cudaMemcpy(out.active, active.ptr, size_t(K), cudaMemcpyDeviceToHost), "cudaMemcpy");
  check(cudaMemcpy(out.reason, reason.ptr, size_t(K), cudaMemcpyDeviceToHost), "cudaMemcpy");
  check(cudaMemcpy(out.stop_iter, stop.ptr, size_t(K) * 8, cudaMemcpyDeviceToHost), "cudaMemcpy");
  std::vector<double> fin(size_t(K) * 5);
  check(cudaMemcpy(fin.data(), f64s.ptr, fin.size() * 8, cudaMemcpyDeviceToHost), "cudaMemcpy");
  std::copy(fin.begin(), fin.begin() + K, out.growth);
  if (out.rose) check(cudaMemcpy(out.rose, rose.ptr, size_t(K), cudaMemcpyDeviceToHost), "cudaMemcpy");
  if (!out.interrupted) {
    out.steps_done = steps;
    if (all_frozen) {
      // the CPU loop stops at the first iteration whose watch sees no network running (each earlier
      // iteration evaluated `stages` times); the records after it repeat the last state (as
      // flow_cpu.cpp's fill)
      const int64_t last = K > 0 ? *std::max_element(out.stop_iter, out.stop_iter + K) : 0;
      out.evaluations = stages * std::min(steps, last) + 1;
      std::vector<char> th(s.record_theta ? size_t(K * P) * sizeof(T) : 0);
      if (s.record_theta) check(cudaMemcpy(th.data(), s.prob.theta, th.size(), cudaMemcpyDeviceToHost), "cudaMemcpy");
      for (; rec < total_rec; ++rec) {
        std::copy(fin.begin() + 2 * K, fin.begin() + 3 * K, out.rec_risk + rec * K);
        std::copy(fin.begin() + 3 * K, fin.begin() + 4 * K, out.rec_gnorm + rec * K);
        std::copy(fin.begin() + 4 * K, fin.begin() + 5 * K, out.rec_energy + rec * K);
        if (s.record_theta) std::memcpy(static_cast<char*>(out.rec_theta) + size_t(rec) * th.size(), th.data(), th.size());
      }
    }
    if (s.progress && s.progress(steps)) out.interrupted = true;
  }
  out.records = rec;
}

}  // namespace

int64_t gd_num_records(int64_t steps, int64_t record_every) {
  return steps / record_every + 1 + (steps % record_every != 0 ? 1 : 0);
}

void gd_loop(const GdLoopSpec& s, GdLoopOut& out) {
  if (s.steps < 0 || s.record_every < 1) throw std::invalid_argument("steps, record_every: expected >= 0 and >= 1");
  if (s.start_step < 0 || s.start_step + s.steps > 4294967295LL)
    throw std::invalid_argument("start_step: step indices must lie in [0, 2**32)");
  if (!s.h_fill && !(s.h && (s.h_len == 1 || s.h_len >= s.steps)))
    throw std::invalid_argument("h: expected one step size (length 1) or one per step");
  if (s.method != tableaux::kEuler && s.method != tableaux::kHeun && s.method != tableaux::kRK4)
    throw std::invalid_argument("method: expected tableaux::kEuler, kHeun or kRK4");
  if (s.resample && (s.n < 1 || s.n > (int64_t(1) << 32)))
    throw std::invalid_argument("n: expected a number of samples in [1, 2**32]");
  resolve_dense_path(s.prob.lay, s.path);
  if (s.prob.f32)
    gd_loop_t<float>(s, out);
  else
    gd_loop_t<double>(s, out);
}

}  // namespace reluflow::cuda
