// The GD update kernel's grid run on the host (see gd_harness.h and cuda/src/gd_loop.cu's
// gd_step_kernel, which this mirrors phase for phase).
#include "cpu/gd_harness.h"

#include <vector>

namespace reluflow {

namespace {

// A block's tree over its threads' rows (gd::kWidth doubles each), as the kernel's block_tree.
void tree(std::vector<double>& sh) {
  for (int s = gd::kThreads / 2; s > 0; s >>= 1)
    for (int t = 0; t < gd::kThreads; ++t) grid::tree_step(sh.data(), gd::kWidth, t, s);
}

}  // namespace

template <class T>
void gd_step_host(const gd::StepArgs<T>& a) {
  std::vector<double> sh(static_cast<size_t>(gd::kThreads * gd::kWidth));
  for (int64_t k = 0; k < a.K; ++k) {
    for (int t = 0; t < gd::kThreads; ++t) gd::grad_thread(a, k, t, sh.data() + t * gd::kWidth);
    tree(sh);
    if (!gd::watch_block(a, k, sh.data())) continue;
    for (int t = 0; t < gd::kThreads; ++t) gd::test_thread(a, k, t, sh.data() + t * gd::kWidth);
    tree(sh);
    if (!gd::accept_block(a, k, sh.data())) continue;
    for (int t = 0; t < gd::kThreads; ++t) gd::store_thread(a, k, t);
  }
}

template void gd_step_host<float>(const gd::StepArgs<float>&);
template void gd_step_host<double>(const gd::StepArgs<double>&);

}  // namespace reluflow
