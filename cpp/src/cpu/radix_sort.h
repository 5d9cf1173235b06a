// Stable sorting permutation of doubles (the point sweep's nodes and kinks): an LSD radix sort on the
// order-preserving integer image of the doubles, linear in N, optionally over several threads.
#pragma once
#include <cstdint>
#include <vector>

namespace reluflow {

// order (N,): the permutation sorting x (N,) increasingly, ties in input order (stable; -0.0 sorts
// with +0.0). x must not contain NaN. threads > 1 splits each pass over that many OpenMP threads
// (ignored inside a parallel region); the permutation is the same for any thread count, being the
// unique stable sorting permutation. The scratch buffers are kept per thread between calls (up to
// kMaxRetainedSortBytes), so that repeated calls do not pay for fresh pages. sorted (N,), when not
// null, receives x in that order (with -0.0 as +0.0), taken from the sort keys instead of a gather.
void stable_order(const double* x, int64_t N, std::vector<int64_t>& order, int threads = 1,
                  double* sorted = nullptr);

// The cells of the bucket sort of sort_weighted_nodes, for the point sweep's node locator: M cells of
// equal width on [xs[0], xs[N-1]], cell c = min(floor((x - xs[0]) M / (xs[N-1] - xs[0])), M) holding the
// sorted nodes [first[c], first[c + 1]), first (M + 2,); largest: the most nodes in a cell. M = 0 when
// the nodes did not go through the bucket sort (no table).
struct NodeCells {
  int64_t M = 0, largest = 0;
  std::vector<int64_t> first;
};

// The weighted nodes (x, w, y) sorted by x, stably (ties in input order; -0.0 as +0.0): xs (N,),
// ws (N,), ys (N, out) receive them. Nodes from a smooth density are bucket-sorted with their weights
// and values carried along (no permutation, no gather afterwards); clustered nodes go through
// stable_order and a gather. Same result for any thread count. cells, when not null, receives the
// bucket sort's table (M = 0 if none).
void sort_weighted_nodes(const double* x, const double* w, const double* y, int out, int64_t N, int threads,
                         double* xs, double* ws, double* ys, NodeCells* cells = nullptr);

}  // namespace reluflow
