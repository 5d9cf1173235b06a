// The dense risk and generalized gradient on the GPU: fused over nodes x networks, deterministic
// (fixed-order trees and chunk sums, no atomics), float32 or float64 theta, results float64.
// Every kernel here is a thin shell around the per-thread functions of reluflow/risk_grad_grid.h
// (which the host harness cpu/grid_harness.cpp runs sequentially in the CPU tests): the kernels only
// add the barriers and map blockIdx/threadIdx to those functions' explicit indices. See that header
// for the passes, the plans and the precision rules.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "launchers.h"
#include "stream_buffer.cuh"
#include "reluflow/risk_grad_grid.h"

namespace reluflow::cuda {
namespace {

using grid::kThreads;

// A block's tree over its threads' rows of `width` doubles in shared memory (grid::tree_step), a
// barrier after each level.
__device__ __forceinline__ void block_tree(double* sh, int width) {
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    grid::tree_step(sh, width, threadIdx.x, s);
    __syncthreads();
  }
}

// ---- shallow ------------------------------------------------------------------------------------

// pass 1: grid (node_blocks, K)
template <class T>
__global__ void __launch_bounds__(kThreads)
    shallow_nodes_kernel(grid::DenseArgs<T> a, grid::ShallowPlan pl, T* g, double* part1) {
  __shared__ double sh[kThreads * (1 + grid::kShallowMaxOut)];
  const int t = threadIdx.x;
  grid::shallow_nodes_thread(a, pl, blockIdx.y, blockIdx.x, t, g, sh + t * pl.width1);
  block_tree(sh, pl.width1);
  if (t == 0) grid::shallow_nodes_block_out(pl, blockIdx.y, blockIdx.x, sh, part1);
}

// final 1: grid (K)
__global__ void __launch_bounds__(kThreads)
    shallow_final1_kernel(Layout lay, grid::ShallowPlan pl, const double* part1, double* risk, double* grad) {
  __shared__ double sh[kThreads * (1 + grid::kShallowMaxOut)];
  const int t = threadIdx.x;
  const int64_t k = blockIdx.x;
  grid::strided_rows(part1 + k * pl.node_blocks * pl.width1, pl.node_blocks, pl.width1, t, sh + t * pl.width1);
  block_tree(sh, pl.width1);
  if (t == 0) grid::shallow_final1_out(lay, k, sh, risk, grad);
}

// pass 2: grid (neuron_blocks, chunks, K)
template <class T>
__global__ void __launch_bounds__(kThreads)
    shallow_neurons_kernel(grid::DenseArgs<T> a, grid::ShallowPlan pl, const T* g, double* part2) {
  grid::shallow_neurons_thread(a, pl, g, blockIdx.z, blockIdx.y,
                               static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x, part2);
}

// final 2: grid (neuron_blocks, K)
template <class T>
__global__ void __launch_bounds__(kThreads)
    shallow_final2_kernel(grid::DenseArgs<T> a, grid::ShallowPlan pl, const double* part2, double* grad) {
  grid::shallow_final2_thread(a, pl, part2, blockIdx.y, static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x,
                              grad);
}

// ---- any depth --------------------------------------------------------------------------------

// items: grid (ceil(K chunks / kThreads))
template <class T>
__global__ void __launch_bounds__(kThreads)
    deep_items_kernel(grid::DenseArgs<T> a, grid::DeepPlan pl, bool want_grad, int64_t width, T* scratch,
                      double* part) {
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (item >= a.K * pl.chunks) return;
  grid::deep_item_thread(a, pl, item, want_grad, scratch + item * pl.scratch, part + item * width);
}

// final: grid (ceil(width / kThreads), K)
__global__ void __launch_bounds__(kThreads)
    deep_final_kernel(Layout lay, grid::DeepPlan pl, const double* part, int64_t width, double* risk, double* grad) {
  const int64_t q = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (q >= width) return;
  grid::deep_final_thread(lay, pl, part, width, blockIdx.y, q, risk, grad);
}

// ---- ragged nodes -------------------------------------------------------------------------------

// items: grid (ceil(items / kThreads)); item_count = r.item_offset[a.K]
template <class T>
__global__ void __launch_bounds__(kThreads)
    ragged_items_kernel(grid::DenseArgs<T> a, grid::Ragged r, int64_t item_count, bool want_grad, int64_t width,
                        int64_t scratch_len, T* scratch, double* part) {
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (item >= item_count) return;
  grid::deep_ragged_item_thread(a, r, item, want_grad, width, scratch + item * scratch_len, part + item * width);
}

// final: grid (ceil(width / kThreads), K)
__global__ void __launch_bounds__(kThreads)
    ragged_final_kernel(Layout lay, grid::Ragged r, const double* part, int64_t width, double* risk, double* grad) {
  const int64_t q = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (q >= width) return;
  grid::deep_ragged_final_thread(lay, r, part, width, blockIdx.y, q, risk, grad);
}

// ---- launchers ----------------------------------------------------------------------------------

// Networks per launch: the scratch of a group stays under this (memory only: a network's bits do not
// depend on its group) and the group fits gridDim.y / gridDim.z.
constexpr int64_t kMaxGroupBytes = int64_t(1) << 30;
constexpr int64_t kMaxGroup = 65535;

int64_t group_size(int64_t K, int64_t bytes_per_network) {
  return std::max<int64_t>(1, std::min({K, kMaxGroup, kMaxGroupBytes / std::max<int64_t>(1, bytes_per_network)}));
}

template <class T>
void shallow_launch(grid::DenseArgs<T> a, double* risk, double* grad, cudaStream_t st) {
  const Layout& lay = a.lay;
  const int out = lay.widths[2];
  const int64_t H = lay.widths[1], P = lay.num_params, K = a.K;
  const grid::ShallowPlan pl = grid::shallow_plan(lay, a.N);
  const int64_t per_net = a.N * out * int64_t(sizeof(T)) + pl.node_blocks * pl.width1 * 8 +
                          (grad ? pl.chunks * pl.usize * H * 8 : 0);
  const int64_t G = group_size(K, per_net);
  StreamBuffer g(grad ? size_t(G * a.N * out) * sizeof(T) : 0, st);
  StreamBuffer part1(size_t(G * pl.node_blocks * pl.width1) * 8, st);
  StreamBuffer part2(grad ? size_t(G * pl.chunks * pl.usize * H) * 8 : 0, st);
  const T* theta0 = a.theta;
  for (int64_t k0 = 0; k0 < K; k0 += G) {
    a.K = std::min(G, K - k0);
    a.theta = theta0 + k0 * P;
    double* gk = grad ? grad + k0 * P : nullptr;
    shallow_nodes_kernel<T><<<dim3(grid_dim(pl.node_blocks, "nodes"), unsigned(a.K)), kThreads, 0, st>>>(
        a, pl, g.as<T>(), part1.as<double>());
    check(cudaGetLastError(), "shallow_nodes_kernel");
    shallow_final1_kernel<<<unsigned(a.K), kThreads, 0, st>>>(lay, pl, part1.as<double>(), risk + k0, gk);
    check(cudaGetLastError(), "shallow_final1_kernel");
    if (!grad) continue;
    shallow_neurons_kernel<T>
        <<<dim3(grid_dim(pl.neuron_blocks, "neurons"), unsigned(pl.chunks), unsigned(a.K)), kThreads, 0, st>>>(
            a, pl, g.as<T>(), part2.as<double>());
    check(cudaGetLastError(), "shallow_neurons_kernel");
    shallow_final2_kernel<T><<<dim3(unsigned(pl.neuron_blocks), unsigned(a.K)), kThreads, 0, st>>>(
        a, pl, part2.as<double>(), gk);
    check(cudaGetLastError(), "shallow_final2_kernel");
  }
}

template <class T>
void deep_launch(grid::DenseArgs<T> a, double* risk, double* grad, cudaStream_t st) {
  const Layout& lay = a.lay;
  const int64_t P = lay.num_params, K = a.K;
  const grid::DeepPlan pl = grid::deep_plan(lay, a.N);
  const int64_t width = grad ? pl.width : 1;
  const int64_t G = group_size(K, pl.chunks * (width * 8 + pl.scratch * int64_t(sizeof(T))));
  StreamBuffer scratch(size_t(G * pl.chunks * pl.scratch) * sizeof(T), st);
  StreamBuffer part(size_t(G * pl.chunks * width) * 8, st);
  const T* theta0 = a.theta;
  for (int64_t k0 = 0; k0 < K; k0 += G) {
    a.K = std::min(G, K - k0);
    a.theta = theta0 + k0 * P;
    deep_items_kernel<T><<<grid_dim(grid::ceil_div(a.K * pl.chunks, kThreads), "items"), kThreads, 0, st>>>(
        a, pl, grad != nullptr, width, scratch.as<T>(), part.as<double>());
    check(cudaGetLastError(), "deep_items_kernel");
    deep_final_kernel<<<dim3(grid_dim(grid::ceil_div(width, kThreads), "columns"), unsigned(a.K)), kThreads, 0,
                        st>>>(lay, pl, part.as<double>(), width, risk + k0, grad ? grad + k0 * P : nullptr);
    check(cudaGetLastError(), "deep_final_kernel");
  }
}

template <class T>
void ragged_launch(const RaggedDevice& rp, double* risk, double* grad, cudaStream_t st) {
  const DenseDevice& p = rp.nodes;
  const Layout& lay = p.lay;
  const int64_t P = lay.num_params, K = p.K;
  const grid::DeepPlan any = grid::deep_plan(lay, 0);  // width and scratch do not depend on N
  const int64_t width = grad ? any.width : 1;
  std::vector<int64_t> items(size_t(K + 1));  // every network's items, from the first network's
  grid::ragged_item_offsets(lay, rp.node_offset, K, items.data());
  const int64_t per_item = width * 8 + any.scratch * int64_t(sizeof(T));
  grid::Ragged r;
  r.zero = rp.zero;
  grid::DenseArgs<T> a;
  a.lay = lay;
  a.N = p.N;
  a.x = p.x;
  a.w = p.w;
  a.y = p.y;
  // groups of consecutive networks whose partials and scratch stay under kMaxGroupBytes (memory only)
  for (int64_t k0 = 0, k1; k0 < K; k0 = k1) {
    k1 = k0 + 1;
    while (k1 < K && k1 - k0 < kMaxGroup && (items[k1 + 1] - items[k0]) * per_item <= kMaxGroupBytes) ++k1;
    const int64_t G = k1 - k0, count = items[k1] - items[k0];
    std::vector<int64_t> item_offset(size_t(G + 1));
    for (int64_t g = 0; g <= G; ++g) item_offset[g] = items[k0 + g] - items[k0];
    DeviceCopy d_items(item_offset.data(), G + 1, st), d_nodes(rp.node_offset + k0, G + 1, st);
    StreamBuffer scratch(size_t(count * any.scratch) * sizeof(T), st), part(size_t(count * width) * 8, st);
    r.item_offset = d_items.as<int64_t>();
    r.node_offset = d_nodes.as<int64_t>();
    a.K = G;
    a.theta = static_cast<const T*>(p.theta) + k0 * P;
    if (count > 0) {
      ragged_items_kernel<T><<<grid_dim(grid::ceil_div(count, kThreads), "items"), kThreads, 0, st>>>(
          a, r, count, grad != nullptr, width, any.scratch, scratch.as<T>(), part.as<double>());
      check(cudaGetLastError(), "ragged_items_kernel");
    }
    ragged_final_kernel<<<dim3(grid_dim(grid::ceil_div(width, kThreads), "columns"), unsigned(G)), kThreads, 0, st>>>(
        lay, r, part.as<double>(), width, risk + k0, grad ? grad + k0 * P : nullptr);
    check(cudaGetLastError(), "ragged_final_kernel");
  }
}

template <class T>
void dense_t(const DenseDevice& p, DensePath path, double* risk, double* grad, cudaStream_t st) {
  grid::DenseArgs<T> a;
  a.lay = p.lay;
  a.K = p.K;
  a.N = p.N;
  a.theta = static_cast<const T*>(p.theta);
  a.x = p.x;
  a.w = p.w;
  a.y = p.y;
  // the target's arrays on the device (when y is not given): pageable host memory, so each copy has
  // finished reading the host array when cudaMemcpyAsync returns
  const TargetSpec& f = p.target;
  const bool copy = !p.y && !p.target_on_device;  // the GD loop's arrays are on the device already
  const bool affine = copy && f.kind == kTargetAffine, pieces = copy && f.kind == kTargetPiecewisePolynomial;
  DeviceCopy A(affine ? f.A : nullptr, int64_t(f.out) * f.dim, st), b(affine ? f.b : nullptr, f.out, st);
  DeviceCopy br(pieces ? f.breaks : nullptr, f.pieces + 1, st);
  DeviceCopy co(pieces ? f.coeffs : nullptr, int64_t(f.pieces) * f.ncoef * f.out, st);
  a.target = f;
  DeviceCopy tt(copy ? p.teacher.theta : nullptr, p.teacher.lay.num_params, st);
  a.teacher = p.teacher;
  if (copy) {
    a.target.A = A.as<double>();
    a.target.b = b.as<double>();
    a.target.breaks = br.as<double>();
    a.target.coeffs = co.as<double>();
    a.teacher.theta = tt.as<double>();
  }
  if (path == DensePath::Shallow)
    shallow_launch(a, risk, grad, st);
  else
    deep_launch(a, risk, grad, st);
}

}  // namespace

DensePath resolve_dense_path(const Layout& lay, DensePath path) {
  if (path == DensePath::Auto) return grid::shallow_supported(lay) ? DensePath::Shallow : DensePath::Deep;
  if (path == DensePath::Shallow && !grid::shallow_supported(lay))
    throw std::invalid_argument("path: 'shallow' needs widths [d, H, out] with d <= 8 and out <= 3");
  return path;
}

void risk_and_grad_dense(const DenseDevice& p, DensePath path, double* risk, double* grad, uintptr_t stream) {
  path = resolve_dense_path(p.lay, path);
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  if (p.K == 0) return;
  if (p.N == 0) {  // an empty sum: zero risk and gradient
    check(cudaMemsetAsync(risk, 0, size_t(p.K) * sizeof(double), st), "cudaMemsetAsync");
    if (grad) check(cudaMemsetAsync(grad, 0, size_t(p.K * p.lay.num_params) * sizeof(double), st), "cudaMemsetAsync");
    return;
  }
  if (!p.y && !(p.teacher.theta ? grid::teacher_supported(p.teacher.lay)
                                 : p.target.kind != kTargetData && p.target.out <= grid::kMaxTargetOut))
    throw std::invalid_argument("y: required unless the target is a shallow teacher, affine or piecewise "
                                "polynomial, with at most 16 outputs");
  if (p.f32)
    dense_t<float>(p, path, risk, grad, st);
  else
    dense_t<double>(p, path, risk, grad, st);
}

void risk_and_grad_ragged(const RaggedDevice& p, double* risk, double* grad, uintptr_t stream) {
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  if (p.nodes.K == 0) return;
  if (p.nodes.f32)
    ragged_launch<float>(p, risk, grad, st);
  else
    ragged_launch<double>(p, risk, grad, st);
}

}  // namespace reluflow::cuda
