// The GD update kernel's grid and the Heun / RK4 stage and update kernels' grids run on the host
// (see gd_harness.h and cuda/src/gd_loop.cu's gd_step_kernel, rk_stage_kernel and rk_update_kernel,
// which this mirrors phase for phase).
#include "cpu/gd_harness.h"

#include <vector>

namespace reluflow {

namespace {

// A block's tree over its threads' rows (width doubles each), as the kernels' block_tree.
void tree(std::vector<double>& sh, int width = gd::kWidth) {
  for (int s = gd::kThreads / 2; s > 0; s >>= 1)
    for (int t = 0; t < gd::kThreads; ++t) grid::tree_step(sh.data(), width, t, s);
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

template <class T>
void rk_stage_host(const rk::RkArgs<T>& a, int s) {
  for (int64_t e = 0; e < a.K * a.P; ++e) rk::stage_entry(a, s, e);
}

template <class T>
void rk_update_host(const rk::RkArgs<T>& a) {
  std::vector<double> sh(static_cast<size_t>(rk::kThreads * rk::kWidth));
  for (int64_t k = 0; k < a.K; ++k) {
    if (!a.st.active[k]) continue;
    for (int t = 0; t < rk::kThreads; ++t) rk::test_thread(a, k, t, sh.data() + t * rk::kWidth);
    tree(sh, rk::kWidth);
    if (!rk::accept_block(a, k, sh.data())) continue;
    for (int t = 0; t < rk::kThreads; ++t) rk::store_thread(a, k, t);
  }
}

template void rk_stage_host<float>(const rk::RkArgs<float>&, int);
template void rk_stage_host<double>(const rk::RkArgs<double>&, int);
template void rk_update_host<float>(const rk::RkArgs<float>&);
template void rk_update_host<double>(const rk::RkArgs<double>&);
template void gd_step_host<float>(const gd::StepArgs<float>&);
template void gd_step_host<double>(const gd::StepArgs<double>&);

}  // namespace reluflow
