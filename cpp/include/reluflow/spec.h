// ProblemSpec: the C++ mirror of python/reluflow/spec.py's ProblemSpec — the architecture, the target
// and the input distribution of one problem, each in one encoding. Built once per call by the bindings
// (bindings/bind_spec.h, from ProblemSpec.native()) and passed by value to the CPU loops (and later the
// CUDA kernels), so that no loop or kernel has its own way of receiving a target or a density.
//
// A plain struct of pointers: it owns nothing. Every pointer views an array the caller keeps alive
// for as long as the struct is used (on the device: device memory). Members a problem does not have
// are left empty (null pointers, zero pieces); which ones a route needs is checked by the binding.
#pragma once
#include <stdint.h>

#include "dists.h"
#include "layout.h"
#include "rf_hd.h"
#include "sweep1d.h"
#include "targets.h"

namespace reluflow {

// A ReLU-network target f = N_teacher of the same input and output width as the student (the 1-D
// partition path evaluates it node by node with net.h). theta == nullptr: no teacher.
struct TeacherSpec {
  Layout lay{};                   // the teacher's widths [1, ..., out]
  const double* theta = nullptr;  // its parameters (lay.num_params,)
};

struct ProblemSpec {
  // the student networks' widths and parameter offsets
  Layout lay{};
  // the target as the kernels evaluate it at a node (targets.h): affine or piecewise polynomial;
  // kind == kTargetData when the target is a teacher or a Python function (then the caller gives the
  // target values, or `teacher` is used)
  TargetSpec target{};
  // a ReLU-network target, for the 1-D partition path (other routes get its values from the caller)
  TeacherSpec teacher{};
  // the input distribution mu as the samplers draw from it (dists.h): uniform box or 1-D piecewise
  // polynomial (inverse CDF from its antiderivative pieces)
  InputDist input{};
  // 1-D: the density rho of mu as pieces in local powers (mass 1, zero outside its breaks), used by the
  // exact sweep (the moments of every piece) and by the partition path (weights at its nodes)
  PiecewisePoly1D density{};
  // 1-D: the target as pieces in local powers on the support (an affine target lowered to one piece
  // about lo; the end pieces extend beyond the breaks), used by the exact sweep; m == 0: none
  PiecewisePoly1D target_pieces{};
  // 1-D: the support [lo, hi] of mu (finite, lo < hi); the 1-D routes integrate over it
  double lo = 0.0, hi = 0.0;
};

}  // namespace reluflow
