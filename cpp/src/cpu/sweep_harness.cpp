// The host harness of the CUDA point sweep: see sweep_harness.h and reluflow/sweep_grid.h (the stages).
#include "cpu/sweep_harness.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "reluflow/sweep1d.h"
#include "reluflow/sweep_grid.h"

namespace reluflow {

namespace sg = sweep_grid;

namespace {

// What cub::DeviceRadixSort::SortPairs gives: the pairs ordered by key, ties in input order.
template <class V>
void stable_sort_pairs(std::vector<uint64_t>& keys, std::vector<V>& vals) {
  std::vector<int64_t> order(keys.size());
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return keys[a] < keys[b]; });
  std::vector<uint64_t> k2(keys.size());
  std::vector<V> v2(vals.size());
  for (size_t e = 0; e < order.size(); ++e) {
    k2[e] = keys[order[e]];
    v2[e] = vals[order[e]];
  }
  keys.swap(k2);
  vals.swap(v2);
}

// The segmented scan of sweep_grid.h, phases 1-3, over `segments` segments of L elements (Q each).
void scan_host(std::vector<sg::DD>& data, int64_t segments, int64_t L, int Q) {
  const sg::ScanPlan p = sg::scan_plan(L, Q);
  std::vector<sg::DD> chunk_rows(static_cast<size_t>(segments * p.chunks * Q));
  std::vector<sg::DD> thread_rows(static_cast<size_t>(sg::kThreads * Q));
  sg::DD total[sg::kMaxQ];
  for (int64_t g = 0; g < segments; ++g) {       // phase 1: grid (chunks, segments)
    sg::DD* seg = data.data() + g * L * Q;
    for (int64_t c = 0; c < p.chunks; ++c) {
      for (int t = 0; t < sg::kThreads; ++t) sg::scan_thread(seg, p, c, t, thread_rows.data() + t * Q);
      sg::exclusive_rows(thread_rows.data(), sg::kThreads, Q, chunk_rows.data() + (g * p.chunks + c) * Q);
      for (int t = 0; t < sg::kThreads; ++t) {
        int64_t e0, e1;
        sg::thread_range(p, c, t, &e0, &e1);
        sg::add_offset(seg, Q, e0, e1, thread_rows.data() + t * Q);
      }
    }
  }
  for (int64_t g = 0; g < segments; ++g)          // phase 2: one thread per segment
    sg::exclusive_rows(chunk_rows.data() + g * p.chunks * Q, p.chunks, Q, total);
  for (int64_t g = 0; g < segments; ++g)          // phase 3: chunks c >= 1
    for (int64_t c = 1; c < p.chunks; ++c) {
      const int64_t e0 = c * p.chunk, e1 = std::min(p.L, e0 + p.chunk);
      sg::add_offset(data.data() + g * L * Q, Q, e0, e1, chunk_rows.data() + (g * p.chunks + c) * Q);
    }
}

// Stages 2-7 for a group of G networks (th0: their parameters), the L "nodes" being the sorted nodes
// (point sweep) or the pieces (exact sweep): the events (keys, vals from stage 1) sorted, their pieces
// scanned, terms(kk, j, sorted keys of kk, scanned events of kk, out terms) per node, scanned, then the
// neurons' gradients and the totals.
template <class Terms>
void sweep_tail_host(const double* th0, int64_t G, int64_t H, int out, int64_t L, double c0,
                     const std::vector<int64_t>& split, std::vector<uint64_t>& keys, std::vector<int32_t>& vals,
                     const Terms& terms, double* risk, double* grad) {
  const int64_t P = sweep1d::num_params(H, out);
  const int Qe = 2 * out, Qn = 1 + 2 * out;
  stable_sort_pairs(keys, vals);  // stage 2: the events sorted (networks apart by their keys)
  // stage 3: thread per sorted event
  std::vector<sg::DD> ev(static_cast<size_t>(G * 2 * H * Qe));
  for (int64_t kk = 0; kk < G; ++kk)
    for (int64_t m = 0; m < 2 * H; ++m)
      sg::event_piece(th0 + kk * P, H, out, L, split.data() + kk * H, c0, vals[kk * 2 * H + m],
                      ev.data() + (kk * 2 * H + m) * Qe);
  scan_host(ev, G, 2 * H, Qe);  // stage 4
  // stage 5: thread per (kk, j)
  std::vector<sg::DD> nodes(static_cast<size_t>(G * L * Qn));
  for (int64_t kk = 0; kk < G; ++kk)
    for (int64_t j = 0; j < L; ++j)
      terms(kk, j, keys.data() + kk * 2 * H, ev.data() + kk * 2 * H * Qe, nodes.data() + (kk * L + j) * Qn);
  scan_host(nodes, G, L, Qn);  // stage 6
  // stage 7: thread per (kk, i), then thread per kk
  std::vector<double> gbuf(static_cast<size_t>(P));
  for (int64_t kk = 0; kk < G; ++kk) {
    double* g = grad ? grad + kk * P : gbuf.data();
    for (int64_t i = 0; i < H; ++i)
      sg::neuron_gradient(th0 + kk * P, H, out, L, c0, split.data() + kk * H, nodes.data() + kk * L * Qn, i, g);
  }
  for (int64_t kk = 0; kk < G; ++kk)
    risk[kk] = sg::network_totals(th0 + kk * P, H, out, L, nodes.data() + kk * L * Qn, grad ? grad + kk * P : nullptr);
}

}  // namespace

void point_sweep_grid_host(const double* theta, int64_t K, int64_t H, int out, int64_t N, const double* x,
                           const double* w, const double* y, int64_t group, double* risk, double* grad) {
  const int64_t P = sweep1d::num_params(H, out);
  // stage 0: the nodes sorted once for every group
  std::vector<uint64_t> nkeys(static_cast<size_t>(N));
  std::vector<int64_t> nidx(static_cast<size_t>(N));
  for (int64_t j = 0; j < N; ++j) {
    nkeys[j] = sg::sort_key(x[j]);
    nidx[j] = j;
  }
  stable_sort_pairs(nkeys, nidx);
  std::vector<double> xs(N), ws(N), ys(N * out);
  for (int64_t j = 0; j < N; ++j) {
    xs[j] = x[nidx[j]];
    ws[j] = w[nidx[j]];
    for (int o = 0; o < out; ++o) ys[j * out + o] = y[nidx[j] * out + o];
  }
  const double c0 = sg::centre(xs.data(), N);
  for (int64_t k0 = 0; k0 < K; k0 += group) {
    const int64_t G = std::min(group, K - k0);
    const double* th0 = theta + k0 * P;
    // stage 1: thread per (kk, i)
    std::vector<int64_t> split(static_cast<size_t>(G * H));
    std::vector<uint64_t> keys(static_cast<size_t>(G * 2 * H));
    std::vector<int32_t> vals(static_cast<size_t>(G * 2 * H));
    for (int64_t kk = 0; kk < G; ++kk)
      for (int64_t i = 0; i < H; ++i)
        sg::neuron_events(th0 + kk * P, H, N, xs.data(), kk, i, split.data() + kk * H, keys.data() + kk * 2 * H,
                          vals.data() + kk * 2 * H);
    const auto terms = [&](int64_t kk, int64_t j, const uint64_t* keys_k, const sg::DD* ev_k, sg::DD* t) {
      sg::node_terms(th0 + kk * P, H, out, N, xs.data(), ws.data(), ys.data(), c0, keys_k, ev_k, kk, j, t);
    };
    sweep_tail_host(th0, G, H, out, N, c0, split, keys, vals, terms, risk + k0, grad ? grad + k0 * P : nullptr);
  }
}

void exact_sweep_grid_host(const double* theta, int64_t K, int64_t H, int out, const sweep_grid::ExactArgs& ex,
                           int64_t group, double* risk, double* grad) {
  const int64_t P = sweep1d::num_params(H, out);
  const int64_t L = sg::exact_pieces(ex.ng, H);
  for (int64_t k0 = 0; k0 < K; k0 += group) {
    const int64_t G = std::min(group, K - k0);
    const double* th0 = theta + k0 * P;
    // stage 1a: thread per (kk, i); the segmented sort of each network's kinks
    std::vector<uint64_t> kkeys(static_cast<size_t>(G * H));
    std::vector<int32_t> kvals(static_cast<size_t>(G * H));
    for (int64_t kk = 0; kk < G; ++kk) {
      for (int64_t i = 0; i < H; ++i)
        sg::exact_kink_key(th0 + kk * P, H, ex, i, &kkeys[kk * H + i], &kvals[kk * H + i]);
      std::vector<uint64_t> k(kkeys.begin() + kk * H, kkeys.begin() + (kk + 1) * H);
      std::vector<int32_t> v(kvals.begin() + kk * H, kvals.begin() + (kk + 1) * H);
      stable_sort_pairs(k, v);
      std::copy(k.begin(), k.end(), kkeys.begin() + kk * H);
      std::copy(v.begin(), v.end(), kvals.begin() + kk * H);
    }
    // stage 1b: thread per sorted kink; 1c: thread per grid point
    std::vector<int64_t> split(static_cast<size_t>(G * H));
    std::vector<double> merged(static_cast<size_t>(G * (L + 1)));
    std::vector<uint64_t> keys(static_cast<size_t>(G * 2 * H));
    std::vector<int32_t> vals(static_cast<size_t>(G * 2 * H));
    for (int64_t kk = 0; kk < G; ++kk) {
      for (int64_t s = 0; s < H; ++s)
        sg::exact_kink_rank(th0 + kk * P, H, ex, kkeys.data() + kk * H, kvals.data() + kk * H, kk, s,
                            split.data() + kk * H, merged.data() + kk * (L + 1), keys.data() + kk * 2 * H,
                            vals.data() + kk * 2 * H);
      for (int64_t g = 0; g < ex.ng; ++g)
        sg::exact_grid_point(ex, kkeys.data() + kk * H, H, g, merged.data() + kk * (L + 1));
    }
    const auto terms = [&](int64_t kk, int64_t p, const uint64_t* keys_k, const sg::DD* ev_k, sg::DD* t) {
      sg::piece_terms(th0 + kk * P, H, out, ex, merged.data() + kk * (L + 1), keys_k, ev_k, kk, p, t);
    };
    sweep_tail_host(th0, G, H, out, L, ex.c0, split, keys, vals, terms, risk + k0, grad ? grad + k0 * P : nullptr);
  }
}

}  // namespace reluflow
