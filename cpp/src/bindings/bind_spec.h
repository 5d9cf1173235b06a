// The one parser of a problem description: the dict of python's `ProblemSpec.native()` (or
// `DensitySpec.native()` for the samplers) -> a ProblemSpec (reluflow/spec.h) and the arrays it views.
// Every `_core` entry point that needs the target or the input distribution takes it as `spec=`, so a
// target or a density reaches C++ in one encoding only. Errors name the argument and the key.
//
// Keys (float64 arrays unless said otherwise; a key whose value is None counts as missing):
//   target_kind    "affine" | "piecewise_polynomial" | "teacher" | "function" (str)
//   target_A (out, d), target_b (out,)                          affine
//   target_breaks (m+1,), target_coeffs (m, deg+1, out)         1-D pieces in local powers: the target of
//                                                               kind piecewise_polynomial, and the lowering
//                                                               of a 1-D affine target on [lo, hi]
//   teacher_widths (list of int), teacher_theta (P_teacher,)    teacher
//   density_kind   "uniform" | "piecewise_polynomial" | "gaussian" (str)
//   low, high (d,)                                              the box of a uniform density (its support)
//   mean (d,), chol (d, d)                                      gaussian: the mean and the lower Cholesky
//                                                               factor of the covariance
//   density_breaks (q+1,), density_coeffs (q, dd+1)             1-D: the density as pieces (mass 1)
//   density_anti (q, dd+1), density_cum (q+1,)                  piecewise polynomial: the inverse-CDF data
//   lo, hi (float)                                              1-D: the support of the density
// Which keys an entry point needs is its `SpecNeeds`; keys it does not need are not read.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bindings/bind_util.h"
#include "reluflow/spec.h"

namespace reluflow {

// What an entry point needs of the problem (bits; the parser checks these and reads nothing else).
enum SpecNeeds : unsigned {
  kNeedInput = 1u,         // the input distribution as the samplers take it (ProblemSpec::input)
  kNeedTarget = 2u,        // a target the kernels evaluate: affine or piecewise polynomial
  kNeedTeacherOk = 4u,     // with kNeedTarget: a teacher is accepted too (ProblemSpec::teacher)
  kNeedTargetPieces = 8u,  // 1-D target pieces (ProblemSpec::target_pieces)
  kNeedDensity1D = 16u,    // 1-D density pieces (ProblemSpec::density)
  kNeedSupport = 32u,      // 1-D support lo < hi, finite
};

// The ProblemSpec and the arrays it views (movable: the views point into numpy's buffers).
struct ProblemArgs {
  f64_array A, b, tbreaks, tcoeffs, teacher_theta, low, high, ibreaks, danti, dcum, dbreaks, dcoeffs, mean, chol;
  ProblemSpec spec{};
};

namespace spec_detail {

inline py::object get(const py::dict& d, const char* key) {
  return d.contains(key) ? py::reinterpret_borrow<py::object>(d[key]) : py::none();
}

inline py::object need(const py::dict& d, const char* key) {
  py::object v = get(d, key);
  if (v.is_none()) throw py::value_error(std::string("spec: missing key '") + key + "'");
  return v;
}

inline f64_array array(const py::dict& d, const char* key) {
  f64_array a = f64_array::ensure(need(d, key));
  if (!a) throw py::value_error(std::string("spec: ") + key + ": expected an array of real numbers (float64)");
  return a;
}

inline std::string str(const py::dict& d, const char* key) {
  py::object v = need(d, key);
  if (!py::isinstance<py::str>(v)) throw py::value_error(std::string("spec: ") + key + ": expected a string");
  return v.cast<std::string>();
}

inline double real(const py::dict& d, const char* key) {
  py::object v = need(d, key);
  if (PyBool_Check(v.ptr())) throw py::value_error(std::string("spec: ") + key + ": expected a real number");
  const double x = PyFloat_AsDouble(v.ptr());
  if (x == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(std::string("spec: ") + key + ": expected a real number");
  }
  return x;
}

// Breaks (m + 1,) strictly increasing and finite -> m.
inline int64_t breaks(const f64_array& br, const char* key) {
  const std::string k = std::string("spec: ") + key;
  if (br.ndim() != 1 || br.shape(0) < 2)
    throw py::value_error(k + ": expected a 1-D array of m + 1 >= 2 break points, got shape " + shape_str(br));
  if (!all_finite(br)) throw py::value_error(k + ": expected finite values");
  for (py::ssize_t j = 1; j < br.shape(0); ++j)
    if (!(br.data()[j] > br.data()[j - 1])) throw py::value_error(k + ": expected strictly increasing values");
  if (br.shape(0) - 1 > INT32_MAX) throw py::value_error(k + ": too many pieces");
  return br.shape(0) - 1;
}

// A sanity bound on the polynomial degrees (the Gauss–Legendre order of the exact rules follows them).
inline constexpr int kMaxPieceCoefs = 512;

// ProblemSpec::input from density_kind, low/high or density_breaks/anti/cum (as dists.h samples).
inline void parse_input(ProblemArgs& a, const py::dict& d) {
  InputDist& dist = a.spec.input;
  const std::string kind = str(d, "density_kind");
  if (kind == "uniform") {
    a.low = array(d, "low");
    a.high = array(d, "high");
    if (a.low.ndim() != 1 || a.high.ndim() != 1 || a.low.shape(0) != a.high.shape(0) || a.low.shape(0) < 1)
      throw py::value_error("spec: low, high: expected two 1-D arrays of the same length d >= 1, got " +
                            shape_str(a.low) + " and " + shape_str(a.high));
    if (a.low.shape(0) > INT32_MAX) throw py::value_error("spec: low: too many dimensions");
    dist.kind = kDistUniform;
    dist.dim = static_cast<int>(a.low.shape(0));
    dist.box = UniformBox{dist.dim, a.low.data(), a.high.data()};
  } else if (kind == "piecewise_polynomial") {
    a.ibreaks = array(d, "density_breaks");
    a.danti = array(d, "density_anti");
    a.dcum = array(d, "density_cum");
    if (a.ibreaks.ndim() != 1 || a.ibreaks.shape(0) < 2)
      throw py::value_error("spec: density_breaks: expected a 1-D array of m + 1 >= 2 break points");
    const int64_t m = a.ibreaks.shape(0) - 1;
    if (a.danti.ndim() != 2 || a.danti.shape(0) != m || a.danti.shape(1) < 1)
      throw py::value_error("spec: density_anti: expected an (m, degree + 1) array, m = len(density_breaks) - 1 = " +
                            std::to_string(m) + ", got " + shape_str(a.danti));
    if (a.dcum.ndim() != 1 || a.dcum.shape(0) != m + 1)
      throw py::value_error("spec: density_cum: expected a 1-D array of length len(density_breaks) = " +
                            std::to_string(m + 1) + ", got " + shape_str(a.dcum));
    if (m > INT32_MAX || a.danti.shape(1) > INT32_MAX) throw py::value_error("spec: density_breaks: too many pieces");
    dist.kind = kDistPiecewisePolynomial;
    dist.dim = 1;
    dist.poly = PiecewisePolyDensity{static_cast<int>(m), static_cast<int>(a.danti.shape(1)), a.ibreaks.data(),
                                     a.danti.data(), a.dcum.data()};
  } else if (kind == "gaussian") {
    a.mean = array(d, "mean");
    a.chol = array(d, "chol");
    if (a.mean.ndim() != 1 || a.mean.shape(0) < 1)
      throw py::value_error("spec: mean: expected a 1-D array of length d >= 1, got " + shape_str(a.mean));
    const int64_t n = a.mean.shape(0);
    if (n > INT32_MAX) throw py::value_error("spec: mean: too many dimensions");
    if (a.chol.ndim() != 2 || a.chol.shape(0) != n || a.chol.shape(1) != n)
      throw py::value_error("spec: chol: expected a (d, d) array, d = len(mean) = " + std::to_string(n) + ", got " +
                            shape_str(a.chol));
    if (!all_finite(a.mean)) throw py::value_error("spec: mean: expected finite values");
    if (!all_finite(a.chol)) throw py::value_error("spec: chol: expected finite values");
    const double* L = a.chol.data();
    for (int64_t k = 0; k < n; ++k) {
      if (!(L[k * n + k] > 0.0))
        throw py::value_error("spec: chol: expected a lower-triangular Cholesky factor with a positive diagonal");
      for (int64_t i = k + 1; i < n; ++i)
        if (L[k * n + i] != 0.0)
          throw py::value_error("spec: chol: expected a lower-triangular Cholesky factor (zeros above the diagonal)");
    }
    dist.kind = kDistGaussian;
    dist.dim = static_cast<int>(n);
    dist.gauss = GaussianDist{dist.dim, a.mean.data(), a.chol.data()};
  } else {
    throw py::value_error("spec: density_kind: expected 'uniform', 'piecewise_polynomial' or 'gaussian', got '" +
                          kind + "'");
  }
}

// ProblemSpec::target_pieces from target_breaks/target_coeffs (m, deg+1, out).
inline void parse_target_pieces(ProblemArgs& a, const py::dict& d, int out) {
  a.tbreaks = array(d, "target_breaks");
  const int64_t m = breaks(a.tbreaks, "target_breaks");
  a.tcoeffs = array(d, "target_coeffs");
  if (a.tcoeffs.ndim() != 3 || a.tcoeffs.shape(0) != m || a.tcoeffs.shape(1) < 1 || a.tcoeffs.shape(2) != out)
    throw py::value_error("spec: target_coeffs: expected an (m, deg + 1, out) = (" + std::to_string(m) +
                          ", deg + 1, " + std::to_string(out) + ") array, got shape " + shape_str(a.tcoeffs));
  if (!all_finite(a.tcoeffs)) throw py::value_error("spec: target_coeffs: expected finite values");
  if (a.tcoeffs.shape(1) > kMaxPieceCoefs)
    throw py::value_error("spec: target_coeffs: polynomial degree too large (at most " +
                          std::to_string(kMaxPieceCoefs - 1) + ")");
  a.spec.target_pieces =
      PiecewisePoly1D{m, static_cast<int>(a.tcoeffs.shape(1)) - 1, a.tbreaks.data(), a.tcoeffs.data()};
}

// ProblemSpec::target (and ::teacher when accepted) from target_kind and its arrays.
inline void parse_target(ProblemArgs& a, const py::dict& d, bool teacher_ok) {
  const Layout& lay = a.spec.lay;
  const int dim = lay.widths[0], od = lay.widths[lay.num_layers];
  TargetSpec& t = a.spec.target;
  t.dim = dim;
  t.out = od;
  const std::string kind = str(d, "target_kind");
  if (kind == "affine") {
    a.A = array(d, "target_A");
    a.b = array(d, "target_b");
    if (a.A.ndim() != 2 || a.A.shape(0) != od || a.A.shape(1) != dim)
      throw py::value_error("spec: target_A: expected an (out, d) = (" + std::to_string(od) + ", " +
                            std::to_string(dim) + ") array matching widths, got " + shape_str(a.A));
    if (a.b.ndim() != 1 || a.b.shape(0) != od)
      throw py::value_error("spec: target_b: expected an (out,) array, got " + shape_str(a.b));
    t.kind = kTargetAffine;
    t.A = a.A.data();
    t.b = a.b.data();
  } else if (kind == "piecewise_polynomial") {
    if (dim != 1) throw py::value_error("spec: target_breaks: piecewise-polynomial targets are 1-D");
    parse_target_pieces(a, d, od);
    t.kind = kTargetPiecewisePolynomial;
    t.pieces = static_cast<int>(a.spec.target_pieces.m);
    t.ncoef = a.spec.target_pieces.deg + 1;
    t.breaks = a.tbreaks.data();
    t.coeffs = a.tcoeffs.data();
  } else if (kind == "teacher" && teacher_ok) {
    std::vector<int64_t> tw;
    try {
      tw = need(d, "teacher_widths").cast<std::vector<int64_t>>();
    } catch (const py::cast_error&) {
      throw py::value_error("spec: teacher_widths: expected a list of integers");
    }
    Layout& tl = a.spec.teacher.lay;
    try {
      tl = make_layout(tw);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(std::string("spec: teacher_") + e.what());
    }
    if (tl.widths[0] != dim || tl.widths[tl.num_layers] != od)
      throw py::value_error("spec: teacher_widths: the teacher's input and output widths " + widths_str(tw) +
                            " differ from the student's (widths[0] = " + std::to_string(dim) +
                            ", widths[-1] = " + std::to_string(od) + ")");
    a.teacher_theta = array(d, "teacher_theta");
    if (a.teacher_theta.ndim() != 1 || a.teacher_theta.shape(0) != tl.num_params)
      throw py::value_error("spec: teacher_theta: expected (" + std::to_string(tl.num_params) +
                            ",) parameters for teacher_widths " + widths_str(tw) + ", got " +
                            shape_str(a.teacher_theta));
    a.spec.teacher.theta = a.teacher_theta.data();
  } else {
    throw py::value_error(std::string("spec: target_kind: expected 'affine', 'piecewise_polynomial'") +
                          (teacher_ok ? " or 'teacher'" : "") + " here, got '" + kind + "'");
  }
}

// ProblemSpec::density from density_breaks/density_coeffs (q, dd+1).
inline void parse_density_pieces(ProblemArgs& a, const py::dict& d) {
  a.dbreaks = array(d, "density_breaks");
  const int64_t q = breaks(a.dbreaks, "density_breaks");
  a.dcoeffs = array(d, "density_coeffs");
  if (a.dcoeffs.ndim() != 2 || a.dcoeffs.shape(0) != q || a.dcoeffs.shape(1) < 1)
    throw py::value_error("spec: density_coeffs: expected an (q, dd + 1) = (" + std::to_string(q) +
                          ", dd + 1) array, got shape " + shape_str(a.dcoeffs));
  if (!all_finite(a.dcoeffs)) throw py::value_error("spec: density_coeffs: expected finite values");
  if (a.dcoeffs.shape(1) > kMaxPieceCoefs)
    throw py::value_error("spec: density_coeffs: polynomial degree too large (at most " +
                          std::to_string(kMaxPieceCoefs - 1) + ")");
  a.spec.density = PiecewisePoly1D{q, static_cast<int>(a.dcoeffs.shape(1)) - 1, a.dbreaks.data(), a.dcoeffs.data()};
}

}  // namespace spec_detail

// The problem of `spec` (python's ProblemSpec.native()) for networks of layout `lay`; reads and checks
// what `needs` asks for. lay.num_layers == 0: no networks (the samplers), no width checks.
inline ProblemArgs parse_problem_spec(const Layout& lay, const py::object& spec_obj, unsigned needs) {
  using namespace spec_detail;
  if (spec_obj.is_none()) throw py::value_error("spec: required (a dict from ProblemSpec.native())");
  if (!py::isinstance<py::dict>(spec_obj)) throw py::value_error("spec: expected a dict from ProblemSpec.native()");
  const py::dict d = py::reinterpret_borrow<py::dict>(spec_obj);
  ProblemArgs a;
  a.spec.lay = lay;
  const bool has_net = lay.num_layers > 0;
  const int dim = has_net ? lay.widths[0] : 0;
  if (needs & kNeedSupport) {
    a.spec.lo = real(d, "lo");
    a.spec.hi = real(d, "hi");
    if (!(std::isfinite(a.spec.lo) && std::isfinite(a.spec.hi) && a.spec.lo < a.spec.hi))
      throw py::value_error("spec: lo, hi: expected finite lo < hi, got lo=" + std::to_string(a.spec.lo) +
                            ", hi=" + std::to_string(a.spec.hi));
  }
  if (needs & kNeedInput) {
    parse_input(a, d);
    if (has_net && a.spec.input.dim != dim)
      throw py::value_error(std::string("spec: ") + (a.spec.input.kind == kDistGaussian ? "mean" : "low") +
                            ": the distribution's dimension " + std::to_string(a.spec.input.dim) +
                            " differs from widths[0] = " + std::to_string(dim));
  }
  if (needs & kNeedTarget) parse_target(a, d, (needs & kNeedTeacherOk) != 0);
  if ((needs & kNeedTargetPieces) && a.spec.target_pieces.m == 0)
    parse_target_pieces(a, d, has_net ? lay.widths[lay.num_layers] : 1);
  if (needs & kNeedDensity1D) {
    parse_density_pieces(a, d);
    const InputDist& in = a.spec.input;
    if ((needs & kNeedInput) && in.kind == kDistPiecewisePolynomial &&
        (a.spec.density.m != in.poly.pieces || a.spec.density.deg + 1 != in.poly.ncoef))
      throw py::value_error("spec: density_coeffs: expected an (m, degree + 1) array shaped like density_anti, got " +
                            shape_str(a.dcoeffs));
  }
  return a;
}

}  // namespace reluflow
