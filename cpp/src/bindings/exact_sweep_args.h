// The exact sweep's arguments (reluflow/sweep_grid.h) from a parsed problem: what _core's host harness
// and _cuda's kernels both take.
#pragma once
#include <pybind11/pybind11.h>

#include <vector>

#include "reluflow/spec.h"
#include "reluflow/sweep_grid.h"

namespace reluflow {

// The fixed grid of the support and the breaks (owned here: ex.grid points into it) and the rule; a
// ValueError naming spec when the degrees need more Gauss–Legendre points than the grid takes.
struct ExactSweepArgs {
  std::vector<double> grid;
  sweep_grid::ExactArgs ex;
  explicit ExactSweepArgs(const ProblemSpec& p)
      : grid(static_cast<size_t>(p.target_pieces.m + p.density.m + 4)) {
    const int64_t ng = sweep_grid::fixed_grid(p.lo, p.hi, p.target_pieces, p.density, grid.data());
    if (!sweep_grid::exact_args(p.lo, p.hi, p.target_pieces, p.density, grid.data(), ng, &ex))
      throw pybind11::value_error("spec: the target's and density's degrees need more than 32 Gauss-Legendre points");
  }
  ExactSweepArgs(const ExactSweepArgs&) = delete;
  ExactSweepArgs& operator=(const ExactSweepArgs&) = delete;
};

}  // namespace reluflow
