// The vector field of an integrator run (field_cpu.cpp): risk and generalized gradient of a batch of
// networks at step n, from one node source, with the tangent projection of the normalized flow.
// The fixed-step loops (flow_cpu.cpp) and dopri5 call it; it never returns to Python, except for a
// `targets.Function` target, which is evaluated by one callback per step on that step's nodes.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "reluflow/dists.h"
#include "reluflow/layout.h"
#include "reluflow/spec.h"
#include "reluflow/targets.h"
#include "cpu/quad1d_cpu.h"
#include "cpu/sweep1d_cpu.h"

namespace reluflow {

enum FieldSource : int {
  kFieldFixed = 0,          // nodes x (N, d), weights w (N,), target values y (N, out) given once
  kFieldResample = 1,       // n Monte-Carlo nodes per step from Philox (seed, stream MC, step)
  kFieldExactShallow1D = 2,  // exact 1-D quadrature of a shallow net by the O(H log H) sweep
  kFieldQuad1D = 3           // exact 1-D quadrature on every network's kink partition (any depth)
};

// y (n, out) = f(x (n, d)) for a target C++ cannot evaluate (the binding takes the GIL for it).
using TargetFn = std::function<void(const double* x, int64_t n, double* y)>;

struct FieldSpec {
  // the networks' layout (problem.lay), the target, the input distribution, the 1-D pieces and support
  // as the sources below need them
  ProblemSpec problem{};
  int source = kFieldFixed;
  // kFieldFixed
  const double* x = nullptr;
  const double* w = nullptr;
  const double* y = nullptr;
  int64_t N = 0;
  // kFieldResample: weights 1/n, nodes from problem.input; the target is problem.target (native)
  // unless target_fn is set
  uint64_t seed = 0;
  int64_t n = 0;
  TargetFn target_fn;
  // kFieldExactShallow1D: problem.target_pieces, problem.density on [problem.lo, problem.hi]
  // kFieldQuad1D: the rule; the problem as above (target or teacher, input, density pieces)
  Quad1DSpec quad{};
  // point sources on shallow 1-D nets: the O((N + H) log) point sweep instead of the dense kernel
  bool sweep = false;
  // project G on the tangent space of the normalized manifold
  bool normalized = false;
  // (P,) or null: 1 marks a frozen parameter, whose velocity is 0 in every network (Problem.mask)
  const uint8_t* frozen = nullptr;
};

template <class T>
class Field {
 public:
  explicit Field(const FieldSpec& spec);
  // theta (Kc, P) at step `step` -> risk (Kc,), grad (Kc, P), float64; a network with a non-finite
  // parameter gets non-finite values (the loops freeze it).
  void eval(const T* theta, int64_t Kc, int64_t step, double* risk, double* grad);
  const FieldSpec& spec() const { return s_; }
  int64_t evaluations = 0;  // calls of eval

 private:
  void draw(int64_t step);  // the Monte-Carlo nodes and target values of `step` (cached)
  FieldSpec s_;
  std::vector<double> xb_, wb_, yb_, th64_;
  int64_t drawn_ = -1;
};

}  // namespace reluflow
