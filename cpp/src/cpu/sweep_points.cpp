// The point sweep of shallow [1, H, out] nets over weighted nodes already sorted (sweep1d_cpu.cpp sorts
// them and calls the path that runs). Compiled once per instruction set like the risk/gradient kernels
// (RELUFLOW_SIMD_ISA from CMake; simd.h, "ISA translation units"): the node passes of kLanes networks
// run in one register of the path's width, and every lane is its network's scalar operations in the
// same order (no FMA: -ffp-contract=off), so every path gives the same bits.
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/parallel_policy.h"
#include "cpu/sweep1d_cpu.h"
#include "reluflow/finite.h"
#include "reluflow/simd.h"
#include "reluflow/sweep1d.h"

#ifdef RELUFLOW_OPENMP
#include <omp.h>
#endif

RELUFLOW_SIMD_BEGIN
namespace reluflow {
namespace detail {
namespace RELUFLOW_ISA_NS {
namespace {


// Locates values among the sorted nodes xs (N,): a table of M + 1 cells of equal width on
// [xs[0], xs[N-1]] holding the first node of every cell, then a branch-free binary search inside the
// value's cell. M follows the number of queries (the kinks of the call's networks), not N: H = 1000
// kinks over N = 2e5 nodes build 2000 cells by binary search instead of a pass over every node (that
// pass, with a branch per node, cost more than the sweep itself). Exact for any t (also +-inf), whatever
// M: the results do not depend on M.
struct NodeLocator {
  std::vector<int64_t> own;        // the table when built here
  const int64_t* first = nullptr;  // (M + 2,): first node j with cell(xs[j]) >= m (own, or the sort's)
  const double* xs = nullptr;
  int64_t N = 0, M = 0;
  double lo = 0.0, scale = 0.0;
  static constexpr int64_t kLinearCell = 8;
  bool linear = true;      // every cell holds at most kLinearCell nodes, and 2 M >= N
  int steps = 0;           // comparisons (linear) or halvings that settle a search in the fullest cell
  std::vector<double> xq;  // linear only: -inf, xs[0..N-1], +inf... (branch-free boundary checks)

  // sorted: the bucket sort's cells of these nodes (M = 0: none; it must outlive the searches), handed
  // over where this would pass over every node to build its own (locator_takes_sort_cells: H = 5e4
  // kinks among 2e5 nodes, 0.6 ms)
  void build(const double* x, int64_t n, int64_t queries, const NodeCells& sorted) {
    xs = x;
    N = n;
    M = std::max<int64_t>(1, std::min<int64_t>(N, 2 * queries));
    lo = N > 0 ? xs[0] : 0.0;
    int64_t fullest = 0;
    if (sorted.M > 0) {  // the same cells as cell(), with M = N
      M = sorted.M;
      scale = cell_scale(xs, N, M);
      first = sorted.first.data();
      fullest = sorted.largest;
    } else {
      scale = cell_scale(xs, N, M);
      own.resize(static_cast<size_t>(M + 2));
      first = own.data();
      fill_table(own.data());
      for (int64_t m = 0; m <= M; ++m) fullest = std::max(fullest, first[m + 1] - first[m]);
    }
    // linear: about as many cells as nodes (queries >= N / 4: the copy is small beside the searches)
    linear = fullest <= kLinearCell && 2 * M >= N;
    steps = 0;
    if (linear) {
      steps = static_cast<int>(fullest);
      xq.assign(static_cast<size_t>(N + 2 + kLinearCell), std::numeric_limits<double>::infinity());
      xq[0] = -std::numeric_limits<double>::infinity();
      std::copy(xs, xs + N, xq.begin() + 1);
    } else {
      while ((int64_t(1) << steps) <= fullest) ++steps;
    }
  }

  // tab (M + 2,): the first node of every cell (cell() is monotone, so the nodes of cell >= m are a
  // suffix of the sorted nodes)
  void fill_table(int64_t* tab) const {
    int64_t log2n = 1;
    while ((int64_t(1) << log2n) < N) ++log2n;
    if (M * log2n < N) {  // few cells: a binary search per cell boundary
      for (int64_t m = 0; m <= M + 1; ++m) {
        int64_t a = 0, len = N;  // first j with cell(xs[j]) >= m
        while (len > 0) {
          const int64_t half = len / 2;
          if (cell(xs[a + half]) < m) {
            a += half + 1;
            len -= half + 1;
          } else {
            len = half;
          }
        }
        tab[m] = a;
      }
    } else {  // one branch-free pass: the smallest node of each cell, then empty cells from the right
      std::fill(tab, tab + M + 2, N);
      for (int64_t j = N - 1; j >= 0; --j) tab[cell(xs[j])] = j;
      for (int64_t m = M; m >= 0; --m) tab[m] = std::min(tab[m], tab[m + 1]);
    }
  }

  // M cells of equal width on the node range (0: a single point or none)
  static double cell_scale(const double* x, int64_t n, int64_t m) {
    const double span = n > 0 ? x[n - 1] - x[0] : 0.0;
    return span > 0.0 ? static_cast<double>(m) / span : 0.0;
  }

  int64_t cell(double t) const { return cell_of(t, lo, scale, M); }
  static int64_t cell_of(double t, double lo, double scale, int64_t m) {
    double c = (t - lo) * scale;
    c = c > 0.0 ? c : 0.0;  // (comparisons, not fmin/fmax: those are library calls without -ffast-math)
    c = c < static_cast<double>(m) ? c : static_cast<double>(m);
    return static_cast<int64_t>(c);
  }

  // The first node of t's cell: lower() starts there (a separate step, so that a loop over many
  // values issues these table loads independently).
  int64_t guess(double t) const { return first[cell(t)]; }

  // The first node j with xs[j] >= t (N if none), from j0 = guess(t): it lies in [first[c], first[c + 1]]
  // for c = cell(t), the nodes of lower cells being < t and those of higher cells > t. Cells of at most
  // kLinearCell nodes (nodes from a smooth density, as many cells as nodes): that many independent
  // comparisons; larger cells: a fixed number of branch-free halvings. (Both branch-free: SGD's 3e4
  // searches per step among 1024 nodes ran 1.5x slower with a data-dependent loop or a chain of
  // dependent loads.)
  int64_t lower(double t, int64_t j0) const {
    if (linear) {
      int64_t ahead = 0;  // independent comparisons (xq's padding: no bounds)
      for (int r = 0; r < steps; ++r) ahead += xq[j0 + 1 + r] < t;
      return j0 + ahead;
    }
    const int64_t c = cell(t);
    int64_t a = j0, len = first[c + 1] - a;
    for (int r = 0; r < steps; ++r) {
      const int64_t half = len >> 1;
      const int64_t probe = std::min(a + half, N - 1);  // (len = 0: any node, the answer is a)
      const bool below = (len > 0) & (xs[probe] < t);
      a = below ? a + half + 1 : a;
      len = below ? len - half - 1 : half;
    }
    return a;
  }

  double at(int64_t j) const {  // xs[j], -inf before the first node and +inf after the last
    if (linear) return xq[j + 1];
    return j < 0 ? -std::numeric_limits<double>::infinity() : j >= N ? std::numeric_limits<double>::infinity() : xs[j];
  }
};

// One network of the point sweep: N(x) = A(x) (x - c0) + B(x) where A, B change only at the first
// active node of a neuron (w > 0) or its first inactive node (w < 0); the nodes where they change
// come from the exact predicate relu_active: the node locator's search inside the guessed cell, then
// a check of the predicate on both sides (locate()).
// Then one forward pass (residuals, risk, prefix moments) and one backward pass (suffix moments);
// every neuron's gradient is O(1) from the moments of its active range (a prefix for w < 0, a suffix
// for w > 0: no cancellation between a total and a partial sum). OUT = 0: any out (runtime).
template <int OUT>
struct PointSweep {
  // per-thread buffers
  std::vector<double> dA, dB;      // (N + 1, S): changes of A, B at node j (S = out, or 8 lanes)
  std::vector<double> u;           // (N, S): w_j r_j
  std::vector<double> mom;         // prefix moments sum_{m<j} u_m, u_m (x_m - c0) and the suffix
                                   // ones sum_{m>=j}, (N + 1, S) each (layout: moments())
  std::vector<int64_t> bound;      // (lanes, H): boundary node of every neuron, in visiting order
  std::vector<double> kink;        // (H,) -b_i / w_i (0 for w_i = 0)
  std::vector<int64_t> perm;       // (H,) neurons in kink order (large H only)
  std::vector<double> visit;       // (3 + out, H): w, b, kink, V's rows in kink order (large H only)
  static constexpr int64_t kSortKinksFrom = 4096;

  // A network's neurons in visiting order: position ii holds neuron at(ii). Large H: kink order, the
  // parameters gathered once (gather()), so that the passes over the neurons (searches, changes,
  // gradients) read them sequentially and only the gradients' stores scatter; small H: index order,
  // theta itself.
  struct Neurons {
    const double *w, *b, *kink, *v;  // (H,), (H,), (H,), (out, H): output o's weights at v[o * H + ii]
    const int64_t* perm;             // nullptr: the identity
    int64_t at(int64_t ii) const { return perm ? perm[ii] : ii; }
  };
  Neurons neurons(const double* th, int64_t H) const {
    if (H >= kSortKinksFrom) {
      const double* s = visit.data();
      return {s, s + H, s + 2 * H, s + 3 * H, perm.data()};
    }
    return {th, th + H, kink.data(), th + sweep1d::off_V(H), nullptr};
  }
  // Networks per group of the vectorized node passes (OUT = 1): one native register of doubles per
  // running sum (8 with AVX-512, 4 with AVX, 2 in a portable SSE2 build). GCC's generic vectors wider
  // than the instruction set's go through the stack on every step (a portable build ran SGD on [1, 100, 1]
  // 2.6x slower with 8 lanes). Any lane count gives every network the same bits (each lane is one
  // network's scalar operations).
#if RELUFLOW_SIMD_ISA == RELUFLOW_ISA_AVX512
  static constexpr int kLanes = 8;
#elif RELUFLOW_SIMD_ISA == RELUFLOW_ISA_AVX2
  static constexpr int kLanes = 4;
#else
  static constexpr int kLanes = 2;
#endif
  static constexpr int64_t kLanesBelowH = 512;
  static_assert(kLanesBelowH <= kSortKinksFrom, "run_lanes keeps one perm: its networks must not need one");

  // dA, dB of n1 zeros. They are kept zero between networks: after a network's forward pass only the
  // entries its neurons touched are reset (H writes instead of N), and the buffers live as long as
  // the thread (no page faults on fresh allocations every call).
  void zero_changes(size_t n1) {
    if (dA.size() != n1) {
      dA.assign(n1, 0.0);
      dB.assign(n1, 0.0);
    }
  }
  void reset_changes(const int64_t* bd, int64_t H, int out, int64_t S, int64_t lane) {
    for (int64_t ii = 0; ii < H; ++ii)  // (visiting order: forward through the node arrays)
      for (int o = 0; o < out; ++o) {
        dA[bd[ii] * S + lane + o] = 0.0;
        dB[bd[ii] * S + lane + o] = 0.0;
      }
  }
  // Frees the buffers when a call made them big (kept up to kMaxRetainedSortBytes: fresh pages of
  // the node arrays cost more than a sweep at N ~ 10^5).
  void trim() {
    if ((2 * dA.capacity() + u.capacity() + mom.capacity() + cmom.capacity()) * sizeof(double) +
            mark.capacity() + slot.capacity() * sizeof(uint32_t) >
        kMaxRetainedSortBytes)
      *this = PointSweep();
  }

  // The residual and moment buffers: u (n_u,) and the four moments of n1 entries each, entry e of
  // moment k at p_k[e / width * stride + e % width]. Planar (stride = width: the lanes, and out > 1), or
  // interleaved (one network with out = 1, stride 4): the gradient reads the four moments of a neuron's
  // boundary node from one cache line instead of four (H = 5e4 kinks over 2e5 nodes: most of that
  // pass was waiting on those gathers).
  struct Moments {
    double *u, *p0, *p1, *q0, *q1;
    int64_t stride;
  };
  Moments moments(int64_t n_u, size_t n1, bool interleave, int64_t width) {
    u.resize(static_cast<size_t>(n_u));
    mom.resize(4 * n1);
    double* m = mom.data();
    if (interleave) return {u.data(), m, m + 1, m + 2, m + 3, 4};
    return {u.data(), m, m + n1, m + 2 * n1, m + 3 * n1, width};
  }

  // Compact moments (OUT = 1: run and run_team). A neuron reads the moments at its boundary node only,
  // so the node passes keep them at the nodes that are some neuron's boundary (`mark`), each at its
  // rank among those (`slot`: the marked nodes before j), in `cmom`: position rank + 1 holds p0, p1, q0,
  // q1; position 0 takes the stores of the nodes in between, and the stores stay in cache instead of
  // streaming four moments per node (6.4 MB at N = 2e5, then gathered again by the gradients). The
  // values are the same sums: the same bits as full moments.
  std::vector<uint8_t> mark;    // (N + 1,): 1 at a boundary node; kept zero between networks (unmark)
  std::vector<uint32_t> slot;   // (N + 1,): marked nodes before j (written by the forward pass; [N] at the end)
  std::vector<double> cmom;     // (marked + 2, 4)
  int64_t marked_half = 0, marked_all = 0;  // marked nodes before N / 2 and before N
  // From this many nodes (full moments of 32 bytes a node beyond the L2 cache): below, the full
  // moments stay in cache and the marks and ranks only add work (SGD's 1024 nodes, H = 1000, K = 300:
  // 1.35x slower compact).
  static constexpr int64_t kCompactFrom = 16384;
  static bool compact(int64_t N) { return OUT == 1 && N >= kCompactFrom && N < (int64_t(1) << 31); }
  // After the boundaries: the marks and their counts (a pass over the bytes), cmom sized.
  void mark_bounds(const int64_t* bd, int64_t H, int64_t N) {
    if (mark.size() != static_cast<size_t>(N + 1)) mark.assign(static_cast<size_t>(N + 1), 0);
    slot.resize(static_cast<size_t>(N + 1));
    for (int64_t ii = 0; ii < H; ++ii) mark[bd[ii]] = 1;
    const int64_t N1 = N / 2;
    int64_t c = 0;
    for (int64_t j = 0; j < N1; ++j) c += mark[j];  // (vectorized)
    marked_half = c;
    for (int64_t j = N1; j < N; ++j) c += mark[j];
    marked_all = c;
    cmom.resize(static_cast<size_t>(4 * (marked_all + 2)));
  }
  void unmark(const int64_t* bd, int64_t H) {
    for (int64_t ii = 0; ii < H; ++ii) mark[bd[ii]] = 0;
  }
  // Phase 2's storage for one network of boundaries bd (run, run_team): compact moments (marks and
  // ranks) when compact(N), else full ones (interleaved for out = 1).
  Moments network_moments(const int64_t* bd, int64_t H, int out, int64_t N) {
    if (!compact(N)) return moments(N * out, static_cast<size_t>((N + 1) * out), OUT == 1, out);
    mark_bounds(bd, H, N);
    u.resize(static_cast<size_t>(N));
    return Moments{};
  }
  // The node passes of one block over every node into those moments: returns the risk.
  double one_block(int out, int64_t N, const double* xs, const double* ws, const double* ys, double c0,
                   const double* A, const double* B, const Moments& m) {
    if (!compact(N)) return node_passes(out, N, xs, ws, ys, c0, A, B, m);
    const BlockSums t = node_block_compact(0, N, xs, ws, ys, c0, A[0], B[0], 0, marked_all);
    compact_end(N, t.s0, t.s1);
    return t.risk;
  }
  // Phase 3 from those moments (gradients() over the visiting positions [ii0, ii1)).
  void network_gradients(const double* th, int64_t H, int out, int64_t N, double c0, const Moments& m,
                         const int64_t* bd, double* g, int64_t ii0 = 0, int64_t ii1 = -1) const {
    if (!compact(N)) {
      gradients(th, H, out, N, c0, m.p0, m.p1, m.q0, m.q1, m.stride, bd, g, ii0, ii1);
      return;
    }
    const double* cm = cmom.data();
    gradients(th, H, out, N, c0, cm, cm + 1, cm + 2, cm + 3, 4, bd, g, ii0, ii1, slot.data());
  }
  // After phase 2: dA, dB zero again, and the marks (the ranks stay for the gradients).
  void reset_network(const int64_t* bd, int64_t H, int out, int64_t N) {
    reset_changes(bd, H, out, out, 0);
    if (compact(N)) unmark(bd, H);
  }

  // The moments at node N (after the passes): p = the last block's totals (s0, s1), q = 0.
  void compact_end(int64_t N, double s0, double s1) {
    slot[N] = static_cast<uint32_t>(marked_all);
    double* e = cmom.data() + 4 * (marked_all + 1);
    e[0] = s0;
    e[1] = s1;
    e[2] = 0.0;
    e[3] = 0.0;
  }

  // perm (H,): the neurons grouped by cells of their kink (min(N, 2 H) cells of equal width on the node
  // range), in index order within a cell (a counting sort, O(H + N)): close to kink order, which is all
  // the locality needs. The order fixes the order of the sums at a shared node, so the cells depend on
  // the nodes and H only (not on K, as the locator's do).
  std::vector<uint32_t> cell_start, kink_cell;  // (M + 2,), (H,)
  void order_by_cell(const double* xs, int64_t N, int64_t H) {
    const int64_t M = std::max<int64_t>(1, std::min<int64_t>(N, 2 * H));
    const double lo = N > 0 ? xs[0] : 0.0, scale = NodeLocator::cell_scale(xs, N, M);
    perm.resize(static_cast<size_t>(H));
    kink_cell.resize(static_cast<size_t>(H));
    cell_start.assign(static_cast<size_t>(M + 2), 0);  // (32-bit: H < 2^32 neurons, half the cache lines)
    for (int64_t i = 0; i < H; ++i) kink_cell[i] = static_cast<uint32_t>(NodeLocator::cell_of(kink[i], lo, scale, M));
    for (int64_t i = 0; i < H; ++i) ++cell_start[kink_cell[i] + 1];
    for (int64_t m = 0; m <= M; ++m) cell_start[m + 1] += cell_start[m];
    for (int64_t i = 0; i < H; ++i) perm[cell_start[kink_cell[i]]++] = i;
  }

  // Phase 1 of one network: the state (A, B) at node 0 and the changes dA, dB at the boundaries
  // (entries j * S + o of dAx, dBx, which point at this network's lane), and bd (H,). In steps
  // (kinks, order, gather, locate, accumulate) so that a team can share the work on one network
  // (run_team): only the order and the accumulation, whose order fixes the bits, are sequential.
  void boundaries(const double* th, int64_t H, int out, int64_t N, const double* xs, double c0,
                  const NodeLocator& loc, double* A, double* B, double* dAx, double* dBx, int64_t S,
                  int64_t* bd) {
    kink.resize(static_cast<size_t>(H));
    kinks(th, H, 0, H);
    order(H, out, N, xs);
    gather(th, H, out, loc, bd, 0, H);
    locate(th, H, N, xs, loc, bd, 0, H);
    accumulate(th, H, out, N, c0, A, B, dAx, dBx, S, bd);
  }

  // Before the searches, in three steps (a team splits the first and the last over its members):
  // the kinks of the neurons [i0, i1) (kink sized H beforehand, not here: a team shares it); (large H) the visiting order perm;
  // (large H) the neurons at positions [ii0, ii1) gathered into that order, and their guesses bd[ii].
  void kinks(const double* th, int64_t H, int64_t i0, int64_t i1) {
    const double* wv = th;
    const double* bv = th + H;
    for (int64_t i = i0; i < i1; ++i) kink[i] = wv[i] != 0.0 ? -bv[i] / wv[i] : 0.0;  // vectorized
  }
  // Large H: the neurons are visited in kink order so that the scattered updates walk the node
  // arrays sequentially (case E: the node arrays are megabytes); small H: in index order.
  void order(int64_t H, int out, int64_t N, const double* xs) {
    if (H < kSortKinksFrom) return;
    order_by_cell(xs, N, H);
    visit.resize(static_cast<size_t>((3 + out) * H));
  }
  void gather(const double* th, int64_t H, int out, const NodeLocator& loc, int64_t* bd, int64_t ii0,
              int64_t ii1) {
    if (H >= kSortKinksFrom) {
      const double* wv = th;
      const double* bv = th + H;
      const double* V = th + sweep1d::off_V(H);
      double* s = visit.data();
      for (int64_t ii = ii0; ii < ii1; ++ii) {
        const int64_t i = perm[ii];
        s[ii] = wv[i];
        s[H + ii] = bv[i];
        s[2 * H + ii] = kink[i];
        for (int o = 0; o < out; ++o) s[(3 + o) * H + ii] = V[o * H + i];
      }
    }
    const double* kv = neurons(th, H).kink;
    for (int64_t ii = ii0; ii < ii1; ++ii) bd[ii] = loc.guess(kv[ii]);
  }

  // bd[i] for the neurons visited at positions [ii0, ii1): w > 0: the first active node; w < 0: the
  // first inactive one. Both are the first node j where relu_active(w, b, x_j) != (w < 0), a
  // predicate false...false true...true along the sorted nodes, and almost always the first node
  // >= -b/w: the locator finds that, then one check of the exact predicate on both sides (rounding of
  // w x + b, ties) falls back to walking in the rare case it fails. A constant neuron (w = 0) is
  // active everywhere iff b > 0: as w > 0 with j = 0, else N.
  void locate(const double* th, int64_t H, int64_t N, const double* xs, const NodeLocator& loc, int64_t* bd,
              int64_t ii0, int64_t ii1) const {
    const Neurons nn = neurons(th, H);
    for (int64_t ii = ii0; ii < ii1; ++ii) {
      const double w = nn.w[ii], b = nn.b[ii];
      if (w == 0.0) {
        bd[ii] = b > 0.0 ? 0 : N;
        continue;
      }
      const bool neg = w < 0.0;
      int64_t j = loc.lower(nn.kink[ii], bd[ii]);
      const bool settled = (sweep1d::relu_active(w, b, loc.at(j)) != neg) &
                           (sweep1d::relu_active(w, b, loc.at(j - 1)) == neg);
      if (!settled) {
        while (j < N && sweep1d::relu_active(w, b, xs[j]) == neg) ++j;
        while (j > 0 && sweep1d::relu_active(w, b, xs[j - 1]) != neg) --j;
      }
      bd[ii] = j;
    }
  }

  // (A, B) at node 0 and the changes at the boundaries, summed in the visiting order.
  void accumulate(const double* th, int64_t H, int out, int64_t N, double c0, double* A, double* B,
                  double* dAx, double* dBx, int64_t S, const int64_t* bd) const {
    (void)N;
    const Neurons nn = neurons(th, H);
    const double* V = nn.v;
    const double* c = th + sweep1d::off_c(H, out);
    for (int o = 0; o < out; ++o) {
      A[o] = 0.0;
      B[o] = c[o];
    }
    for (int64_t ii = 0; ii < H; ++ii) {
      const double w = nn.w[ii], b = nn.b[ii];
      if (w == 0.0) {
        if (b > 0.0)
          for (int o = 0; o < out; ++o) B[o] += V[o * H + ii] * b;
        continue;
      }
      const bool neg = w < 0.0;
      const int64_t j = bd[ii];
      const double z0 = w * c0 + b;
      const double sgn = neg ? -1.0 : 1.0;
      const double base = neg ? 1.0 : 0.0;  // a neuron with w < 0 is active at node 0 (if any)
      for (int o = 0; o < out; ++o) {
        const double a = V[o * H + ii] * w, bz = V[o * H + ii] * z0;
        A[o] += base * a;
        B[o] += base * bz;
        dAx[j * S + o] += sgn * a;
        dBx[j * S + o] += sgn * bz;
      }
    }
  }

  // Phase 3 of one network: its gradient g (P,) from the moments of each neuron's active range: a
  // suffix for w >= 0 (a constant neuron has j = 0 or N), a prefix for w < 0 (entries j * S + o of
  // the moment arrays, which point at this network's lane). Branch-free for OUT = 1: the loop
  // vectorizes (gathers of the moments at the boundaries).
  // [ii0, ii1): the neurons of that range of visiting positions (a team member's share), the output
  // bias with the range starting at 0.
  // slot (OUT = 1, compact moments): entry slot[j] + 1 of stride S instead of j.
  void gradients(const double* th, int64_t H, int out, int64_t N, double c0, const double* P0x,
                 const double* P1x, const double* Q0x, const double* Q1x, int64_t S, const int64_t* bd,
                 double* g, int64_t ii0 = 0, int64_t ii1 = -1, const uint32_t* slot_of = nullptr) const {
    if (ii1 < 0) ii1 = H;
    const Neurons nn = neurons(th, H);
    const int64_t ov = sweep1d::off_V(H);
    const Split sp = split;
    const bool two = sp.at != std::numeric_limits<int64_t>::max();
    if (OUT == 1) {
      double* __restrict gw = g;
      double* __restrict gb = g + H;
      double* __restrict gv = g + ov;
      // position ii in visiting order, neuron i
      const auto neuron = [&](int64_t ii, int64_t i) {
        const double w = nn.w[ii], b = nn.b[ii], v = nn.v[ii];
        const int64_t j = (slot_of ? int64_t(slot_of[bd[ii]]) + 1 : bd[ii]) * S;
        const bool neg = w < 0.0;
        double p0 = P0x[j], p1 = P1x[j], q0 = Q0x[j], q1 = Q1x[j];  // unconditional: gathers
        if (two) {  // the other block's totals (branch-free selects)
          const bool second = bd[ii] >= sp.at;
          p0 += second ? sp.p0 : 0.0;
          p1 += second ? sp.p1 : 0.0;
          q0 += second ? 0.0 : sp.q0;
          q1 += second ? 0.0 : sp.q1;
        }
        const double s0 = neg ? p0 : q0;
        const double s1 = neg ? p1 : q1;
        const double z0 = w * c0 + b;
        gw[i] = 2.0 * (v * (s1 + c0 * s0));
        gb[i] = 2.0 * (v * s0);
        gv[i] = 2.0 * (w * s1 + z0 * s0);
      };
      // large H: in kink order, so that the gathers of the moments walk the node arrays forward
      // instead of missing the cache at random nodes (the stores scatter); small H: in index order
      // (a separate loop: it vectorizes)
      if (nn.perm != nullptr) {
        for (int64_t ii = ii0; ii < ii1; ++ii) neuron(ii, nn.perm[ii]);
      } else {
        for (int64_t i = ii0; i < ii1; ++i) neuron(i, i);
      }
    } else {
      for (int64_t ii = ii0; ii < ii1; ++ii) {
        const int64_t i = nn.at(ii);
        const double w = nn.w[ii], b = nn.b[ii];
        const bool neg = w < 0.0;
        const double* S0 = (neg ? P0x : Q0x) + bd[ii] * S;
        const double* S1 = (neg ? P1x : Q1x) + bd[ii] * S;
        sweep1d::neuron_grad(w, b, nn.v + ii, H, out, c0, S0, S1, g + i, g + H + i, g + ov + i, H);
      }
    }
    if (ii0 > 0) return;
    double* gc = g + sweep1d::off_c(H, out);
    const int64_t jN = (slot_of ? int64_t(slot_of[N]) + 1 : N) * S;
    for (int o = 0; o < out; ++o) gc[o] = 2.0 * (two ? P0x[jN + o] + sp.p0 : P0x[jN + o]);
  }

  // One network (any out): returns its risk, writes g (P,).
  double run(const double* th, int64_t H, int out_rt, int64_t N, const double* xs, const double* ws,
             const double* ys, double c0, const NodeLocator& loc, double* g) {
    const int out = OUT > 0 ? OUT : out_rt;
    const size_t n1 = static_cast<size_t>((N + 1) * out);
    zero_changes(n1);
    double A0[OUT > 0 ? OUT : 8], B0[OUT > 0 ? OUT : 8];
    std::vector<double> A0v, B0v;
    double* A = A0;
    double* B = B0;
    if (OUT == 0 && out > 8) {
      A0v.assign(out, 0.0);
      B0v.assign(out, 0.0);
      A = A0v.data();
      B = B0v.data();
    }
    bound.resize(static_cast<size_t>(H));
    boundaries(th, H, out, N, xs, c0, loc, A, B, dA.data(), dB.data(), out, bound.data());
    const Moments m = network_moments(bound.data(), H, out, N);
    split = Split{};
    double risk;
    if (two_blocks(H, N)) {
      const BlockSums b0 = block_pass(0, N, xs, ws, ys, c0, A[0], B[0], m);
      risk = join_blocks(N, b0, block_pass(1, N, xs, ws, ys, c0, A[0], B[0], m, &b0));
    } else {
      risk = one_block(out, N, xs, ws, ys, c0, A, B, m);
    }
    reset_network(bound.data(), H, out, N);
    network_gradients(th, H, out, N, c0, m, bound.data(), g);
    return risk;
  }

  // Phase 2 of one network (run): forward: residuals, risk, prefix moments; backward: suffix moments,
  // from the state (A, B) at node 0 and the changes in dA, dB (node_block per output, one block).
  double node_passes(int out, int64_t N, const double* xs, const double* ws, const double* ys, double c0,
                     const double* A, const double* B, const Moments& m) {
    double risk = 0.0;
    for (int o = 0; o < out; ++o) {
      const BlockSums t = node_block(out, o, 0, N, xs, ws, ys, c0, A[o], B[o], m, risk);
      risk = t.risk;
      m.p0[N * m.stride + o] = t.s0;
      m.p1[N * m.stride + o] = t.s1;
      m.q0[N * m.stride + o] = 0.0;
      m.q1[N * m.stride + o] = 0.0;
    }
    return risk;
  }

  struct BlockSums {
    double risk, s0, s1;  // the risk continued from risk_in; sum u_j, sum u_j (x_j - c0) over the block
    double a, bb;         // the state (A, B) after the block's last node
  };

  // Output o over the nodes [j0, j1) from the state (a, bb) at j0: residuals u, prefix moments p (from 0
  // at j0) and suffix moments q (from 0 at j1) local to the block; p[j1], q[j1] are not written. The
  // running sums live in locals (registers) so that a step does not wait on the store of the previous
  // one.
  BlockSums node_block(int out, int o, int64_t j0, int64_t j1, const double* xs, const double* ws, const double* ys,
                       double c0, double a, double bb, const Moments& m, double risk) {
    const int64_t ms = m.stride;
    double* __restrict up = m.u;
    double* __restrict p0 = m.p0;
    double* __restrict p1 = m.p1;
    double* __restrict q0 = m.q0;
    double* __restrict q1 = m.q1;
    const double* __restrict dAp = dA.data();
    const double* __restrict dBp = dB.data();
    double s0 = 0.0, s1 = 0.0;
    for (int64_t j = j0; j < j1; ++j) {
      const double dx = xs[j] - c0;
      a += dAp[j * out + o];
      bb += dBp[j * out + o];
      const double r = (a * dx + bb) - ys[j * out + o];
      const double uj = ws[j] * r;
      up[j * out + o] = uj;
      risk += uj * r;
      p0[j * ms + o] = s0;
      p1[j * ms + o] = s1;
      s0 += uj;
      s1 += uj * dx;
    }
    const BlockSums sums{risk, s0, s1, a, bb};
    s0 = 0.0;
    s1 = 0.0;
    for (int64_t j = j1 - 1; j >= j0; --j) {
      const double uj = up[j * out + o];
      s0 += uj;
      s1 += uj * (xs[j] - c0);
      q0[j * ms + o] = s0;
      q1[j * ms + o] = s1;
    }
    return sums;
  }

  // node_block with compact moments (OUT = 1) over [j0, j1), whose marked nodes have ranks [c_lo, c_hi).
  // Forward: every node stores its prefix moments at the position of the next marked node (the marked
  // node's own store comes last there), or at position 0 past the block's last one; backward: every
  // node stores its suffix moments at the position of the marked node at or below it (the lower
  // marked node's store comes last there), or at 0 below the block's first one. Blocks never share a
  // position (a team runs them side by side).
  BlockSums node_block_compact(int64_t j0, int64_t j1, const double* xs, const double* ws, const double* ys,
                               double c0, double a, double bb, int64_t c_lo, int64_t c_hi) {
    double* __restrict up = u.data();
    double* __restrict cm = cmom.data();
    uint32_t* __restrict sl = slot.data();
    const uint8_t* __restrict mk = mark.data();
    const double* __restrict dAp = dA.data();
    const double* __restrict dBp = dB.data();
    double s0 = 0.0, s1 = 0.0, risk = 0.0;
    int64_t c = c_lo;
    for (int64_t j = j0; j < j1; ++j) {
      const double dx = xs[j] - c0;
      a += dAp[j];
      bb += dBp[j];
      const double r = (a * dx + bb) - ys[j];
      const double uj = ws[j] * r;
      up[j] = uj;
      risk += uj * r;
      const int64_t pos = c < c_hi ? c + 1 : 0;
      cm[4 * pos] = s0;
      cm[4 * pos + 1] = s1;
      sl[j] = static_cast<uint32_t>(c);
      c += mk[j];
      s0 += uj;
      s1 += uj * dx;
    }
    const BlockSums sums{risk, s0, s1, a, bb};
    s0 = 0.0;
    s1 = 0.0;
    c = c_hi;
    for (int64_t j = j1 - 1; j >= j0; --j) {
      const double uj = up[j];
      s0 += uj;
      s1 += uj * (xs[j] - c0);
      c -= mk[j];
      const int64_t pos = mk[j] ? c + 1 : (c > c_lo ? c : 0);
      cm[4 * pos + 2] = s0;
      cm[4 * pos + 3] = s1;
    }
    return sums;
  }

  // Two node blocks (out = 1, large H and N: a function of N and H only, so every path of a network
  // takes it or none does): [0, N1) and [N1, N) with their own prefix / suffix sums, joined at the
  // gathers of the gradient (Split: the offsets), so that a team runs them side by side. The state at
  // N1 is the same sum of changes as the first block's walk (bitwise).
  static constexpr int64_t kTwoBlocksFrom = 32768;
  static bool two_blocks(int64_t H, int64_t N) { return OUT == 1 && H >= kSortKinksFrom && N >= kTwoBlocksFrom; }
  struct Split {
    int64_t at = std::numeric_limits<int64_t>::max();  // N1; max: one block (no offsets)
    double p0 = 0.0, p1 = 0.0, q0 = 0.0, q1 = 0.0;     // added to p at j >= at, to q at j < at
  };
  Split split{};

  // The state (a, bb) at node N1 from the one at node 0: the first block's sums of changes.
  void state_at(int64_t N1, double* a, double* bb) const {
    for (int64_t j = 0; j < N1; ++j) {
      *a += dA[j];
      *bb += dB[j];
    }
  }

  // Block b (0 or 1) of the two-block passes from the state (A, B) at node 0; block 1 starts from the
  // first block's end state when that block has run (`first`), else sums it (state_at: the same bits),
  // and also writes the moments at N (its totals: p there is completed by the offset). The sums of both
  // make the Split (join_blocks).
  // Compact moments (compact(N)) or full ones in m.
  BlockSums block_pass(int b, int64_t N, const double* xs, const double* ws, const double* ys, double c0, double A,
                       double B, const Moments& m, const BlockSums* first = nullptr) {
    const int64_t N1 = N / 2;
    const bool cp = compact(N);
    if (b == 0)
      return cp ? node_block_compact(0, N1, xs, ws, ys, c0, A, B, 0, marked_half)
                : node_block(1, 0, 0, N1, xs, ws, ys, c0, A, B, m, 0.0);
    if (first) {
      A = first->a;
      B = first->bb;
    } else {
      state_at(N1, &A, &B);
    }
    if (cp) {
      const BlockSums t = node_block_compact(N1, N, xs, ws, ys, c0, A, B, marked_half, marked_all);
      compact_end(N, t.s0, t.s1);
      return t;
    }
    const BlockSums t = node_block(1, 0, N1, N, xs, ws, ys, c0, A, B, m, 0.0);
    m.p0[N * m.stride] = t.s0;
    m.p1[N * m.stride] = t.s1;
    m.q0[N * m.stride] = 0.0;
    m.q1[N * m.stride] = 0.0;
    return t;
  }

  double join_blocks(int64_t N, const BlockSums& first, const BlockSums& second) {
    split.at = N / 2;
    split.p0 = first.s0;
    split.p1 = first.s1;
    split.q0 = second.s0;
    split.q1 = second.s1;
    return first.risk + second.risk;
  }

  // One network (out = 1, large H) by the team of the enclosing parallel region, every member calling
  // it on the same object: the searches and the gradients split over the team, the accumulation and
  // the node passes on one thread. The same operations as run(), so the same bits for any team size.
  void run_team(const double* th, int64_t H, int64_t N, const double* xs, const double* ws, const double* ys,
                double c0, const NodeLocator& loc, double* g, double* risk) {
    int T = 1, t = 0;
#ifdef RELUFLOW_OPENMP
    T = omp_get_num_threads();
    t = omp_get_thread_num();
#endif
    const int64_t ii0 = H * t / T, ii1 = H * (t + 1) / T;
#pragma omp single
    {
      zero_changes(static_cast<size_t>(N + 1));
      bound.resize(static_cast<size_t>(H));
      kink.resize(static_cast<size_t>(H));
    }
    kinks(th, H, ii0, ii1);
#pragma omp barrier
#pragma omp single
    order(H, 1, N, xs);
    gather(th, H, 1, loc, bound.data(), ii0, ii1);  // (then the same positions: no barrier)
    locate(th, H, N, xs, loc, bound.data(), ii0, ii1);
#pragma omp barrier
#pragma omp single
    {
      team_A = 0.0;
      team_B = 0.0;
      accumulate(th, H, 1, N, c0, &team_A, &team_B, dA.data(), dB.data(), 1, bound.data());
      team_m = network_moments(bound.data(), H, 1, N);
      split = Split{};
      if (!two_blocks(H, N)) *risk = one_block(1, N, xs, ws, ys, c0, &team_A, &team_B, team_m);
    }
    if (two_blocks(H, N)) {  // the two blocks side by side (members 0 and 1; one member: both in turn)
      if (t < 2) team_sums[t] = block_pass(t, N, xs, ws, ys, c0, team_A, team_B, team_m);
      if (T == 1) team_sums[1] = block_pass(1, N, xs, ws, ys, c0, team_A, team_B, team_m, &team_sums[0]);
#pragma omp barrier
#pragma omp single
      *risk = join_blocks(N, team_sums[0], team_sums[1]);
    }
    network_gradients(th, H, 1, N, c0, team_m, bound.data(), g, ii0, ii1);
#pragma omp barrier
#pragma omp single
    reset_network(bound.data(), H, 1, N);
  }
  Moments team_m{};  // run_team's moments, shared by the team
  double team_A = 0.0, team_B = 0.0;  // its state at node 0
  BlockSums team_sums[2]{};           // its two node blocks' sums

  // kLanes networks at once (OUT = 1): the same operations in the same order per network as run(),
  // so the same results bitwise, with the node passes vectorized across the networks (lane l of
  // entry j * kLanes + l). th[l] (P,), g[l] (P,), risk[l].
  void run_lanes(const double* const* th, int64_t H, int64_t N, const double* xs, const double* ws,
                 const double* ys, double c0, const NodeLocator& loc, double* const* g, double* risk) {
    constexpr int L = kLanes;
    const size_t n1 = static_cast<size_t>((N + 1) * L);
    zero_changes(n1);
    split = Split{};  // small H: one block
    bound.resize(static_cast<size_t>(H * L));
    alignas(64) double a[L], bb[L], rk[L];
    for (int l = 0; l < L; ++l)
      boundaries(th[l], H, 1, N, xs, c0, loc, &a[l], &bb[l], dA.data() + l, dB.data() + l, L,
                 bound.data() + l * H);
    const Moments m = moments(N * L, n1, false, L);
    double* __restrict up = m.u;
    double* __restrict p0 = m.p0;
    double* __restrict p1 = m.p1;
    double* __restrict q0 = m.q0;
    double* __restrict q1 = m.q1;
    const double* __restrict dAp = dA.data();
    const double* __restrict dBp = dB.data();
    // GCC vector extension: one register of L doubles, the same IEEE operations per lane as the
    // scalar code (no FMA: -ffp-contract=off), so every lane is bitwise its network's run()
    typedef double vec __attribute__((vector_size(sizeof(double) * L), aligned(sizeof(double))));
    vec va, vb, vs0 = {}, vs1 = {}, vrk = {};
    std::memcpy(&va, a, sizeof va);
    std::memcpy(&vb, bb, sizeof vb);
    for (int64_t j = 0; j < N; ++j) {
      const double dx = xs[j] - c0, y = ys[j], wj = ws[j];
      va += *reinterpret_cast<const vec*>(dAp + j * L);
      vb += *reinterpret_cast<const vec*>(dBp + j * L);
      const vec r = (va * dx + vb) - y;
      const vec uj = wj * r;
      *reinterpret_cast<vec*>(up + j * L) = uj;
      vrk += uj * r;
      *reinterpret_cast<vec*>(p0 + j * L) = vs0;
      *reinterpret_cast<vec*>(p1 + j * L) = vs1;
      vs0 += uj;
      vs1 += uj * dx;
    }
    *reinterpret_cast<vec*>(p0 + N * L) = vs0;
    *reinterpret_cast<vec*>(p1 + N * L) = vs1;
    std::memcpy(rk, &vrk, sizeof vrk);
    for (int l = 0; l < L; ++l) risk[l] = rk[l];
    vs0 = vec{};
    vs1 = vec{};
    *reinterpret_cast<vec*>(q0 + N * L) = vs0;
    *reinterpret_cast<vec*>(q1 + N * L) = vs1;
    for (int64_t j = N - 1; j >= 0; --j) {
      const double dx = xs[j] - c0;
      const vec uj = *reinterpret_cast<const vec*>(up + j * L);
      vs0 += uj;
      vs1 += uj * dx;
      *reinterpret_cast<vec*>(q0 + j * L) = vs0;
      *reinterpret_cast<vec*>(q1 + j * L) = vs1;
    }
    for (int l = 0; l < L; ++l) {
      reset_changes(bound.data() + l * H, H, 1, L, l);
      gradients(th[l], H, 1, N, c0, p0 + l, p1 + l, q0 + l, q1 + l, L, bound.data() + l * H, g[l]);
    }
  }
};

// This thread's sweep buffers, reused across calls (see zero_changes).
template <int OUT>
PointSweep<OUT>& thread_sweep() {
  static thread_local PointSweep<OUT> sw;
  return sw;
}

template <int OUT>
void points_loop(const double* theta, int64_t K, int64_t H, int out, int64_t N, const double* xs,
                 const double* ws, const double* ys, double c0, const NodeLocator& loc, double* risk,
                 double* grad) {
  const int64_t P = sweep1d::num_params(H, out);
  constexpr int L = PointSweep<OUT>::kLanes;
  // out = 1 and small H (where the node passes dominate): groups of L networks with the node passes
  // vectorized across them (bitwise the results of one network at a time); else one network per
  // item (for large H the lane-strided moment arrays cost more in cache than the lanes save)
  const bool lanes = OUT == 1 && H < PointSweep<OUT>::kLanesBelowH;
  const int64_t n_items = lanes ? (K + L - 1) / L : K;
  // One network of large H (the searches and the gathers of the gradient are most of its work): the
  // whole team on it instead of one thread (bitwise the same).
  if (OUT == 1 && K == 1 && H >= PointSweep<OUT>::kSortKinksFrom && all_finite(theta, P)) {
    int T = 1;
#ifdef RELUFLOW_OPENMP
    T = sweep_threads(omp_get_max_threads(), H + N);
#endif
    PointSweep<OUT>* sw = &thread_sweep<OUT>();  // the caller's buffers, shared by the team
#pragma omp parallel num_threads(T) if (T > 1)
    sw->run_team(theta, H, N, xs, ws, ys, c0, loc, grad, risk);
    sw->trim();
    return;
  }
#pragma omp parallel num_threads(sweep_threads(n_items, L * (H + N)))
  {
    PointSweep<OUT>& sw = thread_sweep<OUT>();
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < n_items; ++item) {
      const int64_t k0 = lanes ? item * L : item, k1 = lanes ? std::min(K, k0 + L) : item + 1;
      bool group = lanes && k1 - k0 == L;
      for (int64_t k = k0; k < k1 && group; ++k) group = all_finite(theta + k * P, P);
      if (group) {
        const double* th[L];
        double* g[L];
        for (int l = 0; l < L; ++l) {
          th[l] = theta + (k0 + l) * P;
          g[l] = grad + (k0 + l) * P;
        }
        sw.run_lanes(th, H, N, xs, ws, ys, c0, loc, g, risk + k0);
        continue;
      }
      for (int64_t k = k0; k < k1; ++k) {
        const double* th = theta + k * P;
        double* g = grad + k * P;
        if (!all_finite(th, P)) {
          risk[k] = std::numeric_limits<double>::quiet_NaN();
          fill_nan(g, P);
          continue;
        }
        risk[k] = sw.run(th, H, out, N, xs, ws, ys, c0, loc, g);
      }
    }
    sw.trim();
  }
}

}  // namespace

void shallow1d_points_sorted(const double* theta, int64_t K, int64_t H, int out, int64_t N,
                             const double* xs, const double* ws, const double* ys, const NodeCells& cells,
                             double* risk, double* grad) {
  const double c0 = N > 0 ? 0.5 * (xs[0] + xs[N - 1]) : 0.0;
  static thread_local NodeLocator loc;  // kept per thread between calls, like the sorted nodes
  loc.build(xs, N, H * K, cells);
  if (out == 1)
    points_loop<1>(theta, K, H, out, N, xs, ws, ys, c0, loc, risk, grad);
  else
    points_loop<0>(theta, K, H, out, N, xs, ws, ys, c0, loc, risk, grad);
  if (static_cast<int64_t>((loc.own.capacity() + loc.xq.capacity()) * 8) > kMaxRetainedSortBytes)
    loc = NodeLocator();
}

}  // namespace RELUFLOW_ISA_NS
}  // namespace detail
}  // namespace reluflow
RELUFLOW_SIMD_END
