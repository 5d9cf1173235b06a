// LSD radix sort of (key, index) pairs (radix_sort.h). One pass over the keys builds the histograms of
// every digit (digits that are the same everywhere are skipped), then one stable scatter per digit.
// With T threads each pass is split into T contiguous blocks: block t scatters its elements after all
// the elements of the same digit in blocks < t, which is exactly the sequential stable order.
#include "cpu/radix_sort.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "cpu/parallel_policy.h"

#ifdef RELUFLOW_OPENMP
#include <omp.h>
#endif

namespace reluflow {

namespace {

constexpr int kBits = 11;
constexpr int kBuckets = 1 << kBits;
constexpr int kDigits = (64 + kBits - 1) / kBits;
constexpr uint64_t kMask = kBuckets - 1;
constexpr uint64_t kSign = uint64_t(1) << 63;

// Below this, std::sort of (x, index) pairs beats the radix passes.
constexpr int64_t kRadixFrom = 4096;
// From this many nodes the bucket sort with the payload carried beats std::sort of pairs and a gather
// (SGD's 1024 fresh samples per step).
constexpr int64_t kBucketNodesFrom = 256;

// This thread's block [j0, j1) of N items split evenly over a team of T (the whole range outside one):
// both sorts give block t the items after those of blocks < t, which makes their scatter stable.
struct TeamBlock {
  int t;
  int64_t j0, j1;
};
inline TeamBlock team_block(int64_t N, int T) {
  int t = 0;
#ifdef RELUFLOW_OPENMP
  t = omp_get_thread_num();
#endif
  return {t, N * t / T, N * (t + 1) / T};
}

// The order-preserving image of a double: flip all bits of negatives, the sign bit of the others.
inline uint64_t sort_key(double v) {
  v = v == 0.0 ? 0.0 : v;  // -0.0 with +0.0
  uint64_t u;
  std::memcpy(&u, &v, sizeof u);
  return (u >> 63) ? ~u : (u | kSign);
}

// Its inverse (a -0.0 comes back as +0.0).
inline double from_key(uint64_t k) {
  const uint64_t u = (k & kSign) ? (k & ~kSign) : ~k;
  double v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

// Scratch of one thread, kept between calls up to kMaxRetainedSortBytes. Indices are 32-bit when N
// allows (12 bytes moved per element and pass instead of 16).
template <class I>
struct SortScratch {
  std::vector<uint64_t> key, key2;
  std::vector<I> idx, idx2;
  std::vector<int64_t> hist, total;
  void trim() {
    const size_t bytes = (key.capacity() + key2.capacity()) * 8 + (idx.capacity() + idx2.capacity()) * sizeof(I);
    if (bytes > static_cast<size_t>(kMaxRetainedSortBytes)) *this = SortScratch();
  }
};

template <class I>
void radix_order(const double* x, int64_t N, std::vector<int64_t>& order, int T, double* sorted) {
  static thread_local SortScratch<I> s;
  s.key.resize(static_cast<size_t>(N));
  s.key2.resize(static_cast<size_t>(N));
  s.idx.resize(static_cast<size_t>(N));
  s.idx2.resize(static_cast<size_t>(N));
  s.total.assign(static_cast<size_t>(T) * kDigits * kBuckets, 0);
  s.hist.assign(static_cast<size_t>(T) * kBuckets, 0);
  // s is thread_local: the team reaches its buffers through these pointers
  uint64_t* key = s.key.data();
  uint64_t* key2 = s.key2.data();
  I* idx = s.idx.data();
  I* idx2 = s.idx2.data();
  int64_t* hist = s.hist.data();
  int64_t* total = s.total.data();
  int64_t* out = order.data();
  bool varies[kDigits];
#pragma omp parallel num_threads(T) if (T > 1)
  {
    const TeamBlock blk = team_block(N, T);
    const int t = blk.t;
    const int64_t j0 = blk.j0, j1 = blk.j1;
    int64_t* tot = total + static_cast<size_t>(t) * kDigits * kBuckets;
    for (int64_t j = j0; j < j1; ++j) {
      const uint64_t k = sort_key(x[j]);
      key[j] = k;
      idx[j] = static_cast<I>(j);
      for (int d = 0; d < kDigits; ++d) ++tot[d * kBuckets + ((k >> (d * kBits)) & kMask)];
    }
#pragma omp barrier
#pragma omp single
    for (int d = 0; d < kDigits; ++d) {  // a digit the same everywhere needs no pass
      const uint64_t b0 = (key[0] >> (d * kBits)) & kMask;
      int64_t n0 = 0;
      for (int u = 0; u < T; ++u) n0 += total[(static_cast<size_t>(u) * kDigits + d) * kBuckets + b0];
      varies[d] = n0 != N;
    }
    int64_t* h = hist + static_cast<size_t>(t) * kBuckets;
    for (int d = 0; d < kDigits; ++d) {
      if (!varies[d]) continue;
      const int shift = d * kBits;
      if (T == 1) {
        std::copy(total + d * kBuckets, total + (d + 1) * kBuckets, h);
      } else {
        std::fill(h, h + kBuckets, 0);
        for (int64_t j = j0; j < j1; ++j) ++h[(key[j] >> shift) & kMask];
      }
#pragma omp barrier
#pragma omp single
      {  // offsets: bucket by bucket, block by block (the sequential stable order)
        int64_t sum = 0;
        for (int b = 0; b < kBuckets; ++b)
          for (int u = 0; u < T; ++u) {
            int64_t& c = hist[static_cast<size_t>(u) * kBuckets + b];
            const int64_t n = c;
            c = sum;
            sum += n;
          }
      }
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t dst = h[(key[j] >> shift) & kMask]++;
        key2[dst] = key[j];
        idx2[dst] = idx[j];
      }
#pragma omp barrier
#pragma omp single
      {
        std::swap(key, key2);
        std::swap(idx, idx2);
      }
    }
    for (int64_t j = j0; j < j1; ++j) {
      out[j] = static_cast<int64_t>(idx[j]);
      if (sorted != nullptr) sorted[j] = from_key(key[j]);
    }
  }
  s.trim();
}

// ---- bucket sort by value ----------------------------------------------------------------------
// Nodes from a smooth density: N cells of equal width on [min x, max x], about one node per cell. One
// pass counts the cells, one scatters (key, index) into them, then every cell is sorted on its own
// (insertion sort: a few elements, in L1). Cells are monotone in x, and each cell's sort is stable, so
// this is the stable sorting permutation. Clustered nodes (a cell of more than kMaxCell) fall back to
// the radix sort. With T threads: per-thread cell counts over T blocks, offsets bucket by bucket and
// block by block (the sequential order), then the cells split among the threads.
constexpr int64_t kMaxCell = 4096;
constexpr int64_t kInsertionMax = 32;

struct BucketScratch {  // bucket_order's (key, index) pairs
  std::vector<uint64_t> key;
  std::vector<uint32_t> idx;
  void trim() {
    const size_t bytes = key.capacity() * 8 + idx.capacity() * 4;
    if (bytes > static_cast<size_t>(kMaxRetainedSortBytes)) *this = BucketScratch();
  }
};

// The cells of both bucket sorts: M = N cells of equal width on [min x, max x], with the cell of every
// node and the per-thread counts (kept per thread between calls by the caller, up to
// kMaxRetainedSortBytes). plan() is false when the nodes span no interval or too many for 32-bit
// offsets.
struct Cells {
  double lo = 0.0, scale = 0.0;
  int64_t M = 0;
  std::vector<uint32_t> cell, count;  // (N,), (T, M + 1): counts of each block, then its offsets
  std::vector<uint32_t> part, most;   // (T,): nodes in each thread's stretch of cells, its fullest cell
  int64_t largest = 0;                // the most nodes in one cell (count_and_offset)
  bool plan(const double* x, int64_t N, int T) {
    double l = x[0], h = x[0];
    for (int64_t j = 1; j < N; ++j) {
      l = x[j] < l ? x[j] : l;
      h = x[j] > h ? x[j] : h;
    }
    const double span = h - l;
    if (!(span > 0.0) || !std::isfinite(span) || N > int64_t(std::numeric_limits<uint32_t>::max()) - 2) return false;
    lo = l;
    M = N;
    scale = static_cast<double>(M) / span;
    cell.resize(static_cast<size_t>(N));
    count.resize(static_cast<size_t>(T) * (M + 1));  // (each thread zeroes its row)
    part.assign(static_cast<size_t>(T), 0);
    most.assign(static_cast<size_t>(T), 0);
    return true;
  }
  // Thread t's stretch of whole cells [c0, c1) (the offsets, the sorts of the cells, the node table).
  void stretch(int t, int T, int64_t* c0, int64_t* c1) const {
    *c0 = (M + 1) * t / T;
    *c1 = (M + 1) * (t + 1) / T;
  }
  // After the scatter: row T-1 of count holds the end of every cell (cell c starts where c-1 ends).
  const uint32_t* ends(int T) const { return count.data() + static_cast<size_t>(T - 1) * (M + 1); }
  void trim() {
    if ((cell.capacity() + count.capacity()) * 4 > static_cast<size_t>(kMaxRetainedSortBytes)) *this = Cells();
  }

  // Inside the team's parallel region: the cell of every node of this thread's block, the counts of
  // each block (count (T, M + 1)), then the offsets cell by cell, block by block (the sequential stable
  // order), every thread over its stretch of cells from the nodes of the stretches before it; `largest`;
  // `clustered` (shared) says whether a cell holds more than kMaxCell nodes. Ends with a barrier; cnt =
  // this thread's row.
  uint32_t* count_and_offset(const double* x, const TeamBlock& blk, int T, bool& clustered) {
    uint32_t* cnt = count.data() + static_cast<size_t>(blk.t) * (M + 1);
    std::fill(cnt, cnt + M + 1, 0u);
    for (int64_t j = blk.j0; j < blk.j1; ++j) {
      double c = (x[j] - lo) * scale;  // monotone in x: cells keep the order of the values
      c = c < static_cast<double>(M) ? c : static_cast<double>(M);
      const uint32_t cj = static_cast<uint32_t>(c);
      cell[j] = cj;
      ++cnt[cj];
    }
#pragma omp barrier
    int64_t c0 = 0, c1 = 0;
    stretch(blk.t, T, &c0, &c1);
    uint32_t tot = 0, fullest = 0;
    for (int64_t c = c0; c < c1; ++c) {
      uint32_t n = 0;
      for (int u = 0; u < T; ++u) n += count[static_cast<size_t>(u) * (M + 1) + c];
      tot += n;
      fullest = std::max(fullest, n);
    }
    part[blk.t] = tot;
    most[blk.t] = fullest;
#pragma omp barrier
    uint32_t sum = 0;
    for (int u = 0; u < blk.t; ++u) sum += part[u];
    for (int64_t c = c0; c < c1; ++c)
      for (int u = 0; u < T; ++u) {
        uint32_t& n = count[static_cast<size_t>(u) * (M + 1) + c];
        const uint32_t nc = n;
        n = sum;
        sum += nc;
      }
#pragma omp barrier
#pragma omp single
    {
      largest = *std::max_element(most.begin(), most.end());
      clustered = largest > kMaxCell;
    }
    return cnt;
  }
};

// Sorts one cell's (key, index) pairs by key, ties in index order.
void sort_cell(uint64_t* k, uint32_t* ix, int64_t n) {
  if (n <= kInsertionMax) {
    for (int64_t a = 1; a < n; ++a) {
      const uint64_t kv = k[a];
      const uint32_t iv = ix[a];
      int64_t b = a;
      for (; b > 0 && k[b - 1] > kv; --b) {  // '>': equal keys keep their (index) order
        k[b] = k[b - 1];
        ix[b] = ix[b - 1];
      }
      k[b] = kv;
      ix[b] = iv;
    }
    return;
  }
  std::vector<std::pair<uint64_t, uint32_t>> kv(static_cast<size_t>(n));
  for (int64_t a = 0; a < n; ++a) kv[a] = {k[a], ix[a]};
  std::sort(kv.begin(), kv.end());  // (key, index) pairs are distinct: the stable order
  for (int64_t a = 0; a < n; ++a) {
    k[a] = kv[a].first;
    ix[a] = kv[a].second;
  }
}

// Returns false (nothing written) when the nodes are too clustered for cells (or not finite).
bool bucket_order(const double* x, int64_t N, std::vector<int64_t>& order, int T, double* sorted) {
  static thread_local Cells cells;
  if (!cells.plan(x, N, T)) return false;
  static thread_local BucketScratch s;
  s.key.resize(static_cast<size_t>(N));
  s.idx.resize(static_cast<size_t>(N));
  // (thread_local: the team reaches the buffers through these pointers)
  Cells* cs = &cells;
  uint64_t* key = s.key.data();
  uint32_t* idx = s.idx.data();
  const uint32_t* cell = cells.cell.data();
  const int64_t M = cells.M;
  int64_t* out = order.data();
  bool clustered = false;
#pragma omp parallel num_threads(T) if (T > 1)
  {
    const TeamBlock blk = team_block(N, T);
    uint32_t* cnt = cs->count_and_offset(x, blk, T, clustered);
    const int64_t j0 = blk.j0, j1 = blk.j1;
    if (!clustered) {
      for (int64_t j = j0; j < j1; ++j) {
        const uint32_t dst = cnt[cell[j]]++;
        key[dst] = sort_key(x[j]);
        idx[dst] = static_cast<uint32_t>(j);
      }
#pragma omp barrier
      // after the scatter, count row T-1 holds the end of every cell, and cell c starts where c-1 ends
      const uint32_t* ends = cs->ends(T);
#pragma omp for schedule(static)
      for (int64_t c = 0; c <= M; ++c) {
        const uint32_t a = c == 0 ? 0 : ends[c - 1], b = ends[c];
        if (b - a > 1) sort_cell(key + a, idx + a, b - a);
      }
#pragma omp for schedule(static)
      for (int64_t j = 0; j < N; ++j) {
        out[j] = idx[j];
        if (sorted != nullptr) sorted[j] = from_key(key[j]);
      }
    }
  }
  s.trim();
  cells.trim();
  return !clustered;
}

// ---- bucket sort of weighted nodes, payload carried ----------------------------------------------
// As bucket_order, but the scatter moves each node's (x, w, y) to its cell's next free slot of the
// output arrays, and every cell is insertion-sorted there by x ('>' keeps equal x in input order, the
// order in which the scatter filled the cell). Doubles without NaN compare like their sort keys once
// -0.0 is +0.0. Returns false (nothing usable written) when the nodes are clustered or not finite.

// Insertion sort of the nodes [0, n) (x, w, y rows of out) by x, ties in their order ('>'). Run over a
// stretch of whole cells it sorts every cell, the cells being ordered (every node of a cell is below
// every node of a later one), so no node moves out of its cell.
void insertion_sort_nodes(double* x, double* w, double* y, int out, int64_t n) {
  double yv[8];
  for (int64_t a = 1; a < n; ++a) {
    const double xv = x[a], wv = w[a];
    if (!(x[a - 1] > xv)) continue;  // already in place (the common case)
    for (int o = 0; o < out; ++o) yv[o] = y[a * out + o];
    int64_t b = a;
    for (; b > 0 && x[b - 1] > xv; --b) {
      x[b] = x[b - 1];
      w[b] = w[b - 1];
      for (int o = 0; o < out; ++o) y[b * out + o] = y[(b - 1) * out + o];
    }
    x[b] = xv;
    w[b] = wv;
    for (int o = 0; o < out; ++o) y[b * out + o] = yv[o];
  }
}

// Sorts one cell's nodes (x, w, y rows of out) by x, ties in their order.
void sort_node_cell(double* x, double* w, double* y, int out, int64_t n, std::vector<int64_t>& perm,
                    std::vector<double>& tmp) {
  if (n <= kInsertionMax) {
    insertion_sort_nodes(x, w, y, out, n);
    return;
  }
  perm.resize(static_cast<size_t>(n));
  for (int64_t a = 0; a < n; ++a) perm[a] = a;
  std::stable_sort(perm.begin(), perm.end(), [x](int64_t a, int64_t b) { return x[a] < x[b]; });
  tmp.resize(static_cast<size_t>(n * (2 + out)));
  for (int64_t a = 0; a < n; ++a) {
    tmp[a] = x[perm[a]];
    tmp[n + a] = w[perm[a]];
    for (int o = 0; o < out; ++o) tmp[2 * n + a * out + o] = y[perm[a] * out + o];
  }
  std::copy(tmp.begin(), tmp.begin() + n, x);
  std::copy(tmp.begin() + n, tmp.begin() + 2 * n, w);
  std::copy(tmp.begin() + 2 * n, tmp.begin() + n * (2 + out), y);
}

bool bucket_sort_nodes(const double* x, const double* w, const double* y, int out, int64_t N, int T,
                       double* xs, double* ws, double* ys, NodeCells* node_cells) {
  if (out > 8) return false;  // (the insertion sort holds one row of y in registers)
  static thread_local Cells cells;
  if (!cells.plan(x, N, T)) return false;
  Cells* cs = &cells;  // (thread_local: the team reaches it through this pointer)
  const uint32_t* cell = cells.cell.data();
  const int64_t M = cells.M;
  int64_t* first = nullptr;  // the node table, filled by the team (used only when not clustered)
  if (node_cells != nullptr) {
    node_cells->first.resize(static_cast<size_t>(M + 2));
    first = node_cells->first.data();
    first[0] = 0;
  }
  bool clustered = false;
#pragma omp parallel num_threads(T) if (T > 1)
  {
    const TeamBlock blk = team_block(N, T);
    uint32_t* cnt = cs->count_and_offset(x, blk, T, clustered);
    const int64_t j0 = blk.j0, j1 = blk.j1;
    if (!clustered) {
      for (int64_t j = j0; j < j1; ++j) {
        const uint32_t dst = cnt[cell[j]]++;
        xs[dst] = x[j] == 0.0 ? 0.0 : x[j];  // -0.0 with +0.0
        ws[dst] = w[j];
        for (int o = 0; o < out; ++o) ys[static_cast<int64_t>(dst) * out + o] = y[j * out + o];
      }
#pragma omp barrier
      // after the scatter, count row T-1 holds the end of every cell, and cell c starts where c-1 ends
      const uint32_t* ends = cs->ends(T);
      int64_t c0 = 0, c1 = 0;
      cs->stretch(blk.t, T, &c0, &c1);
      if (first != nullptr)  // the locator's table: cell c holds the sorted nodes [first[c], first[c + 1])
        for (int64_t c = c0; c < c1; ++c) first[c + 1] = ends[c];
      if (cs->largest <= kInsertionMax) {
        // small cells (a smooth density): one insertion pass over this thread's stretch of whole cells,
        // with one well-predicted branch per node (a loop per cell, most of them holding 0 to 2 nodes,
        // mispredicted its trip counts: 1.4 of 3.3 ms at N = 2e5)
        const int64_t a = c0 == 0 ? 0 : ends[c0 - 1], b = c1 == 0 ? 0 : ends[c1 - 1];
        insertion_sort_nodes(xs + a, ws + a, ys + a * out, out, b - a);
      } else {
        std::vector<int64_t> perm;
        std::vector<double> tmp;
#pragma omp for schedule(static)
        for (int64_t c = 0; c <= M; ++c) {
          const uint32_t a = c == 0 ? 0 : ends[c - 1], b = ends[c];
          if (b - a > 1) sort_node_cell(xs + a, ws + a, ys + static_cast<int64_t>(a) * out, out, b - a, perm, tmp);
        }
      }
    }
  }
  if (!clustered && node_cells != nullptr) {
    node_cells->M = M;
    node_cells->largest = cells.largest;
  }
  cells.trim();
  return !clustered;
}

}  // namespace

void stable_order(const double* x, int64_t N, std::vector<int64_t>& order, int threads, double* sorted) {
  order.resize(static_cast<size_t>(N));
  if (N < kRadixFrom) {
    std::vector<std::pair<double, int64_t>> kv(static_cast<size_t>(N));
    for (int64_t j = 0; j < N; ++j) kv[j] = {x[j] == 0.0 ? 0.0 : x[j], j};
    std::sort(kv.begin(), kv.end());
    for (int64_t j = 0; j < N; ++j) {
      order[j] = kv[j].second;
      if (sorted != nullptr) sorted[j] = kv[j].first;
    }
    return;
  }
  int T = 1;
#ifdef RELUFLOW_OPENMP
  if (threads > 1 && !omp_in_parallel() && N >= kMinParallelSort) T = std::min(threads, omp_get_max_threads());
#else
  (void)threads;
#endif
  if (bucket_order(x, N, order, T, sorted)) return;
  if (N <= static_cast<int64_t>(std::numeric_limits<uint32_t>::max()))
    radix_order<uint32_t>(x, N, order, T, sorted);
  else
    radix_order<int64_t>(x, N, order, T, sorted);
}

void sort_weighted_nodes(const double* x, const double* w, const double* y, int out, int64_t N, int threads,
                         double* xs, double* ws, double* ys, NodeCells* cells) {
  if (cells != nullptr) cells->M = 0;
  if (N <= 0) return;
  int T = 1;
#ifdef RELUFLOW_OPENMP
  if (threads > 1 && !omp_in_parallel() && N >= kMinParallelSort) T = std::min(threads, omp_get_max_threads());
#endif
  if (N >= kBucketNodesFrom && bucket_sort_nodes(x, w, y, out, N, T, xs, ws, ys, cells)) return;
  static thread_local std::vector<int64_t> order;
  stable_order(x, N, order, threads, xs);
  const int64_t* ord = order.data();  // (thread_local: the team reaches it through a pointer)
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
  for (int64_t j = 0; j < N; ++j) {
    const int64_t src = ord[j];
    ws[j] = w[src];
    for (int o = 0; o < out; ++o) ys[j * out + o] = y[src * out + o];
  }
  if (static_cast<int64_t>(order.capacity() * 8) > kMaxRetainedSortBytes) std::vector<int64_t>().swap(order);
}

}  // namespace reluflow
