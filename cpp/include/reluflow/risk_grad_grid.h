// The CUDA dense risk/gradient as functions of explicit grid indices (RF_HD): what one thread of one
// block does, and the fixed-order reductions, for the kernels of cuda/src/risk_grad.cu AND for the
// host harness (cpp/src/cpu/grid_harness.cpp, bound as _core._harness_risk_grad) that runs the same
// grid sequentially, so that the indexing and the reduction order are tested on a machine without a
// GPU. The per-node math is net.h's (forward_node / shallow_forward_node, node_loss, backward_node,
// shallow_neuron_grad); nothing here is a formula of its own, only who computes which node and in
// which order the sums are taken.
//
// Problem (SPEC §2): risk_k = sum_j w_j |N_k(x_j) - y_j|^2 and its generalized gradient, for K networks
// theta (K, P) (float32 or float64) at N weighted nodes x (N, d) with target values y (N, out) either
// given (float64, on the device: data, a deep teacher, a Python function) or evaluated per node (a
// shallow teacher by net.h; affine and piecewise-polynomial targets by targets.h; out <= kMaxTargetOut). Results float64. No
// nodes x neurons array is ever stored; no atomics: every sum is taken in an order fixed by (N, widths)
// alone, so the bits of a network do not depend on K, on the group of networks it is launched with,
// or on the scheduling of blocks.
//
// Shallow nets [d, H, out] (d <= 8, out <= 3), two passes (SPEC's shallow moments, net.h):
//   pass 1 (grid node_blocks x K, kThreads threads): thread t of block b takes nodes
//           j = b kThreads + t + s kThreads node_blocks (s = 0, 1, ...), N(x_j) by shallow_forward_node,
//           node_loss -> risk_j and g_j = 2 w_j (N(x_j) - y_j), g_j written to g (K, N, out) (nodes x
//           outputs: small), (risk_j, g_j) summed per thread in float64, then over the block by a
//           tree in shared memory -> part1 (K, node_blocks, 1 + out);
//   final 1 (grid K, kThreads threads): thread t sums part1 rows t, t + kThreads, ... ; tree ->
//           risk_k and dc_k = sum_j g_j (the output bias' gradient);
//   pass 2 (grid neuron_blocks x chunks x K): thread t of block (b, c) takes neuron i = b kThreads + t
//           and the nodes of chunk c; moments U[o][c'] = sum_j [z_ij > 0] g_jo x_jc' (x_jd = 1) summed
//           in the compute type over tiles of kTileB nodes, tiles added in float64 -> part2
//           (K, chunks, usize, H) (neuron index last: coalesced);
//   final 2 (one thread per (k, i)): chunks summed in order, net::shallow_neuron_grad -> dW_i, db_i, dv_i.
// Any other net (deep): one thread per work item (k, chunk of nodes): forward_node, node_loss,
// backward_node node after node into the item's float64 partial (1 + P) (the CPU scalar kernel's
// structure); then one thread per (k, column) sums the chunks in order.
//
// Precision of float32 theta: the network is evaluated in float32 (as on the CPU); node_loss returns
// the risk in float64; the shallow moments are summed in float32 over a tile of kTileB nodes and the
// tiles in float64 (the CPU's rule: one float64 add per tile per moment costs nothing, while float64
// adds per node and neuron would run the hot loop at the float64 rate: half of float32's on an H100,
// far less on most other GPUs); the deep partials are float64 per node (backward_node's accumulator
// type A = double: the partial lives in memory anyway, and the deep path is not FP-bound).
#pragma once
#include <stdint.h>

#include "layout.h"
#include "manifold.h"
#include "net.h"
#include "rf_hd.h"
#include "spec.h"
#include "targets.h"

namespace reluflow {
namespace grid {

constexpr int kThreads = 128;  // threads per block of every kernel here (a power of two: the trees)
constexpr int kShallowMaxD = 8, kShallowMaxOut = 3;
constexpr int kUStride = kShallowMaxD + 1;                  // moments of one output, padded
constexpr int kShallowMaxU = kShallowMaxOut * kUStride;     // a thread's moment registers
constexpr int64_t kMaxNodeBlocks = 1024;                    // pass 1 blocks per network (grid-stride beyond)
constexpr int kTileB = 256;                                 // nodes per compute-type tile of pass 2
constexpr int64_t kShallowMinChunk = 4096;                  // nodes per pass-2 chunk, at least
constexpr int64_t kShallowMaxChunks = 256;
// Deep work items are single threads: a GPU needs ~10^4 of them in flight, so chunks are short
// (32 nodes) and many; their float64 partials (1 + P each) are capped by kMaxPartialBytes instead.
constexpr int64_t kDeepMinChunk = 32;                       // nodes per deep work item, at least
constexpr int64_t kDeepMaxChunks = 16384;
constexpr int64_t kMaxPartialBytes = int64_t(256) << 20;    // one network's partials, at most
constexpr int kMaxTargetOut = 16;                           // outputs of a target evaluated in the kernel

// The problem as the kernels see it: plain pointers (device memory on the GPU, host memory in the
// harness). theta points at the first network of the launched group of K networks.
template <class T>
struct DenseArgs {
  Layout lay{};
  int64_t K = 0, N = 0;
  const T* theta = nullptr;   // (K, P)
  const double* x = nullptr;  // (N, d)
  const double* w = nullptr;  // (N,)
  const double* y = nullptr;  // (N, out); nullptr: f(x_j) from `teacher` or `target`
  TargetSpec target{};        // affine or piecewise polynomial (out <= kMaxTargetOut), used when y is null
  TeacherSpec teacher{};      // a shallow teacher [d, H_t, out] (theta != nullptr), used when y is null
};

// Whether a teacher can be evaluated in the kernels: shallow (no z to store per node: net.h's
// shallow_forward_node), out <= kMaxTargetOut.
RF_HD bool teacher_supported(const Layout& t) {
  return t.num_layers == 2 && t.widths[2] <= kMaxTargetOut;
}

// The target values of node j: the given y_j, else the teacher's output N_t(x_j) (net.h, float64) or
// f(x_j) (targets.h), written into buf (out values).
template <class T>
RF_HD const double* node_target(const DenseArgs<T>& a, int64_t j, const double* xj, double* buf) {
  if (a.y) return a.y + j * a.lay.widths[a.lay.num_layers];
  if (a.teacher.theta)
    net::shallow_forward_node(a.teacher.lay, a.teacher.theta, xj, buf);
  else
    target_eval(a.target, xj, buf);
  return buf;
}

// Whether the two-pass shallow kernels take these widths ([d, H, out], d <= 8, out <= 3: the CPU's
// shallow kernel's range, cpu/risk_grad_cpu.cpp).
RF_HD bool shallow_supported(const Layout& lay) {
  return lay.num_layers == 2 && lay.widths[0] >= 1 && lay.widths[0] <= kShallowMaxD && lay.widths[2] >= 1 &&
         lay.widths[2] <= kShallowMaxOut;
}

RF_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
RF_HD int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
RF_HD int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// ---- the shared pieces: a tree over a block, fixed order ------------------------------------------

// One level of the tree reduction of a block: thread t < s adds row t + s into row t (rows of `width`
// doubles in shared memory). Levels s = kThreads/2, ..., 1, a barrier after each: the order of every
// sum is fixed by the tree, not by the scheduling.
RF_HD void tree_step(double* sh, int width, int t, int s) {
  if (t < s)
    for (int q = 0; q < width; ++q) sh[t * width + q] += sh[(t + s) * width + q];
}

// Thread t's strided share of the rows r = t, t + kThreads, ... < rows of a (rows, width) array of
// partials, summed in row order into acc (width).
RF_HD void strided_rows(const double* part, int64_t rows, int width, int t, double* acc) {
  for (int q = 0; q < width; ++q) acc[q] = 0.0;
  for (int64_t r = t; r < rows; r += kThreads)
    for (int q = 0; q < width; ++q) acc[q] += part[r * width + q];
}

// ---- shallow nets ---------------------------------------------------------------------------------

struct ShallowPlan {
  int64_t node_blocks = 0;    // pass 1 blocks per network
  int64_t neuron_blocks = 0;  // pass 2 blocks of neurons: ceil(H / kThreads)
  int64_t chunks = 0;         // pass 2 chunks of nodes per network
  int64_t chunk = 0;          // nodes per chunk
  int usize = 0;              // moments per neuron: out (d + 1)
  int width1 = 0;             // pass 1 accumulators per thread: 1 + out
};

// A function of (N, widths) only: never of K or the device (SPEC §7).
inline ShallowPlan shallow_plan(const Layout& lay, int64_t N) {
  ShallowPlan p;
  const int d = lay.widths[0], H = lay.widths[1], out = lay.widths[2];
  p.usize = out * (d + 1);
  p.width1 = 1 + out;
  p.neuron_blocks = ceil_div(H, kThreads);
  if (N == 0) return p;
  p.node_blocks = min64(ceil_div(N, kThreads), kMaxNodeBlocks);
  const int64_t by_memory = max64(1, kMaxPartialBytes / (int64_t(H) * p.usize * int64_t(sizeof(double))));
  const int64_t want = min64(min64(ceil_div(N, kShallowMinChunk), kShallowMaxChunks), by_memory);
  p.chunk = ceil_div(N, want);
  p.chunks = ceil_div(N, p.chunk);
  return p;
}

// Pass 1, thread t of block b of network k (0 <= k < a.K): see the top of the file. acc: this
// thread's row (width1 doubles) of the block's shared rows; g: (K, N, out) residual gradients
// (nullptr: not kept, for the risk alone).
template <class T>
RF_HD void shallow_nodes_thread(const DenseArgs<T>& a, const ShallowPlan& pl, int64_t k, int64_t b, int t, T* g,
                                double* acc) {
  const Layout& lay = a.lay;
  const int d = lay.widths[0], out = lay.widths[2];
  const T* th = a.theta + k * lay.num_params;
  T n_out[kShallowMaxOut], gj[kShallowMaxOut];
  double ybuf[kShallowMaxOut];
  for (int q = 0; q < pl.width1; ++q) acc[q] = 0.0;
  for (int64_t j = b * kThreads + t; j < a.N; j += kThreads * pl.node_blocks) {
    const double* xj = a.x + j * d;
    net::shallow_forward_node(lay, th, xj, n_out);
    acc[0] += net::node_loss(out, n_out, node_target(a, j, xj, ybuf), a.w[j], gj);
    for (int o = 0; o < out; ++o) {
      if (g) g[(k * a.N + j) * out + o] = gj[o];
      acc[1 + o] += static_cast<double>(gj[o]);
    }
  }
}

// After the tree of pass 1: thread 0 writes the block's sums (row 0) to part1 (K, node_blocks, width1).
RF_HD void shallow_nodes_block_out(const ShallowPlan& pl, int64_t k, int64_t b, const double* sh, double* part1) {
  double* dst = part1 + (k * pl.node_blocks + b) * pl.width1;
  for (int q = 0; q < pl.width1; ++q) dst[q] = sh[q];
}

// Final 1, thread 0 of network k's block after the tree over strided_rows of part1: risk_k and, with a
// gradient, the output biases' gradient dc_o = sum_j g_jo.
RF_HD void shallow_final1_out(const Layout& lay, int64_t k, const double* sh, double* risk, double* grad) {
  risk[k] = sh[0];
  if (grad)
    for (int o = 0; o < lay.widths[2]; ++o) grad[k * lay.num_params + lay.b_offset[1] + o] = sh[1 + o];
}

// Pass 2, thread for neuron i (< H), chunk c, network k: the neuron's moments over the chunk's nodes
// into part2 (K, chunks, usize, H).
template <class T>
RF_HD void shallow_neurons_thread(const DenseArgs<T>& a, const ShallowPlan& pl, const T* g, int64_t k, int64_t c,
                                  int64_t i, double* part2) {
  const Layout& lay = a.lay;
  const int d = lay.widths[0], H = lay.widths[1], out = lay.widths[2];
  if (i >= H) return;
  const T* th = a.theta + k * lay.num_params;
  const T* w_i = th + lay.w_offset[0] + i * d;
  const T b_i = th[lay.b_offset[0] + i];
  // Moment registers: indices are compile-time after unrolling (loops to the maxima, guarded by the
  // run-time d and out), so that they stay in registers on the device.
  double U[kShallowMaxU];
  T Ut[kShallowMaxU], xt[kUStride];
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
  for (int u = 0; u < kShallowMaxU; ++u) U[u] = 0.0;
  const int64_t j0 = c * pl.chunk, j1 = min64(a.N, j0 + pl.chunk);
  for (int64_t t0 = j0; t0 < j1; t0 += kTileB) {
    const int64_t t1 = min64(j1, t0 + kTileB);
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (int u = 0; u < kShallowMaxU; ++u) Ut[u] = T(0);
    for (int64_t j = t0; j < t1; ++j) {
      const double* xj = a.x + j * d;
      if (!net::active(net::hidden_preactivation(d, w_i, b_i, xj))) continue;
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
      for (int q = 0; q < kUStride; ++q) xt[q] = q < d ? static_cast<T>(xj[q < d ? q : 0]) : T(q == d ? 1 : 0);
      const T* gj = g + (k * a.N + j) * out;
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
      for (int o = 0; o < kShallowMaxOut; ++o) {
        if (o >= out) break;
        const T go = gj[o];
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
        for (int q = 0; q < kUStride; ++q)
          if (q <= d) Ut[o * kUStride + q] += go * xt[q];
      }
    }
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (int u = 0; u < kShallowMaxU; ++u) U[u] += static_cast<double>(Ut[u]);
  }
  double* dst = part2 + (k * pl.chunks + c) * pl.usize * H + i;
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
  for (int o = 0; o < kShallowMaxOut; ++o) {
    if (o >= out) break;
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (int q = 0; q < kUStride; ++q)
      if (q <= d) dst[static_cast<int64_t>(o * (d + 1) + q) * H] = U[o * kUStride + q];
  }
}

// Final 2, thread for neuron i (< H) of network k: the chunks' moments summed in chunk order, then
// net::shallow_neuron_grad -> dW_i, db_i, dv_oi into grad (K, P).
template <class T>
RF_HD void shallow_final2_thread(const DenseArgs<T>& a, const ShallowPlan& pl, const double* part2, int64_t k,
                                 int64_t i, double* grad) {
  const Layout& lay = a.lay;
  const int d = lay.widths[0], H = lay.widths[1], out = lay.widths[2];
  if (i >= H) return;
  double U[kShallowMaxU], wi[kShallowMaxD], vi[kShallowMaxOut], dW[kShallowMaxD], dv[kShallowMaxOut], db = 0.0;
  for (int o = 0; o < out; ++o)
    for (int q = 0; q <= d; ++q) {
      double s = 0.0;
      for (int64_t c = 0; c < pl.chunks; ++c)
        s += part2[((k * pl.chunks + c) * pl.usize + o * (d + 1) + q) * H + i];
      U[o * kUStride + q] = s;
    }
  const T* th = a.theta + k * lay.num_params;
  for (int q = 0; q < d; ++q) wi[q] = static_cast<double>(th[lay.w_offset[0] + i * d + q]);
  for (int o = 0; o < out; ++o) vi[o] = static_cast<double>(th[lay.w_offset[1] + int64_t(o) * H + i]);
  const double bi = static_cast<double>(th[lay.b_offset[0] + i]);
  net::shallow_neuron_grad<double>(d, out, wi, bi, vi, 1, U, kUStride, 1, dW, &db, dv);
  double* gk = grad + k * lay.num_params;
  for (int q = 0; q < d; ++q) gk[lay.w_offset[0] + i * d + q] = dW[q];
  gk[lay.b_offset[0] + i] = db;
  for (int o = 0; o < out; ++o) gk[lay.w_offset[1] + int64_t(o) * H + i] = dv[o];
}

// ---- any depth --------------------------------------------------------------------------------

struct DeepPlan {
  int64_t chunks = 0;   // work items (chunks of nodes) per network
  int64_t chunk = 0;    // nodes per item
  int64_t width = 0;    // doubles per item partial: 1 + P (the risk, then the gradient)
  int64_t scratch = 0;  // compute-type scratch per item: z (all layers), two backprop rows, g
};

// A function of (N, widths) only (and the same with or without the gradient, so that the risk is
// bitwise the same either way).
RF_HD DeepPlan deep_plan(const Layout& lay, int64_t N) {
  DeepPlan p;
  p.width = 1 + lay.num_params;
  p.scratch = net::num_activations(lay) + 2 * net::max_width(lay) + lay.widths[lay.num_layers];
  if (N == 0) return p;
  const int64_t by_memory = max64(1, kMaxPartialBytes / (p.width * int64_t(sizeof(double))));
  const int64_t want = min64(min64(ceil_div(N, kDeepMinChunk), kDeepMaxChunks), by_memory);
  p.chunk = ceil_div(N, want);
  p.chunks = ceil_div(N, p.chunk);
  return p;
}

// Nodes j0 .. j1 - 1 through network th, node after node, into partial (1 + P doubles: risk, then the
// gradient when want_grad; `width` of them zeroed first); zero: the nodes' hidden flags (hidden_neurons
// per node, forward_node's), or null.
template <class T>
RF_HD void deep_nodes(const DenseArgs<T>& a, const T* th, int64_t j0, int64_t j1, const uint8_t* zero,
                      bool want_grad, int64_t width, T* scratch, double* partial) {
  const Layout& lay = a.lay;
  const int d = lay.widths[0], out = lay.widths[lay.num_layers];
  const int64_t nact = net::num_activations(lay), hidden = zero != nullptr ? hidden_neurons(lay) : 0;
  const int mw = net::max_width(lay);
  T* z = scratch;
  T* da = z + nact;
  T* db = da + mw;
  T* gj = db + mw;
  double ybuf[kMaxTargetOut];
  for (int64_t q = 0; q < width; ++q) partial[q] = 0.0;
  for (int64_t j = j0; j < j1; ++j) {
    const double* xj = a.x + j * d;
    net::forward_node(lay, th, xj, z, zero != nullptr ? zero + j * hidden : nullptr);
    partial[0] += net::node_loss(out, z + nact - out, node_target(a, j, xj, ybuf), a.w[j], gj);
    if (want_grad) net::backward_node(lay, th, xj, z, gj, da, db, partial + 1);
  }
}

// Work item `item` = k chunks + c (thread t of block b: item = b kThreads + t): nodes of chunk c through
// network k, node after node, into partial (1 + P doubles: risk, then the gradient when want_grad).
template <class T>
RF_HD void deep_item_thread(const DenseArgs<T>& a, const DeepPlan& pl, int64_t item, bool want_grad, T* scratch,
                            double* partial) {
  if (item >= a.K * pl.chunks) return;
  const int64_t k = item / pl.chunks, c = item % pl.chunks;
  const int64_t j0 = c * pl.chunk, j1 = min64(a.N, j0 + pl.chunk);
  deep_nodes(a, a.theta + k * a.lay.num_params, j0, j1, nullptr, want_grad, want_grad ? pl.width : 1, scratch,
             partial);
}

// Column q of network k from the partials of its items i0 .. i1 - 1 (rows of `width`), summed in item
// order -> risk_k (q = 0) or grad_k[q - 1]; no items: 0.
RF_HD void deep_column_out(const Layout& lay, const double* part, int64_t width, int64_t i0, int64_t i1, int64_t k,
                           int64_t q, double* risk, double* grad) {
  double s = 0.0;
  for (int64_t i = i0; i < i1; ++i) s += part[i * width + q];
  if (q == 0)
    risk[k] = s;
  else
    grad[k * lay.num_params + q - 1] = s;
}

// Final of the deep path, thread for column q of network k (q < width, or < 1 without the gradient):
// the items' partials summed in chunk order.
RF_HD void deep_final_thread(const Layout& lay, const DeepPlan& pl, const double* part, int64_t width, int64_t k,
                             int64_t q, double* risk, double* grad) {
  deep_column_out(lay, part, width, k * pl.chunks, (k + 1) * pl.chunks, k, q, risk, grad);
}

// ---- ragged nodes: each network its own nodes (the exact 1-D quadrature's kink partitions) --------------
// Network k of the launched group reads rows node_offset[k] .. node_offset[k + 1] - 1 of x, w, y (a.N: all
// rows) and of zero (hidden flags per node, forward_node's, or null), cut into work items by
// deep_plan(lay, N_k) of its own N_k alone, so that its bits depend on its own nodes only; its items are
// item_offset[k] .. item_offset[k + 1] - 1 of the launch (ragged_item_offsets). The partials of all
// items: (items, width), then one thread per (k, column) sums k's items in order.
struct Ragged {
  const int64_t* node_offset = nullptr;  // (K + 1), rows of x
  const int64_t* item_offset = nullptr;  // (K + 1), work items
  const uint8_t* zero = nullptr;         // (a.N, hidden_neurons) or null
};

// item_offset (K + 1) of K networks with node_offset (K + 1), relative to the first network's items.
inline void ragged_item_offsets(const Layout& lay, const int64_t* node_offset, int64_t K, int64_t* item_offset) {
  item_offset[0] = 0;
  for (int64_t k = 0; k < K; ++k)
    item_offset[k + 1] = item_offset[k] + deep_plan(lay, node_offset[k + 1] - node_offset[k]).chunks;
}

// The network of work item `item`: the last k with item_offset[k] <= item (networks without nodes have no
// items, so the last of equal offsets is the one that owns the item).
RF_HD int64_t ragged_network(const int64_t* item_offset, int64_t K, int64_t item) {
  int64_t lo = 0, hi = K - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (item_offset[mid] <= item)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// Work item `item` (< item_offset[K]; thread t of block b: item = b kThreads + t): chunk c of network k's
// nodes, as deep_plan(lay, N_k) cuts them, into partial (`width` doubles: 1, or 1 + P with the gradient).
template <class T>
RF_HD void deep_ragged_item_thread(const DenseArgs<T>& a, const Ragged& r, int64_t item, bool want_grad,
                                   int64_t width, T* scratch, double* partial) {
  if (item >= r.item_offset[a.K]) return;
  const int64_t k = ragged_network(r.item_offset, a.K, item);
  const int64_t n0 = r.node_offset[k], n1 = r.node_offset[k + 1];
  const DeepPlan pl = deep_plan(a.lay, n1 - n0);
  const int64_t j0 = n0 + (item - r.item_offset[k]) * pl.chunk, j1 = min64(n1, j0 + pl.chunk);
  deep_nodes(a, a.theta + k * a.lay.num_params, j0, j1, r.zero, want_grad, width, scratch, partial);
}

// Final of the ragged path, thread for column q of network k: its items' partials summed in order.
RF_HD void deep_ragged_final_thread(const Layout& lay, const Ragged& r, const double* part, int64_t width, int64_t k,
                                    int64_t q, double* risk, double* grad) {
  deep_column_out(lay, part, width, r.item_offset[k], r.item_offset[k + 1], k, q, risk, grad);
}

}  // namespace grid
}  // namespace reluflow
