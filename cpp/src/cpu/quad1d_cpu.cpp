// CPU loops of the exact 1-D quadrature on the kink partition (quad1d_cpu.h): the kinks layer by layer,
// the merge with the fixed breaks, the nodes, and the per-network call of the fused dense kernel. The
// per-piece formulas are reluflow/kinks1d.h. Compiled once per instruction set like the dense kernels
// (RELUFLOW_SIMD_ISA from CMake; simd.h, "ISA translation units"): the matrix-vector products of the
// kink partition and of the vanishing check run in the path's registers, every output summed in input
// order as in the scalar code (no FMA: -ffp-contract=off), so every path gives the same bits;
// quad1d_dispatch.cpp calls the path that runs.
#include "cpu/quad1d_cpu.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu/parallel_policy.h"
#include "reluflow/finite.h"
#include "reluflow/gauss_legendre.h"
#include "reluflow/kinks1d.h"
#include "reluflow/manifold.h"
#include "reluflow/net.h"
#include "cpu/risk_grad_cpu.h"

#include "reluflow/simd.h"

#ifdef RELUFLOW_OPENMP
#include <omp.h>
#endif

RELUFLOW_SIMD_BEGIN
namespace reluflow {
namespace detail {
namespace RELUFLOW_ISA_NS {

namespace {

void sort_unique(std::vector<double>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

// Scratch of one thread, reused across its networks.
struct Scratch {
  std::vector<double> pts, e, fresh, merged;  // break points
  std::vector<double> za, zb;                 // pre-activations at the break points (n, l)
  std::vector<double> wt, wabs;               // transposed weights of one layer (l_in, l_out), |wt|
  std::vector<double> acc;                    // one row of accumulators (l_out,)
  std::vector<double> theta64;                // the network in float64
  std::vector<double> part, grid;             // its partition, merged with the fixed breaks
  std::vector<double> x, w, y;                // nodes, weights, target values
  std::vector<double> zt;                     // teacher activations of one node
  std::vector<double> ez, em, nz, nm;         // vanishing_on_pieces: values and magnitudes at the ends
  std::vector<uint8_t> vanish, piece_zero;    // per end point, per piece (hidden flags)
  std::vector<uint8_t> zero;                  // per node (hidden flags), when any piece has one
  // two hidden layers: the partition's layer-1 break points (probes at open ends) and the layer-2
  // pre-activations there (n, l2), kept for the vanishing check; empty when the partition stopped early
  std::vector<double> part_e, part_z2;
  std::vector<uint8_t> maybe;                 // per grid point and layer-2 neuron: might vanish
};

// wt (l_k, l_{k+1}): the weights W_{k+1} (l_{k+1}, l_k) of theta transposed, so that the loops over a
// layer's outputs run over contiguous weights.
void transposed_weights(const Layout& lay, const double* th, int k, std::vector<double>& wt) {
  const int ni = lay.widths[k], no = lay.widths[k + 1];
  const double* W = th + lay.w_offset[k];
  wt.resize(static_cast<size_t>(ni) * no);
  for (int o = 0; o < no; ++o)
    for (int i = 0; i < ni; ++i) wt[static_cast<size_t>(i) * no + o] = W[static_cast<int64_t>(o) * ni + i];
}

// Pre-activations z (n, l_{upto+1}) of hidden layer `upto` (0-based) at the 1-D points e (n,), as
// quadrature._preactivations: layer 1 is x w + b (product, then sum), deeper layers relu(z) W^T + b
// with the products of each output summed in input order. The weights are transposed so that the
// inner loop runs over the outputs (contiguous, vectorized, and each output still sums in input
// order); a zero activation is skipped (adding the +0 or -0 product to a sum started at +0 changes
// nothing).
void preactivations(const Layout& lay, const double* th, const std::vector<double>& e, int upto, Scratch& s,
                    std::vector<double>& z) {
  const int64_t n = static_cast<int64_t>(e.size());
  const int l1 = lay.widths[1];
  const double* W1 = th + lay.w_offset[0];
  const double* b1 = th + lay.b_offset[0];
  z.resize(static_cast<size_t>(n * l1));
  for (int64_t j = 0; j < n; ++j)
    for (int i = 0; i < l1; ++i) {
      const double p = e[j] * W1[i];
      z[j * l1 + i] = p + b1[i];
    }
  std::vector<double>* cur = &z;
  std::vector<double>* nxt = &s.zb;
  for (int k = 1; k <= upto; ++k) {
    const int ni = lay.widths[k], no = lay.widths[k + 1];
    const double* b = th + lay.b_offset[k];
    transposed_weights(lay, th, k, s.wt);
    nxt->resize(static_cast<size_t>(n * no));
    s.acc.resize(no);
    double* acc = s.acc.data();
    for (int64_t j = 0; j < n; ++j) {
      const double* zin = cur->data() + j * ni;
      std::fill(acc, acc + no, 0.0);
      for (int i = 0; i < ni; ++i) {
        const double zi = zin[i];
        // np.maximum(z, 0): NaN propagates (overflowed pre-activations), -0 and +0 are both skipped
        const double a = zi > 0.0 ? zi : (zi == zi ? 0.0 : zi);
        if (a == 0.0) continue;
        const double* wrow = s.wt.data() + static_cast<size_t>(i) * no;
        for (int o = 0; o < no; ++o) acc[o] += a * wrow[o];
      }
      double* zo = nxt->data() + j * no;
      for (int o = 0; o < no; ++o) zo[o] = acc[o] + b[o];
    }
    std::swap(cur, nxt);
  }
  if (cur != &z) z.swap(*cur);
}

void kink_partition_impl(const Layout& lay, const double* th, double lo, double hi, Scratch& s,
                         std::vector<double>& out) {
  using namespace kinks1d;
  std::vector<double>& pts = s.pts;
  pts.clear();
  const int l1 = lay.widths[1];
  const double* W1 = th + lay.w_offset[0];
  const double* b1 = th + lay.b_offset[0];
  for (int i = 0; i < l1; ++i) {
    double x;
    if (first_layer_kink(W1[i], b1[i], &x) && strictly_inside(x, lo, hi)) pts.push_back(x);
  }
  sort_unique(pts);
  const bool left_open = std::isinf(lo), right_open = std::isinf(hi);
  s.part_e.clear();
  s.part_z2.clear();
  for (int k = 1; k < lay.num_layers - 1; ++k) {
    // no kink anywhere before layer k means w_1 = 0: the whole network is constant
    if (pts.empty() && left_open && right_open) break;
    std::vector<double>& e = s.e;
    e.clear();
    e.push_back(lo);
    e.insert(e.end(), pts.begin(), pts.end());
    e.push_back(hi);
    const int64_t n = static_cast<int64_t>(e.size());
    // finite probe points replace infinite ends (any point of the unbounded piece will do)
    if (left_open) e[0] = left_probe(e[1]);
    if (right_open) e[n - 1] = right_probe(e[n - 2]);
    preactivations(lay, th, e, k, s, s.za);
    const int l = lay.widths[k + 1];
    const double* z = s.za.data();
    std::vector<double>& fresh = s.fresh;
    fresh.clear();
    for (int64_t j = 0; j + 1 < n; ++j) {
      // an unbounded end piece is left to the extrapolation below (which also covers its finite part)
      if ((j == 0 && left_open) || (j == n - 2 && right_open)) continue;
      for (int o = 0; o < l; ++o) {
        double x;
        if (zero_on_piece(e[j], e[j + 1], z[j * l + o], z[(j + 1) * l + o], &x) && strictly_inside(x, lo, hi))
          fresh.push_back(x);
      }
    }
    if (left_open)
      for (int o = 0; o < l; ++o) {
        double x;
        if (zero_beyond(e[1], e[0], z[l + o], z[o], &x) && strictly_inside(x, lo, hi)) fresh.push_back(x);
      }
    if (right_open)
      for (int o = 0; o < l; ++o) {
        double x;
        if (zero_beyond(e[n - 2], e[n - 1], z[(n - 2) * l + o], z[(n - 1) * l + o], &x) &&
            strictly_inside(x, lo, hi))
          fresh.push_back(x);
      }
    if (lay.num_layers == 3) {  // the last layer's values, for two_hidden_layers_flags (no copy)
      s.part_e.swap(e);
      s.part_z2.swap(s.za);
    }
    if (!fresh.empty()) {
      sort_unique(fresh);
      s.merged.resize(pts.size() + fresh.size());
      std::merge(pts.begin(), pts.end(), fresh.begin(), fresh.end(), s.merged.begin());
      s.merged.erase(std::unique(s.merged.begin(), s.merged.end()), s.merged.end());
      pts.swap(s.merged);
    }
  }
  out.clear();
  out.reserve(pts.size() + 2);
  out.push_back(lo);
  out.insert(out.end(), pts.begin(), pts.end());
  out.push_back(hi);
}

// Safety factor of might_vanish's test over its error analysis (which bounds the gap between a
// layer-2 value interpolated from the partition's and the one computed at the point by ~7 terms eps C).
constexpr double kMightVanishMargin = 1024.0;

// s.maybe (n, l2): 0 where layer-2 neuron o cannot pass the vanishing test at grid point j (s.e), 1 where
// it might. Between two consecutive break points a < b of the partition's layer 1 every layer-2
// pre-activation is affine in exact arithmetic, so its value at a grid point x of [a, b] is the
// interpolation zi of the partition's values at a and b (s.part_z2: computed by the same sums, so each
// within terms eps C of exact, C = (max(|a|, |b|) max|W1| + max|b1|) sum_i |W2_oi| + |b2_o| bounding
// every magnitude on [a, b]). The value computed at x is then within ~7 terms eps C + 8 eps (|za| +
// |zb|) of zi, while passing the test needs it within 4 terms eps C of 0: a neuron whose |zi| exceeds
// kMightVanishMargin times that cannot vanish at x. Points outside the partition's finite pieces (the
// unbounded end pieces) and networks whose partition kept no values are all "might".
// rowsum (l2,): sum_i |W2_oi| of each layer-2 neuron.
void might_vanish(const Layout& lay, const double* th, const std::vector<double>& grid, const double* rowsum,
                  Scratch& s) {
  const int l1 = lay.widths[1], l2 = lay.widths[2];
  const int64_t n = static_cast<int64_t>(grid.size());
  const int64_t ne = static_cast<int64_t>(s.part_e.size());
  s.maybe.assign(static_cast<size_t>(n * l2), 1);
  if (ne < 2 || static_cast<int64_t>(s.part_z2.size()) != ne * l2) return;
  const int64_t jf = std::isinf(grid[0]) ? 1 : 0;               // the finite pieces [e_j, e_j+1]
  const int64_t jl = std::isinf(grid[n - 1]) ? ne - 3 : ne - 2;  // of the partition's layer 1
  if (jl < jf) return;
  const double* W1 = th + lay.w_offset[0];
  const double* b1 = th + lay.b_offset[0];
  const double* b = th + lay.b_offset[1];
  double w1max = 0.0, b1max = 0.0;
  for (int i = 0; i < l1; ++i) {
    w1max = std::fmax(w1max, std::fabs(W1[i]));
    b1max = std::fmax(b1max, std::fabs(b1[i]));
  }
  const double tol = kMightVanishMargin * (2 + l1 + 1) * kinks1d::kEpsilon;
  const double* pe = s.part_e.data();
  int64_t j = jf;
  for (int64_t g = 0; g < n; ++g) {
    const double x = s.e[g];
    if (!(x >= pe[jf] && x <= pe[jl + 1])) continue;
    while (x > pe[j + 1]) ++j;
    const double a = pe[j], t = (x - a) / (pe[j + 1] - a);
    const double mag = std::fmax(std::fabs(a), std::fabs(pe[j + 1])) * w1max + b1max;
    const double* za = s.part_z2.data() + j * l2;
    const double* zb = za + l2;
    uint8_t* maybe = s.maybe.data() + g * l2;
    for (int o = 0; o < l2; ++o) {
      const double zi = za[o] + t * (zb[o] - za[o]);
      const double thr = tol * (mag * rowsum[o] + std::fabs(b[o])) + 16.0 * kinks1d::kEpsilon * (std::fabs(za[o]) + std::fabs(zb[o]));
      maybe[o] = !(std::fabs(zi) > thr);
    }
  }
}

// vanishing_on_pieces for two hidden layers ([d, l1, l2, out]: only layer 2 can be flagged, and no value
// feeds a later check), from the layer-1 values s.ez and exact magnitudes s.em at the n points of grid
// (s.e: probes for infinite ends): the layer-2 values as the general pass forms them, but only where
// might_vanish leaves a neuron possible (a point with many such neurons takes the whole row); a bound of
// each magnitude (the largest active input magnitude times the row sum of |W|, with room for rounding)
// rules out vanishing at most of those, and the exact magnitude (the reference's sum, in input order) is
// formed only where a neuron might vanish at both ends of a piece. The same flags as the general pass,
// without its two matrix-vector products at every point.
bool two_hidden_layers_flags(const Layout& lay, const double* th, const std::vector<double>& grid, Scratch& s) {
  using kinks1d::vanishes;
  const int64_t n = static_cast<int64_t>(grid.size());
  const int l1 = lay.widths[1], l2 = lay.widths[2], hidden = l1 + l2;
  const double* W = th + lay.w_offset[1];
  const double* b = th + lay.b_offset[1];
  const int terms = 2 + l1 + 1;
  s.acc.resize(static_cast<size_t>(l2));  // row sums of |W|
  for (int o = 0; o < l2; ++o) {
    double r = 0.0;
    for (int i = 0; i < l1; ++i) r += std::fabs(W[static_cast<int64_t>(o) * l1 + i]);
    s.acc[o] = r;
  }
  might_vanish(lay, th, grid, s.acc.data(), s);
  s.part_e.clear();  // this network's: never read for another
  bool have_wt = false;
  s.nz.resize(static_cast<size_t>(n * l2));                  // layer-2 values (where might vanish)
  s.vanish.assign(static_cast<size_t>(n * l2), 0);           // might vanish (by the bound)
  for (int64_t j = 0; j < n; ++j) {
    const uint8_t* maybe = s.maybe.data() + j * l2;
    int count = 0;
    for (int o = 0; o < l2; ++o) count += maybe[o];
    if (count == 0) continue;
    const double* zin = s.ez.data() + j * l1;
    const double* min = s.em.data() + j * l1;
    double* z = s.nz.data() + j * l2;
    double big = 0.0;
    for (int i = 0; i < l1; ++i)
      if (zin[i] > 0.0) big = min[i] > big ? min[i] : big;
    if (8 * count > l2) {  // the whole row, vectorized over the outputs (each summed in input order)
      if (!have_wt) transposed_weights(lay, th, 1, s.wt);
      have_wt = true;
      std::fill(z, z + l2, 0.0);
      for (int i = 0; i < l1; ++i) {
        if (!(zin[i] > 0.0)) continue;  // inactive: a = 0 exactly, no term
        const double a = zin[i];
        const double* wr = s.wt.data() + static_cast<size_t>(i) * l2;
        for (int o = 0; o < l2; ++o) z[o] += a * wr[o];
      }
      for (int o = 0; o < l2; ++o) z[o] += b[o];
    } else {  // the same sums, one neuron at a time
      for (int o = 0; o < l2; ++o) {
        if (!maybe[o]) continue;
        const double* wr = W + static_cast<int64_t>(o) * l1;
        double acc = 0.0;
        for (int i = 0; i < l1; ++i)
          if (zin[i] > 0.0) acc += zin[i] * wr[i];
        z[o] = acc + b[o];
      }
    }
    for (int o = 0; o < l2; ++o) {
      if (!maybe[o]) continue;
      const double bound = (big * s.acc[o] + std::fabs(b[o])) * (1.0 + 1e-9);
      s.vanish[j * l2 + o] = vanishes(z[o], bound, terms);
    }
  }
  // the exact magnitude of neuron o at point j, as the general pass sums it
  const auto magnitude = [&](int64_t j, int o) {
    const double* zin = s.ez.data() + j * l1;
    const double* min = s.em.data() + j * l1;
    double m = 0.0;
    for (int i = 0; i < l1; ++i)
      if (zin[i] > 0.0) m += min[i] * std::fabs(W[static_cast<int64_t>(o) * l1 + i]);
    return m + std::fabs(b[o]);
  };
  bool any = false;
  for (int64_t p = 0; p + 1 < n; ++p)
    for (int o = 0; o < l2; ++o) {
      if (!(s.vanish[p * l2 + o] && s.vanish[(p + 1) * l2 + o])) continue;
      const double m0 = magnitude(p, o), m1 = magnitude(p + 1, o);
      const bool flag = vanishes(s.nz[p * l2 + o], m0, terms) && vanishes(s.nz[(p + 1) * l2 + o], m1, terms) &&
                        (m0 > 0.0 || m1 > 0.0);
      s.piece_zero[p * hidden + l1 + o] = flag;
      any = any || flag;
    }
  return any;
}

// Which hidden pre-activations vanish identically on each piece of grid (its n - 1 pieces) into
// s.piece_zero ((n - 1) x hidden flags), as geometry.vanishing_on_pieces: forward at the piece ends
// (finite probes for infinite ends) with the magnitude of the terms beside each value, a vanishing
// value set to 0 before the next layer; flagged on a piece when it vanishes at both ends and its terms
// are not all exactly zero (then it computes to exactly 0 anyway). Layer 1 is never flagged. Returns
// whether any flag is set.
bool vanishing_on_pieces(const Layout& lay, const double* th, const std::vector<double>& grid, Scratch& s) {
  using kinks1d::vanishes;
  const int64_t n = static_cast<int64_t>(grid.size());
  const int64_t hidden = hidden_neurons(lay);
  s.piece_zero.assign(static_cast<size_t>((n - 1) * hidden), 0);
  if (lay.num_layers < 3 || n < 2) return false;
  std::vector<double>& e = s.e;
  e.assign(grid.begin(), grid.end());
  if (n == 2 && std::isinf(e[0]) && std::isinf(e[1])) {
    e[0] = -1.0;
    e[1] = 1.0;
  } else if (std::isinf(e[0])) {
    e[0] = kinks1d::left_probe(e[1]);
  }
  if (std::isinf(e[n - 1])) e[n - 1] = kinks1d::right_probe(e[n - 2]);
  const int l1 = lay.widths[1];
  const double* W1 = th + lay.w_offset[0];
  const double* b1 = th + lay.b_offset[0];
  s.ez.resize(static_cast<size_t>(n * l1));
  s.em.resize(static_cast<size_t>(n * l1));
  for (int64_t j = 0; j < n; ++j)
    for (int i = 0; i < l1; ++i) {
      const double p = e[j] * W1[i], q = std::fabs(e[j]) * std::fabs(W1[i]);
      s.ez[j * l1 + i] = p + b1[i];
      s.em[j * l1 + i] = q + std::fabs(b1[i]);
    }
  if (lay.num_layers == 3) return two_hidden_layers_flags(lay, th, grid, s);
  s.vanish.resize(static_cast<size_t>(n * hidden));
  bool any = false;
  int terms = 2, off = l1, ni = l1;
  for (int k = 1; k < lay.num_layers - 1; ++k) {
    const int no = lay.widths[k + 1];
    const double* b = th + lay.b_offset[k];
    terms += ni + 1;
    s.nz.resize(static_cast<size_t>(n * no));
    s.nm.resize(static_cast<size_t>(n * no));
    // transposed weights and their absolute values: the inner loop runs over the outputs (vectorized),
    // each output still summing its inputs in order
    transposed_weights(lay, th, k, s.wt);
    s.wabs.resize(s.wt.size());
    const double* wt = s.wt.data();
    double* wabs = s.wabs.data();
    for (size_t e = 0; e < s.wt.size(); ++e) wabs[e] = std::fabs(wt[e]);
    for (int64_t j = 0; j < n; ++j) {
      const double* zin = s.ez.data() + j * ni;
      const double* min = s.em.data() + j * ni;
      double* acc = s.nz.data() + j * no;
      double* mag = s.nm.data() + j * no;
      std::fill(acc, acc + no, 0.0);
      std::fill(mag, mag + no, 0.0);
      for (int i = 0; i < ni; ++i) {
        if (!(zin[i] > 0.0)) continue;  // inactive: a = 0 exactly, no term
        const double a = zin[i], ma = min[i];
        const double* wr = wt + static_cast<size_t>(i) * no;
        const double* war = wabs + static_cast<size_t>(i) * no;
        for (int o = 0; o < no; ++o) {
          acc[o] += a * wr[o];
          mag[o] += ma * war[o];
        }
      }
      for (int o = 0; o < no; ++o) {
        const double z = acc[o] + b[o], m = mag[o] + std::fabs(b[o]);
        const bool v = vanishes(z, m, terms);
        s.vanish[j * hidden + off + o] = v;
        acc[o] = v ? 0.0 : z;
        mag[o] = m;
      }
    }
    for (int64_t p = 0; p + 1 < n; ++p)
      for (int o = 0; o < no; ++o) {
        const bool flag = s.vanish[p * hidden + off + o] && s.vanish[(p + 1) * hidden + off + o] &&
                          (s.nm[p * no + o] > 0.0 || s.nm[(p + 1) * no + o] > 0.0);
        s.piece_zero[p * hidden + off + o] = flag;
        any = any || flag;
      }
    s.ez.swap(s.nz);
    s.em.swap(s.nm);
    off += no;
    ni = no;
  }
  return any;
}

// What every network of one call shares: the fixed breaks inside [lo, hi], sorted and distinct, and
// the Gauss–Legendre rule.
struct Shared {
  std::vector<double> fixed, gt, gw;
  Shared(const ProblemSpec& prob, const Quad1DSpec& s) {
    for (int64_t i = 0; i < s.n_fixed; ++i) {
      const double v = s.fixed_breaks[i];
      if (v >= prob.lo && v <= prob.hi) fixed.push_back(v);
    }
    sort_unique(fixed);
    gt.resize(s.order);
    gw.resize(s.order);
    gauss_legendre(s.order, gt.data(), gw.data());
  }
};

// The nodes of one network (theta in float64) into s.x, s.w, s.y, as quadrature._nodes_1d.
void nodes_impl(const ProblemSpec& prob, const double* th, const Quad1DSpec& spec, const Shared& sh, Scratch& s) {
  const Layout& lay = prob.lay;
  kink_partition_impl(lay, th, prob.lo, prob.hi, s, s.part);
  // the partition is [lo, interior kinks, hi] and the fixed breaks lie in [lo, hi]: their sorted
  // distinct union is numpy's unique(concatenate(...)) restricted to [lo, hi]
  s.grid.resize(s.part.size() + sh.fixed.size());
  std::merge(s.part.begin(), s.part.end(), sh.fixed.begin(), sh.fixed.end(), s.grid.begin());
  s.grid.erase(std::unique(s.grid.begin(), s.grid.end()), s.grid.end());
  const int q = spec.order, out = lay.widths[lay.num_layers];
  const bool degenerate = vanishing_on_pieces(lay, th, s.grid, s);
  const int64_t hidden = net::num_activations(lay) - out;
  s.x.clear();
  s.w.clear();
  s.zero.clear();
  for (size_t j = 0; j + 1 < s.grid.size(); ++j) {
    const double a = s.grid[j], b = s.grid[j + 1];
    if (!(b > a)) continue;  // empty piece
    for (int t = 0; t < q; ++t) {
      const double x = gl_node(a, b, sh.gt[t]);
      s.x.push_back(x);
      s.w.push_back(gl_weight(a, b, sh.gw[t]) * kinks1d::density_1d(prob.input, prob.density.coeffs, x));
      if (degenerate) s.zero.insert(s.zero.end(), s.piece_zero.begin() + j * hidden, s.piece_zero.begin() + (j + 1) * hidden);
    }
  }
  const int64_t N = static_cast<int64_t>(s.x.size());
  s.y.resize(static_cast<size_t>(N * out));
  if (prob.teacher.theta != nullptr) {
    const Layout& tl = prob.teacher.lay;
    s.zt.resize(static_cast<size_t>(net::num_activations(tl)));
    const int64_t off = static_cast<int64_t>(s.zt.size()) - out;
    for (int64_t j = 0; j < N; ++j) {
      net::forward_node(tl, prob.teacher.theta, s.x.data() + j, s.zt.data());
      for (int o = 0; o < out; ++o) s.y[j * out + o] = s.zt[off + o];
    }
  } else {
    for (int64_t j = 0; j < N; ++j) target_eval(prob.target, s.x.data() + j, s.y.data() + j * out);
  }
}

// fn(k, th_k, s) for every network k of theta (K, P) whose parameters are all finite (nonfinite(k) for
// the others), on OpenMP threads when `parallel` (one network at a time, dynamically; each thread with
// its own Scratch); the first exception is rethrown after the loop. Every network is computed start to
// finish by one thread: the results do not depend on the threads.
template <class T, class Fn, class NonFinite>
void each_network(const T* theta, int64_t K, int64_t P, bool parallel, Fn&& fn, NonFinite&& nonfinite) {
  std::exception_ptr err = nullptr;
#pragma omp parallel if (parallel)
  {
    Scratch s;
#pragma omp for schedule(dynamic, 1)
    for (int64_t k = 0; k < K; ++k) {
      const T* th = theta + k * P;
      if (!all_finite(th, P)) {
        nonfinite(k);
        continue;
      }
      try {
        fn(k, th, s);
      } catch (...) {
#pragma omp critical(reluflow_quad1d_err)
        if (!err) err = std::current_exception();
      }
    }
  }
  if (err) std::rethrow_exception(err);
}

}  // namespace

void kink_partition_1d(const Layout& lay, const double* theta, double lo, double hi, std::vector<double>& out) {
  Scratch s;
  kink_partition_impl(lay, theta, lo, hi, s, out);
}

void quad1d_nodes(const ProblemSpec& prob, const double* theta, const Quad1DSpec& spec, std::vector<double>& x,
                  std::vector<double>& w, std::vector<double>& y) {
  const Shared sh(prob, spec);
  Scratch s;
  nodes_impl(prob, theta, spec, sh, s);
  x.swap(s.x);
  w.swap(s.w);
  y.swap(s.y);
}

void quad1d_nodes_batch(const ProblemSpec& prob, const double* theta, int64_t K, const Quad1DSpec& spec,
                        Quad1DNodes& out) {
  const Layout& lay = prob.lay;
  const int64_t P = lay.num_params, od = lay.widths[lay.num_layers], hidden = hidden_neurons(lay);
  const Shared sh(prob, spec);
  std::vector<Quad1DNodes> per(static_cast<size_t>(K > 0 ? K : 0));  // x, w, y, zero of each network
  each_network(
      theta, K, P, K > 1,
      [&](int64_t k, const double* th, Scratch& s) {
        nodes_impl(prob, th, spec, sh, s);
        per[k].x.swap(s.x);
        per[k].w.swap(s.w);
        per[k].y.swap(s.y);
        per[k].zero.swap(s.zero);
      },
      [](int64_t) {});  // no nodes: the caller reports NaN
  out.offset.assign(1, 0);
  bool any_zero = false;
  for (const Quad1DNodes& n : per) {
    out.offset.push_back(out.offset.back() + static_cast<int64_t>(n.x.size()));
    any_zero = any_zero || !n.zero.empty();
  }
  const size_t N = static_cast<size_t>(out.offset.back());
  out.x.resize(N);
  out.w.resize(N);
  out.y.resize(N * od);
  out.zero.assign(any_zero ? N * hidden : 0, 0);
  for (int64_t k = 0; k < K; ++k) {
    const Quad1DNodes& n = per[k];
    const size_t j0 = static_cast<size_t>(out.offset[k]);
    std::copy(n.x.begin(), n.x.end(), out.x.begin() + j0);
    std::copy(n.w.begin(), n.w.end(), out.w.begin() + j0);
    std::copy(n.y.begin(), n.y.end(), out.y.begin() + j0 * od);
    std::copy(n.zero.begin(), n.zero.end(), out.zero.begin() + j0 * hidden);
  }
}

template <class T>
void quad1d_risk_and_grad_cpu(const ProblemSpec& prob, const T* theta, int64_t K, const Quad1DSpec& spec,
                              double* risk, double* grad) {
  const Layout& lay = prob.lay;
  const int64_t P = lay.num_params;
  if (K <= 0) return;
  const Shared sh(prob, spec);
  int threads = 1;
#ifdef RELUFLOW_OPENMP
  threads = omp_get_max_threads();
#endif
  // Networks in parallel when there are enough of them to occupy the threads; otherwise one at a time,
  // each with a multi-threaded dense kernel. Either way every value is computed in the same order.
  const bool outer = K > 1 && K * P >= kMinParallelNetsQuad1D && 2 * K >= threads;
  each_network(
      theta, K, P, outer,
      [&](int64_t k, const T* th, Scratch& s) {
        s.theta64.assign(th, th + P);
        nodes_impl(prob, s.theta64.data(), spec, sh, s);
        RGProblem p;
        p.lay = lay;
        p.K = 1;
        p.N = static_cast<int64_t>(s.x.size());
        p.f32 = std::is_same<T, float>::value;
        p.theta = th;
        p.x = s.x.data();
        p.w = s.w.data();
        p.y = s.y.data();
        p.zero = s.zero.empty() ? nullptr : s.zero.data();
        risk_and_grad_cpu(p, risk + k, grad != nullptr ? grad + k * P : nullptr);
      },
      [&](int64_t k) {
        const double nan = std::numeric_limits<double>::quiet_NaN();
        risk[k] = nan;
        if (grad != nullptr) std::fill(grad + k * P, grad + (k + 1) * P, nan);
      });
}

template void quad1d_risk_and_grad_cpu<float>(const ProblemSpec&, const float*, int64_t, const Quad1DSpec&,
                                              double*, double*);
template void quad1d_risk_and_grad_cpu<double>(const ProblemSpec&, const double*, int64_t, const Quad1DSpec&,
                                               double*, double*);

}  // namespace RELUFLOW_ISA_NS
}  // namespace detail
}  // namespace reluflow
RELUFLOW_SIMD_END
