// The CUDA dense grid (cuda/src/risk_grad.cu) run sequentially on the host: see grid_harness.h. Each
// loop nest below mirrors one kernel launch: blocks in the outer loops, the threads of a block in the
// inner loop, one inner loop per phase between two barriers.
#include "cpu/grid_harness.h"

#include <stdexcept>
#include <vector>

#include "reluflow/risk_grad_grid.h"

namespace reluflow {
namespace {

using grid::kThreads;

template <class T>
void shallow_host(const grid::DenseArgs<T>& a, double* risk, double* grad) {
  const Layout& lay = a.lay;
  const int out = lay.widths[2];
  const int64_t H = lay.widths[1];
  const grid::ShallowPlan pl = grid::shallow_plan(lay, a.N);
  const int W = pl.width1;
  std::vector<T> g(grad ? static_cast<size_t>(a.K * a.N * out) : 0);
  std::vector<double> part1(static_cast<size_t>(a.K * pl.node_blocks * W)), sh(static_cast<size_t>(kThreads * W));
  // pass 1: grid (node_blocks, K)
  for (int64_t k = 0; k < a.K; ++k)
    for (int64_t b = 0; b < pl.node_blocks; ++b) {
      for (int t = 0; t < kThreads; ++t)
        grid::shallow_nodes_thread(a, pl, k, b, t, grad ? g.data() : nullptr, sh.data() + t * W);
      for (int s = kThreads / 2; s > 0; s /= 2)
        for (int t = 0; t < kThreads; ++t) grid::tree_step(sh.data(), W, t, s);
      grid::shallow_nodes_block_out(pl, k, b, sh.data(), part1.data());
    }
  // final 1: grid (K)
  for (int64_t k = 0; k < a.K; ++k) {
    for (int t = 0; t < kThreads; ++t)
      grid::strided_rows(part1.data() + k * pl.node_blocks * W, pl.node_blocks, W, t, sh.data() + t * W);
    for (int s = kThreads / 2; s > 0; s /= 2)
      for (int t = 0; t < kThreads; ++t) grid::tree_step(sh.data(), W, t, s);
    grid::shallow_final1_out(lay, k, sh.data(), risk, grad);
  }
  if (!grad) return;
  // pass 2: grid (neuron_blocks, chunks, K)
  std::vector<double> part2(static_cast<size_t>(a.K * pl.chunks * pl.usize * H));
  for (int64_t k = 0; k < a.K; ++k)
    for (int64_t c = 0; c < pl.chunks; ++c)
      for (int64_t b = 0; b < pl.neuron_blocks; ++b)
        for (int t = 0; t < kThreads; ++t)
          grid::shallow_neurons_thread(a, pl, g.data(), k, c, b * kThreads + t, part2.data());
  // final 2: grid (neuron_blocks, K)
  for (int64_t k = 0; k < a.K; ++k)
    for (int64_t b = 0; b < pl.neuron_blocks; ++b)
      for (int t = 0; t < kThreads; ++t) grid::shallow_final2_thread(a, pl, part2.data(), k, b * kThreads + t, grad);
}

template <class T>
void deep_host(const grid::DenseArgs<T>& a, double* risk, double* grad) {
  const grid::DeepPlan pl = grid::deep_plan(a.lay, a.N);
  const int64_t width = grad ? pl.width : 1, items = a.K * pl.chunks;
  std::vector<double> part(static_cast<size_t>(items * width));
  std::vector<T> scratch(static_cast<size_t>(pl.scratch));  // one thread at a time: one scratch
  // items: grid (ceil(items / kThreads))
  for (int64_t b = 0; b < grid::ceil_div(items, kThreads); ++b)
    for (int t = 0; t < kThreads; ++t) {
      const int64_t item = b * kThreads + t;
      if (item < items) grid::deep_item_thread(a, pl, item, grad != nullptr, scratch.data(), part.data() + item * width);
    }
  // final: grid (ceil(width / kThreads), K)
  for (int64_t k = 0; k < a.K; ++k)
    for (int64_t q = 0; q < width; ++q) grid::deep_final_thread(a.lay, pl, part.data(), width, k, q, risk, grad);
}

template <class T>
void ragged_host(const grid::DenseArgs<T>& a, const int64_t* node_offset, const uint8_t* zero, double* risk,
                 double* grad) {
  const grid::DeepPlan any = grid::deep_plan(a.lay, 0);  // width and scratch do not depend on N
  const int64_t width = grad ? any.width : 1;
  std::vector<int64_t> item_offset(static_cast<size_t>(a.K + 1));
  grid::ragged_item_offsets(a.lay, node_offset, a.K, item_offset.data());
  grid::Ragged r;
  r.node_offset = node_offset;
  r.item_offset = item_offset.data();
  r.zero = zero;
  const int64_t items = item_offset[a.K];
  std::vector<double> part(static_cast<size_t>(items * width));
  std::vector<T> scratch(static_cast<size_t>(any.scratch));
  // items: grid (ceil(items / kThreads))
  for (int64_t b = 0; b < grid::ceil_div(items, kThreads); ++b)
    for (int t = 0; t < kThreads; ++t) {
      const int64_t item = b * kThreads + t;
      if (item < items)
        grid::deep_ragged_item_thread(a, r, item, grad != nullptr, width, scratch.data(), part.data() + item * width);
    }
  // final: grid (ceil(width / kThreads), K)
  for (int64_t k = 0; k < a.K; ++k)
    for (int64_t q = 0; q < width; ++q) grid::deep_ragged_final_thread(a.lay, r, part.data(), width, k, q, risk, grad);
}

// The kernels' view of the problem (the target and teacher: unset, for given y).
template <class T>
grid::DenseArgs<T> dense_args(const Layout& lay, int64_t K, int64_t N, const void* theta, const double* x,
                              const double* w, const double* y) {
  grid::DenseArgs<T> a;
  a.lay = lay;
  a.K = K;
  a.N = N;
  a.theta = static_cast<const T*>(theta);
  a.x = x;
  a.w = w;
  a.y = y;
  return a;
}

template <class T>
void run(const Layout& lay, int64_t K, int64_t N, const void* theta, const double* x, const double* w,
         const double* y, const ProblemSpec& spec, GridPath path, double* risk, double* grad) {
  grid::DenseArgs<T> a = dense_args<T>(lay, K, N, theta, x, w, y);
  a.target = spec.target;
  a.teacher = spec.teacher;
  if (path == GridPath::Shallow)
    shallow_host(a, risk, grad);
  else
    deep_host(a, risk, grad);
}

}  // namespace

void risk_and_grad_ragged_host(const Layout& lay, int64_t K, int64_t N, bool f32, const void* theta,
                               const double* x, const double* w, const double* y, const int64_t* node_offset,
                               const uint8_t* zero, double* risk, double* grad) {
  if (f32)
    ragged_host(dense_args<float>(lay, K, N, theta, x, w, y), node_offset, zero, risk, grad);
  else
    ragged_host(dense_args<double>(lay, K, N, theta, x, w, y), node_offset, zero, risk, grad);
}

void risk_and_grad_grid_host(const Layout& lay, int64_t K, int64_t N, bool f32, const void* theta, const double* x,
                             const double* w, const double* y, const ProblemSpec& spec, GridPath path,
                             double* risk, double* grad) {
  if (path == GridPath::Auto) path = grid::shallow_supported(lay) ? GridPath::Shallow : GridPath::Deep;
  if (path == GridPath::Shallow && !grid::shallow_supported(lay))
    throw std::invalid_argument("path: 'shallow' needs widths [d, H, out] with d <= 8 and out <= 3");
  if (!y && !(spec.teacher.theta ? grid::teacher_supported(spec.teacher.lay)
                                  : spec.target.kind != kTargetData && spec.target.out <= grid::kMaxTargetOut))
    throw std::invalid_argument("y: required unless the target is a shallow teacher, affine or piecewise "
                                "polynomial, with at most 16 outputs");
  if (f32)
    run<float>(lay, K, N, theta, x, w, y, spec, path, risk, grad);
  else
    run<double>(lay, K, N, theta, x, w, y, spec, path, risk, grad);
}

}  // namespace reluflow
