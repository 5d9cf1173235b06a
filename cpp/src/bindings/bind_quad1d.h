// Parsing of the 1-D quadrature arguments (bind_quad1d.cpp, and the "quad1d" vector field of the
// integrator loops in bind_field.h): support, fixed breaks, order, density and target.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bindings/bind_util.h"
#include "cpu/quad1d_cpu.h"

namespace reluflow {

using f32_array = py::array_t<float, py::array::c_style | py::array::forcecast>;

// The largest Gauss–Legendre order accepted (the exact order of a degree-d target and density is
// about d + 1; far beyond this the rule would only cost time).
inline constexpr int kMaxQuadOrder = 256;

inline Layout layout_1d(const std::vector<int64_t>& widths, const char* name) {
  const Layout lay = make_layout(widths);
  if (lay.widths[0] != 1)
    throw py::value_error(std::string(name) + ": the 1-D quadrature needs widths[0] == 1, got " + widths_str(widths));
  return lay;
}

// A target for the quadrature, viewing the arrays it keeps alive: a native target (parse_target) or a
// 1-D teacher network.
struct QuadTarget {
  TargetArgs native;
  f64_array teacher_theta;
  Layout teacher{};
  bool is_teacher = false;
  TargetSpec spec{};
};

inline QuadTarget parse_quad_target(const std::string& kind, const Layout& lay, const py::object& A, const py::object& b,
                             const py::object& breaks, const py::object& coeffs, const py::object& teacher_widths,
                             const py::object& teacher_theta) {
  QuadTarget t;
  const int od = lay.widths[lay.num_layers];
  if (kind == "affine" || kind == "piecewise_polynomial") {
    t.native = parse_target(kind, lay, A, b, breaks, coeffs);
    t.spec = t.native.spec;
  } else if (kind == "teacher") {
    if (teacher_widths.is_none()) throw py::value_error("teacher_widths: required for target_kind 'teacher'");
    const std::vector<int64_t> tw = teacher_widths.cast<std::vector<int64_t>>();
    t.teacher = layout_1d(tw, "teacher_widths");
    if (t.teacher.widths[t.teacher.num_layers] != od)
      throw py::value_error("teacher_widths: the teacher's output width " + widths_str(tw) +
                            " differs from widths[-1] = " + std::to_string(od));
    t.teacher_theta = as_vector(teacher_theta, "teacher_theta");
    if (t.teacher_theta.ndim() != 1 || t.teacher_theta.shape(0) != t.teacher.num_params)
      throw py::value_error("teacher_theta: expected (" + std::to_string(t.teacher.num_params) +
                            ",) parameters for teacher_widths " + widths_str(tw) + ", got " +
                            shape_str(t.teacher_theta));
    t.is_teacher = true;
    t.spec.dim = 1;
    t.spec.out = od;
  } else {
    throw py::value_error("target_kind: expected 'affine', 'piecewise_polynomial' or 'teacher', got '" + kind + "'");
  }
  return t;
}

// Everything but theta, parsed and checked; the spec views the arrays kept here.
struct QuadArgs {
  f64_array fixed, dcoeffs;
  DistArgs dist;
  QuadTarget target;
  Quad1DSpec spec{};
};

// Fills q in place: its spec points into q itself (the teacher's layout), so q is never copied.
inline void parse_quad_args(QuadArgs& q, const Layout& lay, double lo, double hi, const py::object& fixed_breaks, int order,
                         const std::string& dist_kind, const py::object& low, const py::object& high,
                         const py::object& dbreaks, const py::object& anti, const py::object& cum,
                         const py::object& density_coeffs, const std::string& target_kind, const py::object& tA,
                         const py::object& tb, const py::object& tbreaks, const py::object& tcoeffs,
                         const py::object& teacher_widths, const py::object& teacher_theta) {
  if (!(std::isfinite(lo) && std::isfinite(hi) && lo < hi))
    throw py::value_error("lo, hi: expected finite lo < hi, got lo=" + std::to_string(lo) +
                          ", hi=" + std::to_string(hi));
  if (order < 1 || order > kMaxQuadOrder)
    throw py::value_error("order: expected 1 <= order <= " + std::to_string(kMaxQuadOrder) + ", got " +
                          std::to_string(order));
  q.fixed = as_vector(fixed_breaks, "fixed_breaks");
  if (q.fixed.ndim() != 1) throw py::value_error("fixed_breaks: expected a 1-D array, got " + shape_str(q.fixed));
  for (py::ssize_t i = 0; i < q.fixed.shape(0); ++i)
    if (!std::isfinite(q.fixed.data()[i])) throw py::value_error("fixed_breaks: expected finite values");
  q.dist = parse_dist(dist_kind, low, high, dbreaks, anti, cum);
  if (q.dist.dist.dim != 1)
    throw py::value_error("low: the 1-D quadrature needs a 1-D distribution, got dimension " +
                          std::to_string(q.dist.dist.dim));
  if (q.dist.dist.kind == kDistPiecewisePolynomial) {
    q.dcoeffs = as_vector(density_coeffs, "density_coeffs");
    if (q.dcoeffs.ndim() != 2 || q.dcoeffs.shape(0) != q.dist.dist.poly.pieces ||
        q.dcoeffs.shape(1) != q.dist.dist.poly.ncoef)
      throw py::value_error("density_coeffs: expected an (m, degree + 1) array shaped like anti, got " +
                            shape_str(q.dcoeffs));
  }
  q.target = parse_quad_target(target_kind, lay, tA, tb, tbreaks, tcoeffs, teacher_widths, teacher_theta);
  q.spec.lo = lo;
  q.spec.hi = hi;
  q.spec.fixed_breaks = q.fixed.data();
  q.spec.n_fixed = q.fixed.shape(0);
  q.spec.order = order;
  q.spec.target = q.target.spec;
  if (q.target.is_teacher) {
    q.spec.teacher = &q.target.teacher;
    q.spec.teacher_theta = q.target.teacher_theta.data();
  }
  q.spec.dist = q.dist.dist;
  q.spec.density_coeffs = q.dcoeffs ? q.dcoeffs.data() : nullptr;
}

}  // namespace reluflow
