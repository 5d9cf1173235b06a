// The device loops' compaction to the running networks (cuda/src/loop_common.cuh RunningSet, used by
// gd_loop.cu and dopri5_loop.cu), written once for host and device (RF_HD): once enough networks are
// done (frozen, or at t_end), a loop evaluates the field only at the running ones: their rows gathered
// into a compact (n, P) array (row i: network evaluated[i]), the dense kernels on that, the gradients
// and risks scattered back to their networks' rows. Dense results do not depend on the batch, so this
// changes no bits; the done networks' rows are not read any more. The host harness runs the same
// entries (cpu/gd_harness.cpp, _core._harness_rows).
#pragma once
#include <stdint.h>

#include "rf_hd.h"

namespace reluflow {
namespace rows {

// Whether the evaluated set shrinks from `evaluated` networks to the `running` ones (at a block
// boundary, where the host has the flags): once at most 3/4 of them remain (each compaction costs a copy
// of the list; a few percent more evaluations do not).
RF_HD bool compact_now(int64_t running, int64_t evaluated) { return running > 0 && 4 * running <= 3 * evaluated; }

// Entry e of the compact (n, P) array from row evaluated[e / P] of rows (K, P).
template <class T>
RF_HD void gather_entry(const int64_t* evaluated, int64_t P, const T* rows, T* compact, int64_t e) {
  compact[e] = rows[evaluated[e / P] * P + e % P];
}

// Entry e of the compact (n, P) array back to row evaluated[e / P] of rows (K, P) (P = 1: the risks).
template <class T>
RF_HD void scatter_entry(const int64_t* evaluated, int64_t P, const T* compact, T* rows, int64_t e) {
  rows[evaluated[e / P] * P + e % P] = compact[e];
}

}  // namespace rows
}  // namespace reluflow
