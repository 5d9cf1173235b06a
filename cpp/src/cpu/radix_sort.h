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

}  // namespace reluflow
