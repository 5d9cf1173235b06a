// Helpers shared by the bind_*.cpp files: argument formatting, the layout from widths, and the
// parsing of the input-distribution and native-target arguments.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "reluflow/dists.h"
#include "reluflow/layout.h"
#include "reluflow/targets.h"

namespace reluflow {

namespace py = pybind11;
using f64_array = py::array_t<double, py::array::c_style | py::array::forcecast>;

inline std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << (a.ndim() == 1 ? ",)" : ")");
  return s.str();
}

inline std::string widths_str(const std::vector<int64_t>& w) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < w.size(); ++i) s << (i ? ", " : "") << w[i];
  s << "]";
  return s.str();
}

inline Layout make_layout(const std::vector<int64_t>& widths) {
  if (widths.size() < 2)
    throw std::invalid_argument("widths: expected at least two widths [d, ..., out], got " + widths_str(widths));
  if (widths.size() - 1 > static_cast<size_t>(kMaxLayers))
    throw std::invalid_argument("widths: at most 16 layers are supported, got " + widths_str(widths));
  Layout lay;
  lay.num_layers = static_cast<int>(widths.size()) - 1;
  for (size_t k = 0; k < widths.size(); ++k) {
    if (widths[k] < 1 || widths[k] > (int64_t(1) << 30))
      throw std::invalid_argument("widths: expected every width in [1, 2^30], got " + widths_str(widths));
    lay.widths[k] = static_cast<int>(widths[k]);
  }
  layout_finalize(lay);
  return lay;
}

inline f64_array as_vector(const py::object& obj, const char* name) {
  if (obj.is_none()) throw py::value_error(std::string(name) + ": required for this distribution kind");
  f64_array a = f64_array::ensure(obj);
  if (!a) throw py::value_error(std::string(name) + ": expected a float64 array");
  return a;
}

// An InputDist viewing the arrays it keeps alive.
struct DistArgs {
  f64_array a, b, c, e;
  InputDist dist{};
};

inline DistArgs parse_dist(const std::string& kind, const py::object& low, const py::object& high,
                    const py::object& breaks, const py::object& anti, const py::object& cum) {
  DistArgs args;
  if (kind == "uniform") {
    args.a = as_vector(low, "low");
    args.b = as_vector(high, "high");
    if (args.a.ndim() != 1 || args.b.ndim() != 1 || args.a.shape(0) != args.b.shape(0) ||
        args.a.shape(0) < 1)
      throw py::value_error("low, high: expected two 1-D arrays of the same length d >= 1");
    if (args.a.shape(0) > INT32_MAX) throw py::value_error("low: too many dimensions");
    args.dist.kind = kDistUniform;
    args.dist.dim = static_cast<int>(args.a.shape(0));
    args.dist.box = UniformBox{args.dist.dim, args.a.data(), args.b.data()};
  } else if (kind == "piecewise_polynomial") {
    args.a = as_vector(breaks, "breaks");
    args.b = as_vector(anti, "anti");
    args.c = as_vector(cum, "cum");
    if (args.a.ndim() != 1 || args.a.shape(0) < 2)
      throw py::value_error("breaks: expected a 1-D array of m + 1 >= 2 break points");
    const int64_t m = args.a.shape(0) - 1;
    if (args.b.ndim() != 2 || args.b.shape(0) != m || args.b.shape(1) < 1)
      throw py::value_error("anti: expected an (m, degree + 1) array, m = len(breaks) - 1 = " +
                            std::to_string(m));
    if (args.c.ndim() != 1 || args.c.shape(0) != m + 1)
      throw py::value_error("cum: expected a 1-D array of length len(breaks) = " + std::to_string(m + 1));
    if (m > INT32_MAX || args.b.shape(1) > INT32_MAX) throw py::value_error("breaks: too many pieces");
    args.dist.kind = kDistPiecewisePolynomial;
    args.dist.dim = 1;
    args.dist.poly = PiecewisePolyDensity{static_cast<int>(m), static_cast<int>(args.b.shape(1)),
                                          args.a.data(), args.b.data(), args.c.data()};
  } else {
    throw py::value_error("kind: expected 'uniform' or 'piecewise_polynomial', got '" + kind + "'");
  }
  return args;
}

// A TargetSpec viewing the arrays it keeps alive.
struct TargetArgs {
  f64_array A, b, breaks, coeffs;
  TargetSpec spec{};
};

inline TargetArgs parse_target(const std::string& kind, const Layout& lay, const py::object& A,
                        const py::object& b, const py::object& breaks, const py::object& coeffs) {
  TargetArgs t;
  const int d = lay.widths[0], od = lay.widths[lay.num_layers];
  t.spec.dim = d;
  t.spec.out = od;
  if (kind == "affine") {
    t.A = as_vector(A, "target_A");
    t.b = as_vector(b, "target_b");
    if (t.A.ndim() != 2 || t.A.shape(0) != od || t.A.shape(1) != d)
      throw py::value_error("target_A: expected an (out, d) array matching widths");
    if (t.b.ndim() != 1 || t.b.shape(0) != od) throw py::value_error("target_b: expected an (out,) array");
    t.spec.kind = kTargetAffine;
    t.spec.A = t.A.data();
    t.spec.b = t.b.data();
  } else if (kind == "piecewise_polynomial") {
    t.breaks = as_vector(breaks, "target_breaks");
    t.coeffs = as_vector(coeffs, "target_coeffs");
    if (d != 1) throw py::value_error("target_breaks: piecewise-polynomial targets are 1-D");
    if (t.breaks.ndim() != 1 || t.breaks.shape(0) < 2)
      throw py::value_error("target_breaks: expected m + 1 >= 2 break points");
    const int64_t m = t.breaks.shape(0) - 1;
    if (t.coeffs.ndim() != 3 || t.coeffs.shape(0) != m || t.coeffs.shape(2) != od || t.coeffs.shape(1) < 1)
      throw py::value_error("target_coeffs: expected an (m, degree + 1, out) array");
    t.spec.kind = kTargetPiecewisePolynomial;
    t.spec.pieces = static_cast<int>(m);
    t.spec.ncoef = static_cast<int>(t.coeffs.shape(1));
    t.spec.breaks = t.breaks.data();
    t.spec.coeffs = t.coeffs.data();
  } else {
    throw py::value_error("target_kind: expected 'affine' or 'piecewise_polynomial', got '" + kind + "'");
  }
  return t;
}

}  // namespace reluflow
