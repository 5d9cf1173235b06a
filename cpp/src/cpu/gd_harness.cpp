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

template <class T>
void dp_init_host(const dp::Args<T>& a) {
  for (int64_t k = 0; k < a.K; ++k) {
    for (int t = 0; t < dp::kThreads; ++t) dp::init_thread(a, k, t);
    dp::init_block(a, k);
    for (int t = 0; t < dp::kThreads; ++t) dp::record_rows_thread(a, k, t, 0, a.st.nxt[k]);
  }
}

template <class T>
void dp_begin_host(const dp::Args<T>& a, int64_t it) {
  for (int64_t k = 0; k < a.K; ++k) dp::begin_network(a, k, it);
}

template <class T>
void dp_stage_host(const dp::Args<T>& a, int st) {
  std::vector<double> sh(static_cast<size_t>(dp::kThreads));
  for (int64_t k = 0; k < a.K; ++k) {
    if (a.st.done[k]) continue;
    for (int t = 0; t < dp::kThreads; ++t) dp::stage_count_thread(a, st, k, t, sh.data() + t);
    tree(sh, 1);
    for (int t = 0; t < dp::kThreads; ++t) dp::stage_store_thread(a, st, k, t, sh[0] > 0);
  }
}

template <class T>
void dp_finish_host(const dp::Args<T>& a) {
  std::vector<double> sh(static_cast<size_t>(dp::kThreads * dp::kWidth));
  for (int64_t k = 0; k < a.K; ++k) {
    if (a.st.done[k]) continue;
    if (a.normalized) {  // y_new, then (a barrier) its neurons retracted
      for (int t = 0; t < dp::kThreads; ++t) dp::new_row_thread(a, k, t);
      for (int t = 0; t < dp::kThreads; ++t) dp::retract_row_thread(a, k, t);
    }
    for (int t = 0; t < dp::kThreads; ++t) dp::finish_thread(a, k, t, sh.data() + t * dp::kWidth);
    tree(sh, dp::kWidth);
    int64_t j0 = 0, j1 = 0;
    if (!dp::finish_block(a, k, sh.data(), &j0, &j1)) continue;
    for (int t = 0; t < dp::kThreads; ++t) dp::store_thread(a, k, t, j0, j1);
  }
}

template <class T>
void dp_conclude_host(const dp::Args<T>& a) {
  std::vector<double> sh(static_cast<size_t>(dp::kThreads));
  for (int64_t k = 0; k < a.K; ++k) {
    if (!a.st.pending[k]) continue;
    for (int t = 0; t < dp::kThreads; ++t) dp::conclude_thread(a, k, t, sh.data() + t);
    tree(sh, 1);
    int64_t j0 = 0, j1 = 0;
    dp::conclude_pending_block(a, k, sh.data(), &j0, &j1);
    for (int t = 0; t < dp::kThreads; ++t) dp::record_rows_thread(a, k, t, j0, j1);
  }
}

template <class T>
void nm_project_host(const Layout& lay, int64_t K, const T* theta, double* grad) {
  const int64_t H = hidden_neurons(lay);
  for (int64_t e = 0; e < K * H; ++e) nm::project_entry(lay, H, theta, grad, e);
}

template <class T>
void nm_update_host(const nm::UpdateArgs<T>& a) {
  std::vector<double> sh(static_cast<size_t>(nm::kThreads * nm::kWidth));
  for (int64_t k = 0; k < a.K; ++k) {
    if (!a.st.active[k]) continue;
    for (int t = 0; t < nm::kThreads; ++t) nm::fill_thread(a, k, t, sh.data() + t * nm::kWidth);
    for (int t = 0; t < nm::kThreads; ++t) nm::retract_thread(a, k, t);
    for (int t = 0; t < nm::kThreads; ++t) nm::test_thread(a, k, t, sh.data() + t * nm::kWidth);
    tree(sh, nm::kWidth);
    if (!nm::accept_block(a, k, sh.data())) continue;
    for (int t = 0; t < nm::kThreads; ++t) nm::store_thread(a, k, t);
  }
}

template void nm_project_host<float>(const Layout&, int64_t, const float*, double*);
template void nm_project_host<double>(const Layout&, int64_t, const double*, double*);
template void nm_update_host<float>(const nm::UpdateArgs<float>&);
template void nm_update_host<double>(const nm::UpdateArgs<double>&);

template <class T>
void rows_gather_host(const int64_t* evaluated, int64_t n, int64_t P, const T* rows, T* compact) {
  for (int64_t e = 0; e < n * P; ++e) rows::gather_entry(evaluated, P, rows, compact, e);
}

void rows_scatter_host(const int64_t* evaluated, int64_t n, int64_t P, const double* compact, double* rows) {
  for (int64_t e = 0; e < n * P; ++e) rows::scatter_entry(evaluated, P, compact, rows, e);
}

#define RF_DP_INST(T)                                   \
  template void dp_init_host<T>(const dp::Args<T>&);    \
  template void dp_begin_host<T>(const dp::Args<T>&, int64_t); \
  template void dp_stage_host<T>(const dp::Args<T>&, int); \
  template void dp_finish_host<T>(const dp::Args<T>&);  \
  template void dp_conclude_host<T>(const dp::Args<T>&); \
  template void rows_gather_host<T>(const int64_t*, int64_t, int64_t, const T*, T*);
RF_DP_INST(float)
RF_DP_INST(double)
#undef RF_DP_INST

template void rk_stage_host<float>(const rk::RkArgs<float>&, int);
template void rk_stage_host<double>(const rk::RkArgs<double>&, int);
template void rk_update_host<float>(const rk::RkArgs<float>&);
template void rk_update_host<double>(const rk::RkArgs<double>&);
template void gd_step_host<float>(const gd::StepArgs<float>&);
template void gd_step_host<double>(const gd::StepArgs<double>&);

}  // namespace reluflow
