// The point sweep of shallow 1-D nets [1, H, out] (out <= 3) as a GPU grid: what one thread of one block
// does, as RF_HD functions of explicit indices, for the kernels of cuda/src/sweep_points.cu AND for the
// host harness (cpp/src/cpu/sweep_harness.cpp, bound as _core._harness_point_sweep) that runs the same
// grid sequentially, so that the indexing and the order of every sum are tested without a GPU. The
// per-neuron math is sweep1d.h's (relu_active, neuron_grad, the affine pieces of toggle_neuron); the CPU
// loop (cpu/sweep_points.cpp) is the independent check.
//
// Problem: risk_k = sum_j w_j |N_k(x_j) - y_j|^2 and its generalized gradient over N weighted 1-D nodes,
// for K networks (float64). The CPU walks the sorted nodes and the sorted kinks together, one network per
// thread; a GPU needs that walk as sorts, scans and binary searches over (network, node) and (network,
// neuron) pairs. The stages, every one a function of (N, H, out) only, never of K or of the group a
// network is launched with (SPEC §7):
//   0. nodes: keys sort_key(x_j), a stable radix sort (CUB; std::stable_sort in the harness: the same
//      unique order), xs, ws, ys gathered; c0 = (xs[0] + xs[N-1]) / 2 as on the CPU.
//   1. neurons (thread per (k, i)): the split s_i (neuron_split: the first sorted node where neuron i's
//      activity changes, decided by relu_active itself, so a node on a kink is treated as on the CPU) and
//      the two event keys of neuron i (events_of): where its affine piece starts / stops counting.
//   2. events: a stable radix sort of the 2H keys k (N + 2) + position (CUB), values the event slots.
//   3. event pieces (thread per sorted event): +-v (w, w c0 + b) as double-double values.
//   4. a segmented inclusive scan (scan_*, below) of the pieces per network: (A, B) after each event.
//   5. node terms (thread per (k, j)): A, B at node j from the count of events at positions <= j (a
//      binary search), N = A (x - c0) + B + c, r = N - y, and w r^2, w r, w r (x - c0).
//   6. the same scan of the node terms per network.
//   7. neurons (thread per (k, i)): the moments S0, S1 over the neuron's active range from two prefix
//      sums, sweep1d::neuron_grad; per network: the risk and the output bias' gradient from the totals.
// Every sum is a double-double (two_sum) in a fixed order: the scans cancel +piece against -piece and
// subtract prefix sums, which in plain float64 would cost digits at large H and N. No atomics.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "rf_hd.h"
#include "sweep1d.h"

namespace reluflow {
namespace sweep_grid {

constexpr int kThreads = 128;        // threads per block of the scans (the block scan is sequential)
constexpr int kMaxOut = 3;           // outputs of the nets the grid takes
constexpr int kMaxQ = 1 + 2 * kMaxOut;  // double-double quantities per element of a scan, at most
constexpr int64_t kMinChunk = 2048;  // elements per scan chunk (one block), at least
constexpr int64_t kMaxChunks = 1024; // chunks per segment, at most (more elements per chunk beyond)

// ---- double-double sums --------------------------------------------------------------------------

struct DD {
  double hi, lo;
};

// Knuth's two_sum: s + e == a + b exactly (no FMA anywhere: -ffp-contract=off, --fmad=false).
RF_HD DD two_sum(double a, double b) {
  const double s = a + b;
  const double bb = s - a;
  const double e = (a - (s - bb)) + (b - bb);
  return DD{s, e};
}

RF_HD DD dd_add(DD a, DD b) {
  const DD s = two_sum(a.hi, b.hi);
  const double e = s.lo + (a.lo + b.lo);
  const double hi = s.hi + e;
  return DD{hi, e - (hi - s.hi)};
}

RF_HD DD dd_neg(DD a) { return DD{-a.hi, -a.lo}; }
RF_HD double dd_value(DD a) { return a.hi + a.lo; }

// ---- stage 0: the nodes' sort key ---------------------------------------------------------------

// An unsigned key whose order is the order of the doubles (-0.0 just below +0.0; x is finite): what a
// radix sort of doubles sorts by. The stable sort by it is unique, so CUB and std::stable_sort agree.
RF_HD uint64_t sort_key(double x) {
  uint64_t u;
  memcpy(&u, &x, sizeof u);
  return (u >> 63) ? ~u : (u | (uint64_t(1) << 63));
}

RF_HD double centre(const double* xs, int64_t N) { return N > 0 ? 0.5 * (xs[0] + xs[N - 1]) : 0.0; }

// ---- stage 1: a neuron's split and its events ---------------------------------------------------

// w > 0: the first sorted node s in [0, N] where neuron (w, b) is active (it is on [s, N)); w < 0: the
// first node where it is not (active on [0, s)); w == 0 (or not a number): 0 (the events decide). The
// predicate is relu_active itself, monotone in x for either sign of w (sweep1d.h).
RF_HD int64_t neuron_split(double w, double b, const double* xs, int64_t N) {
  if (!(w > 0.0) && !(w < 0.0)) return 0;
  return sweep1d::first_true(N, [&](int64_t j) { return sweep1d::relu_active(w, b, xs[j]) == (w > 0.0); });
}

// The nodes where neuron (w, b) with split s is active: [*first, *last).
RF_HD void active_range(double w, double b, int64_t s, int64_t N, int64_t* first, int64_t* last) {
  if (w > 0.0) {
    *first = s;
    *last = N;
  } else if (w < 0.0) {
    *first = 0;
    *last = s;
  } else {
    *first = 0;
    *last = b > 0.0 ? N : 0;  // relu_active(0, b, x) = b > 0 for every finite x
  }
}

// Event slot `slot` (0 or 1) of neuron (w, b) with split s: its position in [0, N + 1] and its sign
// (+1: the piece starts counting at nodes >= position, -1: it stops, 0: no event, position N + 1).
// The active range [first, last) becomes +piece at `first` and -piece at `last` (none at N: no node
// lies beyond).
RF_HD int64_t event_position(double w, double b, int64_t s, int64_t N, int slot, int* sign) {
  int64_t first, last;
  active_range(w, b, s, N, &first, &last);
  if (first >= last) {
    *sign = 0;
    return N + 1;
  }
  if (slot == 0) {
    *sign = 1;
    return first;
  }
  if (last < N) {
    *sign = -1;
    return last;
  }
  *sign = 0;
  return N + 1;
}

// The sort key of an event of network kk of the launched group: networks apart, positions in order.
RF_HD uint64_t event_key(int64_t kk, int64_t N, int64_t position) {
  return uint64_t(kk) * uint64_t(N + 2) + uint64_t(position);
}

// Neuron i of theta (one network's P parameters): split into split_k[i], its two event keys into
// keys[2 i + slot] and the slots 2 i + slot into vals (the radix sort's payload).
RF_HD void neuron_events(const double* th, int64_t H, int64_t N, const double* xs, int64_t kk, int64_t i,
                         int64_t* split_k, uint64_t* keys, int32_t* vals) {
  const double w = th[i], b = th[sweep1d::off_b(H) + i];
  const int64_t s = neuron_split(w, b, xs, N);
  split_k[i] = s;
  for (int slot = 0; slot < 2; ++slot) {
    int sign;
    const int64_t pos = event_position(w, b, s, N, slot, &sign);
    keys[2 * i + slot] = event_key(kk, N, pos);
    vals[2 * i + slot] = static_cast<int32_t>(2 * i + slot);
  }
}

// ---- stage 3: an event's piece --------------------------------------------------------------------

// The piece of the sorted event `slot` (2 i + event slot) of one network: sign v_o (w, w c0 + b) as
// q = o (A) and q = out + o (B), the same products as sweep1d::toggle_neuron. 2 out values.
RF_HD void event_piece(const double* th, int64_t H, int out, int64_t N, const int64_t* split_k, double c0,
                       int32_t slot, DD* piece) {
  const int64_t i = slot >> 1;
  const double w = th[i], b = th[sweep1d::off_b(H) + i];
  int sign;
  event_position(w, b, split_k[i], N, slot & 1, &sign);
  const double z0 = w * c0 + b;
  const double* v = th + sweep1d::off_V(H) + i;
  for (int o = 0; o < out; ++o) {
    const double vo = sign == 0 ? 0.0 : static_cast<double>(sign) * v[o * H];
    piece[o] = DD{sign == 0 ? 0.0 : vo * w, 0.0};
    piece[out + o] = DD{sign == 0 ? 0.0 : vo * z0, 0.0};
  }
}

// ---- stages 4 and 6: the segmented scan -------------------------------------------------------------
// Segments of L elements of Q double-doubles each (element e of segment g at data[(g L + e) Q + q]).
// Chunk c of a segment (one block) holds elements [c chunk, (c + 1) chunk); thread t of the block
// holds `per_thread` consecutive ones. Phase 1 (per block): every thread scans its elements in place
// (scan_thread), thread 0 turns the threads' totals into offsets (scan_block), every thread adds its
// offset (scan_add); the block's total is the chunk's. Phase 2 (per segment): the chunk totals become
// chunk offsets (scan_block's loop over chunks). Phase 3: every element of chunk c >= 1 gets its chunk's
// offset. The order of every addition is fixed by (L, Q).

struct ScanPlan {
  int64_t L = 0, chunk = 0, chunks = 0, per_thread = 0;
  int Q = 0;
};

RF_HD ScanPlan scan_plan(int64_t L, int Q) {
  ScanPlan p;
  p.L = L;
  p.Q = Q;
  int64_t chunk = (L + kMaxChunks - 1) / kMaxChunks;
  chunk = chunk > kMinChunk ? chunk : kMinChunk;
  chunk = (chunk + kThreads - 1) / kThreads * kThreads;
  p.chunk = chunk;
  p.chunks = (L + chunk - 1) / chunk;
  p.per_thread = chunk / kThreads;
  return p;
}

// The elements [*e0, *e1) of thread t of chunk c.
RF_HD void thread_range(const ScanPlan& p, int64_t c, int t, int64_t* e0, int64_t* e1) {
  const int64_t a = c * p.chunk + t * p.per_thread;
  const int64_t b = a + p.per_thread;
  *e0 = a < p.L ? a : p.L;
  *e1 = b < p.L ? b : p.L;
}

// Thread t of chunk c: its elements of `seg` (one segment) scanned in place; their sum into total (Q).
RF_HD void scan_thread(DD* seg, const ScanPlan& p, int64_t c, int t, DD* total) {
  for (int q = 0; q < p.Q; ++q) total[q] = DD{0.0, 0.0};
  int64_t e0, e1;
  thread_range(p, c, t, &e0, &e1);
  for (int64_t e = e0; e < e1; ++e)
    for (int q = 0; q < p.Q; ++q) {
      total[q] = dd_add(total[q], seg[e * p.Q + q]);
      seg[e * p.Q + q] = total[q];
    }
}

// Rows 0..n-1 of `rows` (Q each) replaced by their exclusive prefix sums, in row order; the sum of all
// into total (Q). The block scan over the threads' totals and the segment's scan over its chunks.
RF_HD void exclusive_rows(DD* rows, int64_t n, int Q, DD* total) {
  for (int q = 0; q < Q; ++q) total[q] = DD{0.0, 0.0};
  for (int64_t r = 0; r < n; ++r)
    for (int q = 0; q < Q; ++q) {
      const DD x = rows[r * Q + q];
      rows[r * Q + q] = total[q];
      total[q] = dd_add(total[q], x);
    }
}

// Elements [e0, e1) of seg get `offset` (Q) added.
RF_HD void add_offset(DD* seg, int Q, int64_t e0, int64_t e1, const DD* offset) {
  for (int64_t e = e0; e < e1; ++e)
    for (int q = 0; q < Q; ++q) seg[e * Q + q] = dd_add(seg[e * Q + q], offset[q]);
}

// ---- stage 5: a node's terms -------------------------------------------------------------------------

// Number of the sorted keys (n) of one network that are <= key: the events at positions <= j.
RF_HD int64_t count_at_most(const uint64_t* keys, int64_t n, uint64_t key) {
  return sweep1d::first_true(n, [&](int64_t e) { return keys[e] > key; });
}

// Node j of network kk: N(x_j) = A (x_j - c0) + B + c with (A, B) the scanned pieces (scanned_k, 2 out
// per event) of the events at positions <= j; writes 1 + 2 out terms: w r.r, w r_o, w r_o (x - c0).
RF_HD void node_terms(const double* th, int64_t H, int out, int64_t N, const double* xs, const double* ws,
                      const double* ys, double c0, const uint64_t* keys_k, const DD* scanned_k, int64_t kk,
                      int64_t j, DD* terms) {
  const int64_t n = count_at_most(keys_k, 2 * H, event_key(kk, N, j));
  const double dx = xs[j] - c0;
  const double* c = th + sweep1d::off_c(H, out);
  double risk = 0.0;
  for (int o = 0; o < out; ++o) {
    double a = 0.0, b = 0.0;
    if (n > 0) {
      a = dd_value(scanned_k[(n - 1) * 2 * out + o]);
      b = dd_value(scanned_k[(n - 1) * 2 * out + out + o]);
    }
    const double r = (a * dx + (b + c[o])) - ys[j * out + o];
    const double wr = ws[j] * r;
    risk += wr * r;
    terms[1 + o] = DD{wr, 0.0};
    terms[1 + out + o] = DD{wr * dx, 0.0};
  }
  terms[0] = DD{risk, 0.0};
}

// ---- stage 7: the gradient --------------------------------------------------------------------------

// The sum of the node terms over [first, last) from the inclusive scan of one network (Q per node).
RF_HD DD range_sum(const DD* scanned, int Q, int q, int64_t first, int64_t last) {
  if (first >= last) return DD{0.0, 0.0};
  const DD hi = scanned[(last - 1) * Q + q];
  return first > 0 ? dd_add(hi, dd_neg(scanned[(first - 1) * Q + q])) : hi;
}

// Neuron i's gradient (dw_i, db_i, dV_oi) into g (the network's P entries) from the scanned node terms.
RF_HD void neuron_gradient(const double* th, int64_t H, int out, int64_t N, double c0, const int64_t* split_k,
                           const DD* scanned_nodes, int64_t i, double* g) {
  const double w = th[i], b = th[sweep1d::off_b(H) + i];
  int64_t first, last;
  active_range(w, b, split_k[i], N, &first, &last);
  const int Q = 1 + 2 * out;
  double S0[kMaxOut], S1[kMaxOut];
  for (int o = 0; o < out; ++o) {
    S0[o] = dd_value(range_sum(scanned_nodes, Q, 1 + o, first, last));
    S1[o] = dd_value(range_sum(scanned_nodes, Q, 1 + out + o, first, last));
  }
  sweep1d::neuron_grad(w, b, th + sweep1d::off_V(H) + i, H, out, c0, S0, S1, g + i, g + sweep1d::off_b(H) + i,
                       g + sweep1d::off_V(H) + i, H);
}

// The network's risk (returned) and output bias gradient (into g) from the totals; a network with a
// parameter that is not finite gets NaN everywhere (the CPU's rule), g may be null.
RF_HD double network_totals(const double* th, int64_t H, int out, int64_t N, const DD* scanned_nodes,
                            double* g) {
  const int Q = 1 + 2 * out;
  const int64_t P = sweep1d::num_params(H, out);
  bool finite = true;
  for (int64_t q = 0; q < P; ++q) finite = finite && isfinite(th[q]);
  if (!finite) {
    if (g)
      for (int64_t q = 0; q < P; ++q) g[q] = NAN;
    return NAN;
  }
  if (N == 0) {
    if (g)
      for (int64_t q = 0; q < P; ++q) g[q] = 0.0;
    return 0.0;
  }
  if (g)
    for (int o = 0; o < out; ++o)
      g[sweep1d::off_c(H, out) + o] = 2.0 * dd_value(scanned_nodes[(N - 1) * Q + 1 + o]);
  return dd_value(scanned_nodes[(N - 1) * Q]);
}

// ---- the exact quadrature sweep: pieces between the sorted kinks and a fixed grid ----------------------
// risk_k = ∫_lo^hi |N_k - f|^2 rho, f and rho piecewise polynomials (PiecewisePoly1D), by Gauss–Legendre of
// order q on every piece where the net is affine (exact). The fixed grid G (ng points: lo, hi and the breaks
// of f and rho strictly inside, sorted, distinct) is made on the host. Per network the kinks clamped to
// [lo, hi] (w = 0: hi, with no event) are sorted (a segmented stable radix sort by sort_key); the merged
// sequence of G and the kinks (ties: grid points first) has L + 1 = ng + H points, and piece p is
// [merged[p], merged[p + 1]], p < L (zero-width pieces where points coincide integrate to exact zeros). A
// neuron's split is its kink's rank in that sequence: it is active on the pieces [split, L) (w > 0) or
// [0, split) (w < 0). So the point sweep's stages 2-4 and 6-7 run unchanged with the L pieces for the N
// nodes, and stage 5 becomes piece_terms (sweep1d::piece_moments). The CPU's exact sweep
// (cpu/sweep1d_cpu.cpp) walks the same pieces (without the zero-width ones) in one thread per network.

constexpr int kMaxExactOrder = 32;  // Gauss–Legendre points per piece, at most

struct ExactArgs {
  double lo = 0.0, hi = 0.0, c0 = 0.0;
  const double* grid = nullptr;  // (ng,)
  int64_t ng = 0;
  PiecewisePoly1D target{}, density{};
  int q = 0;
  double gt[kMaxExactOrder], gw[kMaxExactOrder];  // the rule on [-1, 1]
};

RF_HD int64_t exact_pieces(int64_t ng, int64_t H) { return ng + H - 1; }

// The fixed grid of the exact sweep into G (room for target.m + density.m + 4 points): lo, hi and the
// breaks of the target and the density strictly inside (lo, hi), sorted and distinct (the CPU's grid);
// returns its size ng.
RF_HD int64_t fixed_grid(double lo, double hi, const PiecewisePoly1D& target, const PiecewisePoly1D& density,
                         double* G) {
  int64_t n = 0;
  const auto insert = [&](double v) {  // insertion into the sorted distinct G[0..n)
    int64_t j = n;
    while (j > 0 && G[j - 1] > v) --j;
    if (j > 0 && G[j - 1] == v) return;
    for (int64_t m = n; m > j; --m) G[m] = G[m - 1];
    G[j] = v;
    ++n;
  };
  insert(lo);
  insert(hi);
  for (int64_t j = 0; j <= target.m; ++j)
    if (target.breaks[j] > lo && target.breaks[j] < hi) insert(target.breaks[j]);
  for (int64_t j = 0; j <= density.m; ++j)
    if (density.breaks[j] > lo && density.breaks[j] < hi) insert(density.breaks[j]);
  return n;
}

// The arguments of the exact sweep for the support [lo, hi], the target and the density (their arrays
// where the kernels read them) and the fixed grid G (ng points, as fixed_grid made it); false when the
// Gauss–Legendre order the degrees need exceeds kMaxExactOrder.
RF_HD bool exact_args(double lo, double hi, const PiecewisePoly1D& target, const PiecewisePoly1D& density,
                      const double* G, int64_t ng, ExactArgs* ex) {
  ex->lo = lo;
  ex->hi = hi;
  ex->c0 = 0.5 * (lo + hi);
  ex->grid = G;
  ex->ng = ng;
  ex->target = target;
  ex->density = density;
  ex->q = sweep1d::exact_order(target.deg, density.deg);
  if (ex->q > kMaxExactOrder) return false;
  gauss_legendre(ex->q, ex->gt, ex->gw);
  return true;
}

// Neuron (w, b)'s kink -b / w clamped to [lo, hi]; hi for w = 0 (no kink).
RF_HD double clamped_kink(double w, double b, double lo, double hi) {
  if (!(w > 0.0) && !(w < 0.0)) return hi;
  const double k = -b / w;
  return k < lo ? lo : (k > hi ? hi : k);
}

// Number of the n sorted keys that are < key.
RF_HD int64_t count_less(const uint64_t* keys, int64_t n, uint64_t key) {
  return sweep1d::first_true(n, [&](int64_t e) { return keys[e] >= key; });
}

// Number of grid points (sorted) whose sort_key is <= key.
RF_HD int64_t grid_at_most(const double* grid, int64_t ng, uint64_t key) {
  return sweep1d::first_true(ng, [&](int64_t g) { return sort_key(grid[g]) > key; });
}

// Stage 1a, thread per (kk, i): the sort key of neuron i's clamped kink, the neuron as payload.
RF_HD void exact_kink_key(const double* th, int64_t H, const ExactArgs& ex, int64_t i, uint64_t* key, int32_t* val) {
  *key = sort_key(clamped_kink(th[i], th[sweep1d::off_b(H) + i], ex.lo, ex.hi));
  *val = static_cast<int32_t>(i);
}

// Stage 1b, thread per sorted kink s of network kk (kink_keys_k / kink_vals_k: the network's H sorted
// keys and neurons): the kink's rank in the merged sequence (the neuron's split, into split_k), its value
// into merged_k, and the neuron's two event keys (positions over the L pieces) as neuron_events does.
RF_HD void exact_kink_rank(const double* th, int64_t H, const ExactArgs& ex, const uint64_t* kink_keys_k,
                           const int32_t* kink_vals_k, int64_t kk, int64_t s, int64_t* split_k, double* merged_k,
                           uint64_t* keys, int32_t* vals) {
  const int64_t i = kink_vals_k[s];
  const double w = th[i], b = th[sweep1d::off_b(H) + i];
  const int64_t rank = s + grid_at_most(ex.grid, ex.ng, kink_keys_k[s]);
  const int64_t L = exact_pieces(ex.ng, H);
  split_k[i] = rank;
  merged_k[rank] = clamped_kink(w, b, ex.lo, ex.hi);
  for (int slot = 0; slot < 2; ++slot) {
    int sign;
    const int64_t pos = event_position(w, b, rank, L, slot, &sign);
    keys[2 * i + slot] = event_key(kk, L, pos);
    vals[2 * i + slot] = static_cast<int32_t>(2 * i + slot);
  }
}

// Stage 1c, thread per (kk, g): grid point g into the merged sequence (after the kinks below it).
RF_HD void exact_grid_point(const ExactArgs& ex, const uint64_t* kink_keys_k, int64_t H, int64_t g, double* merged_k) {
  merged_k[g + count_less(kink_keys_k, H, sort_key(ex.grid[g]))] = ex.grid[g];
}

// Stage 5, thread per (kk, p): piece p's terms ∫ r.r rho, ∫ r_o rho, ∫ r_o (x - c0) rho (1 + 2 out), the
// net's (A, B) from the events at positions <= p, the target's and density's pieces at its midpoint (the
// CPU's choice: the density is zero outside its breaks).
RF_HD void piece_terms(const double* th, int64_t H, int out, const ExactArgs& ex, const double* merged_k,
                       const uint64_t* keys_k, const DD* scanned_k, int64_t kk, int64_t p, DD* terms) {
  const int64_t L = exact_pieces(ex.ng, H);
  const int64_t n = count_at_most(keys_k, 2 * H, event_key(kk, L, p));
  const double* c = th + sweep1d::off_c(H, out);
  double A[kMaxOut], B[kMaxOut], m0[kMaxOut], m1[kMaxOut];
  for (int o = 0; o < out; ++o) {
    A[o] = n > 0 ? dd_value(scanned_k[(n - 1) * 2 * out + o]) : 0.0;
    B[o] = (n > 0 ? dd_value(scanned_k[(n - 1) * 2 * out + out + o]) : 0.0) + c[o];
  }
  const double a = merged_k[p], b = merged_k[p + 1];
  const double mid = 0.5 * (a + b);
  const PiecewisePoly1D& f = ex.target;
  const PiecewisePoly1D& rho = ex.density;
  const int jt = piece_index(f.breaks, static_cast<int>(f.m), mid);
  const int jd = piece_index(rho.breaks, static_cast<int>(rho.m), mid);
  const bool in_density = mid >= rho.breaks[0] && mid <= rho.breaks[rho.m];
  const double risk = sweep1d::piece_moments(
      a, b, ex.q, ex.gt, ex.gw, out, A, B, ex.c0, f.coeffs + int64_t(jt) * (f.deg + 1) * out, f.deg, f.breaks[jt],
      in_density ? rho.coeffs + int64_t(jd) * (rho.deg + 1) : nullptr, rho.deg, rho.breaks[jd], m0, m1);
  terms[0] = DD{risk, 0.0};
  for (int o = 0; o < out; ++o) {
    terms[1 + o] = DD{m0[o], 0.0};
    terms[1 + out + o] = DD{m1[o], 0.0};
  }
}

}  // namespace sweep_grid
}  // namespace reluflow
