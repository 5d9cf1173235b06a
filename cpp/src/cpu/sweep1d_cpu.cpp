// CPU loops of the shallow 1-D sweeps: exact quadrature (piecewise-polynomial target and density)
// and arbitrary weighted point sets. OpenMP over networks; every network is computed start to finish
// by one thread with its own buffers and a fixed order of operations, so results do not depend on
// the number of threads. The per-piece / per-neuron math is in reluflow/sweep1d.h.
#include "cpu/sweep1d_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "cpu/parallel_policy.h"
#include "cpu/radix_sort.h"
#include "cpu/simd_dispatch.h"
#include "reluflow/finite.h"
#include "reluflow/sweep1d.h"

#ifdef RELUFLOW_OPENMP
#include <omp.h>
#endif

namespace reluflow {

namespace {

using sweep1d::csum_add;

struct Kink {
  double k;   // -b_i / w_i
  int64_t i;  // neuron
};

inline bool kink_less(const Kink& a, const Kink& b) { return a.k < b.k || (a.k == b.k && a.i < b.i); }

}  // namespace

// Threads for K networks: never more than K (an idle thread would only add a barrier wait, which on a
// loaded machine can cost a scheduler time slice), and one for small calls (parallel_policy.h).
int sweep_threads(int64_t K, int64_t size) {
#ifdef RELUFLOW_OPENMP
  if (K * size < kMinParallelSweep) return 1;
  const int64_t t = std::min<int64_t>(K, omp_get_max_threads());
  return static_cast<int>(std::max<int64_t>(t, 1));
#else
  (void)K;
  (void)size;
  return 1;
#endif
}

namespace {


// The neurons with w_i != 0 (w_i = 0: constant neuron, no kink) sorted by kink, with their parameters
// gathered into that order once and their gradients scattered back once: the passes over the sorted
// kinks then touch memory sequentially (this matters from H ~ 10^5 on, where theta leaves the caches).
struct SortedNeurons {
  std::vector<Kink> kinks;
  std::vector<double> w, b, v;     // (nk,), (nk,), (nk, out)
  std::vector<double> gw, gb, gv;  // gradients, same layout

  int64_t build(const double* th, int64_t H, int out) {
    kinks.clear();
    for (int64_t i = 0; i < H; ++i) {
      const double wi = th[i];
      if (wi != 0.0) kinks.push_back(Kink{-th[H + i] / wi, i});
    }
    std::sort(kinks.begin(), kinks.end(), kink_less);
    const int64_t nk = static_cast<int64_t>(kinks.size());
    w.resize(nk);
    b.resize(nk);
    v.resize(nk * out);
    gw.resize(nk);
    gb.resize(nk);
    gv.resize(nk * out);
    const double* V = th + sweep1d::off_V(H);
    for (int64_t s = 0; s < nk; ++s) {
      const int64_t i = kinks[s].i;
      w[s] = th[i];
      b[s] = th[H + i];
      for (int o = 0; o < out; ++o) v[s * out + o] = V[o * H + i];
    }
    return nk;
  }

  void toggle(int64_t s, int out, double c0, double* As, double* Ac, double* Bs, double* Bc) const {
    sweep1d::toggle_neuron(w[s], b[s], v.data() + s * out, 1, out, w[s] > 0.0 ? 1.0 : -1.0, c0, As, Ac,
                           Bs, Bc);
  }

  void grad(int64_t s, int out, double c0, const double* S0, const double* S1) {
    sweep1d::neuron_grad(w[s], b[s], v.data() + s * out, 1, out, c0, S0, S1, &gw[s], &gb[s],
                         gv.data() + s * out, 1);
  }

  void scatter(double* g, int64_t H, int out) const {
    double* gV = g + sweep1d::off_V(H);
    for (size_t s = 0; s < kinks.size(); ++s) {
      const int64_t i = kinks[s].i;
      g[i] = gw[s];
      g[H + i] = gb[s];
      for (int o = 0; o < out; ++o) gV[o * H + i] = gv[s * out + o];
    }
  }
};

// Per-thread compensated vectors over the outputs.
struct Comp {
  std::vector<double> s, c;
  void reset(int out) {
    s.assign(out, 0.0);
    c.assign(out, 0.0);
  }
  void add(const double* t, int out) {
    for (int o = 0; o < out; ++o) csum_add(s[o], c[o], t[o]);
  }
  void value(double* v, int out) const {
    for (int o = 0; o < out; ++o) v[o] = s[o] + c[o];
  }
};

// Initial affine state at x -> -inf: c, plus every neuron with w < 0, plus every constant neuron
// with b > 0.
void initial_state(const double* th, int64_t H, int out, double c0, const SortedNeurons& sn, Comp& A,
                   Comp& B) {
  A.reset(out);
  B.reset(out);
  const double* c = th + sweep1d::off_c(H, out);
  for (int o = 0; o < out; ++o) B.s[o] = c[o];
  for (size_t s = 0; s < sn.kinks.size(); ++s)
    if (sn.w[s] < 0.0)
      sweep1d::toggle_neuron(sn.w[s], sn.b[s], sn.v.data() + s * out, 1, out, 1.0, c0, A.s.data(),
                             A.c.data(), B.s.data(), B.c.data());
  for (int64_t i = 0; i < H; ++i)
    if (th[i] == 0.0 && th[H + i] > 0.0)
      sweep1d::toggle_neuron(0.0, th[H + i], th + sweep1d::off_V(H) + i, H, out, 1.0, c0, A.s.data(),
                             A.c.data(), B.s.data(), B.c.data());
}

// Gradients of the constant neurons (w_i = 0): active everywhere iff b_i > 0, then the totals
// T0, T1 are their moments; otherwise zero (relu'(b_i) = 0, relu(b_i) = 0).
void constant_neurons(const double* th, double* g, int64_t H, int out, double c0, const double* T0,
                      const double* T1) {
  const int64_t ov = sweep1d::off_V(H);
  for (int64_t i = 0; i < H; ++i) {
    if (th[i] != 0.0) continue;
    if (th[H + i] > 0.0) {
      sweep1d::neuron_grad(0.0, th[H + i], th + ov + i, H, out, c0, T0, T1, g + i, g + H + i, g + ov + i, H);
    } else {
      g[i] = 0.0;
      g[H + i] = 0.0;
      for (int o = 0; o < out; ++o) g[ov + static_cast<int64_t>(o) * H + i] = 0.0;
    }
  }
}

}  // namespace

// ---- exact quadrature ---------------------------------------------------------------------------

void shallow1d_exact_cpu(const double* theta, int64_t K, int64_t H, int out, double lo, double hi,
                         const PiecewisePoly1D& target, const PiecewisePoly1D& density, double* risk,
                         double* grad) {
  const int64_t P = sweep1d::num_params(H, out);
  // the fixed grid: lo, hi, and the target's and density's breaks strictly inside (lo, hi)
  std::vector<double> G{lo, hi};
  for (int64_t j = 0; j <= target.m; ++j)
    if (target.breaks[j] > lo && target.breaks[j] < hi) G.push_back(target.breaks[j]);
  for (int64_t j = 0; j <= density.m; ++j)
    if (density.breaks[j] > lo && density.breaks[j] < hi) G.push_back(density.breaks[j]);
  std::sort(G.begin(), G.end());
  G.erase(std::unique(G.begin(), G.end()), G.end());
  const int64_t ng = static_cast<int64_t>(G.size());

  const int q = sweep1d::exact_order(target.deg, density.deg);
  std::vector<double> gt(q), gw(q);
  gauss_legendre(q, gt.data(), gw.data());
  const double c0 = 0.5 * (lo + hi);
  const int64_t tstride = static_cast<int64_t>(target.deg + 1) * out;
  const int64_t dstride = density.deg + 1;

#pragma omp parallel num_threads(sweep_threads(K, H))
  {
    SortedNeurons sn;
    std::vector<int64_t> piece_of;     // per sorted kink: number of pieces to its left
    std::vector<double> mom0, mom1;    // per piece and output: ∫ r rho, ∫ (x - c0) r rho
    Comp A, B, S0, S1;
    std::vector<double> Av(out), Bv(out), v0(out), v1(out), T0(out), T1(out);

#pragma omp for schedule(dynamic, 1)
    for (int64_t k = 0; k < K; ++k) {
      const double* th = theta + k * P;
      double* g = grad + k * P;
      if (!all_finite(th, P)) {
        risk[k] = std::numeric_limits<double>::quiet_NaN();
        fill_nan(g, P);
        continue;
      }
      const int64_t nk = sn.build(th, H, out);
      const std::vector<Kink>& kinks = sn.kinks;
      piece_of.assign(nk, 0);
      const int64_t max_pieces = ng - 1 + nk;
      mom0.resize(max_pieces * out);
      mom1.resize(max_pieces * out);

      // ---- sweep: pieces between consecutive points of grid ∪ kinks, net affine on each ----
      initial_state(th, H, out, c0, sn, A, B);
      int64_t s = 0;
      while (s < nk && kinks[s].k <= lo) {
        sn.toggle(s, out, c0, A.s.data(), A.c.data(), B.s.data(), B.c.data());
        piece_of[s] = 0;
        ++s;
      }
      int64_t np = 0, jt = 0, jd = 0, gi = 1;
      double a = lo, rsum = 0.0, rcomp = 0.0;
      while (gi < ng) {
        double b = G[gi];
        if (s < nk && kinks[s].k < b) b = kinks[s].k;  // > a: every kink <= a is already toggled
        const double mid = 0.5 * (a + b);
        while (jt + 1 < target.m && target.breaks[jt + 1] <= mid) ++jt;
        while (jd + 1 < density.m && density.breaks[jd + 1] <= mid) ++jd;
        const bool in_density = mid >= density.breaks[0] && mid <= density.breaks[density.m];
        A.value(Av.data(), out);
        B.value(Bv.data(), out);
        const double pr = sweep1d::piece_moments(
            a, b, q, gt.data(), gw.data(), out, Av.data(), Bv.data(), c0,
            target.coeffs + jt * tstride, target.deg, target.breaks[jt],
            in_density ? density.coeffs + jd * dstride : nullptr, density.deg, density.breaks[jd],
            mom0.data() + np * out, mom1.data() + np * out);
        csum_add(rsum, rcomp, pr);
        ++np;
        while (s < nk && kinks[s].k <= b) {
          sn.toggle(s, out, c0, A.s.data(), A.c.data(), B.s.data(), B.c.data());
          piece_of[s] = np;
          ++s;
        }
        if (G[gi] <= b) ++gi;
        a = b;
      }
      for (; s < nk; ++s) piece_of[s] = np;
      risk[k] = rsum + rcomp;

      // ---- neurons with w < 0: active on [lo, kink], prefix sums over the pieces ----
      S0.reset(out);
      S1.reset(out);
      s = 0;
      for (int64_t p = 0; p <= np; ++p) {
        if (s < nk && piece_of[s] == p) {
          S0.value(v0.data(), out);
          S1.value(v1.data(), out);
          for (; s < nk && piece_of[s] == p; ++s)
            if (sn.w[s] < 0.0) sn.grad(s, out, c0, v0.data(), v1.data());
        }
        if (p < np) {
          S0.add(mom0.data() + p * out, out);
          S1.add(mom1.data() + p * out, out);
        }
      }
      S0.value(T0.data(), out);
      S1.value(T1.data(), out);

      // ---- neurons with w > 0: active on [kink, hi], suffix sums over the pieces ----
      S0.reset(out);
      S1.reset(out);
      s = nk - 1;
      for (int64_t p = np; p >= 0; --p) {
        if (p < np) {
          S0.add(mom0.data() + p * out, out);
          S1.add(mom1.data() + p * out, out);
        }
        if (s >= 0 && piece_of[s] == p) {
          S0.value(v0.data(), out);
          S1.value(v1.data(), out);
          for (; s >= 0 && piece_of[s] == p; --s)
            if (sn.w[s] > 0.0) sn.grad(s, out, c0, v0.data(), v1.data());
        }
      }

      sn.scatter(g, H, out);
      constant_neurons(th, g, H, out, c0, T0.data(), T1.data());
      double* gc = g + sweep1d::off_c(H, out);
      for (int o = 0; o < out; ++o) gc[o] = 2.0 * T0[o];
    }
  }
}

// ---- arbitrary weighted points ----------------------------------------------------------------

namespace {

using PointSweepFn = void (*)(const double*, int64_t, int64_t, int, int64_t, const double*, const double*,
                              const double*, const NodeCells&, double*, double*);

// The compiled point sweep of a SIMD path (set_simd_path accepts compiled paths only).
PointSweepFn point_sweep_for(SimdPath path) {
  switch (path) {
#ifdef RELUFLOW_HAVE_ISA_AVX512
    case SimdPath::Avx512:
      return &detail::isa_avx512::shallow1d_points_sorted;
#endif
#ifdef RELUFLOW_HAVE_ISA_AVX2
    case SimdPath::Avx2:
      return &detail::isa_avx2::shallow1d_points_sorted;
#endif
    default:
      return &detail::isa_scalar::shallow1d_points_sorted;
  }
}

// The sorted nodes of one call, kept per thread between calls (up to kMaxRetainedSortBytes).
struct SortedNodes {
  std::vector<double> xs, ws, ys;
  NodeCells cells;  // the bucket sort's cells (the sweep's node locator reads them)
  void trim() {
    const size_t bytes = (xs.capacity() + ws.capacity() + ys.capacity() + cells.first.capacity()) * 8;
    if (bytes > static_cast<size_t>(kMaxRetainedSortBytes)) *this = SortedNodes();
  }
};

}  // namespace

void shallow1d_points_cpu(const double* theta, int64_t K, int64_t H, int out, int64_t N,
                          const double* x, const double* wt, const double* y, double* risk,
                          double* grad) {
  // nodes sorted once, shared by every network (stable: ties keep their input order); the sort and
  // the gather use every thread (they are most of the work when K is small)
  int threads = 1;
#ifdef RELUFLOW_OPENMP
  if (N >= kMinParallelSort) threads = omp_get_max_threads();
#endif
  static thread_local SortedNodes sn;
  sn.xs.resize(N);
  sn.ws.resize(N);
  sn.ys.resize(N * out);
  // the sort's cell table only where the locator takes it (M = 0 otherwise: no table)
  const bool table = locator_takes_sort_cells(N, H * K);
  sort_weighted_nodes(x, wt, y, out, N, threads, sn.xs.data(), sn.ws.data(), sn.ys.data(),
                      table ? &sn.cells : nullptr);
  if (!table) sn.cells.M = 0;
  point_sweep_for(active_simd_path())(theta, K, H, out, N, sn.xs.data(), sn.ws.data(), sn.ys.data(), sn.cells,
                                      risk, grad);
  sn.trim();
}

}  // namespace reluflow
