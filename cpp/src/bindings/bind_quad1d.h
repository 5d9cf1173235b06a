// Parsing of the 1-D quadrature rule (bind_quad1d.cpp, and the "quad1d" vector field of the integrator
// loops in bind_field.h): fixed breaks and order; the problem is the spec (bind_spec.h).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bindings/bind_spec.h"
#include "bindings/bind_util.h"
#include "cpu/quad1d_cpu.h"

namespace reluflow {

// The largest Gauss–Legendre order accepted (the exact order of a degree-d target and density is
// about d + 1; far beyond this the rule would only cost time).
inline constexpr int kMaxQuadOrder = 256;

inline Layout layout_1d(const std::vector<int64_t>& widths, const char* name) {
  const Layout lay = make_layout(widths);
  if (lay.widths[0] != 1)
    throw py::value_error(std::string(name) + ": the 1-D quadrature needs widths[0] == 1, got " + widths_str(widths));
  return lay;
}

// The quadrature rule (fixed breaks, order), checked; the spec views the array kept here. The problem
// (support, density, target or teacher) comes from bind_spec.h with kQuad1DNeeds.
struct QuadRule {
  f64_array fixed;
  Quad1DSpec spec{};
};

inline constexpr unsigned kQuad1DNeeds =
    kNeedSupport | kNeedInput | kNeedDensity1D | kNeedTarget | kNeedTeacherOk;

inline QuadRule parse_quad_rule(const py::object& fixed_breaks, int order) {
  if (order < 1 || order > kMaxQuadOrder)
    throw py::value_error("order: expected 1 <= order <= " + std::to_string(kMaxQuadOrder) + ", got " +
                          std::to_string(order));
  QuadRule q;
  q.fixed = as_vector(fixed_breaks, "fixed_breaks");
  if (q.fixed.ndim() != 1) throw py::value_error("fixed_breaks: expected a 1-D array, got " + shape_str(q.fixed));
  for (py::ssize_t i = 0; i < q.fixed.shape(0); ++i)
    if (!std::isfinite(q.fixed.data()[i])) throw py::value_error("fixed_breaks: expected finite values");
  q.spec.fixed_breaks = q.fixed.data();
  q.spec.n_fixed = q.fixed.shape(0);
  q.spec.order = order;
  return q;
}

}  // namespace reluflow
