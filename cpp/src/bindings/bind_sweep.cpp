// Bindings of the shallow 1-D sweeps (sweep1d_cpu.cpp): exact quadrature and weighted point sets.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <string>
#include <vector>

#include "bindings/bind_spec.h"
#include "bindings/bind_util.h"
#include "bindings/exact_sweep_args.h"
#include "bindings/bindings.h"
#include "reluflow/sweep1d.h"
#include "cpu/radix_sort.h"
#include "cpu/sweep1d_cpu.h"
#include "cpu/sweep_harness.h"
#include "reluflow/sweep_grid.h"

namespace py = pybind11;

namespace reluflow {

namespace {

using f64c = py::array_t<double, py::array::c_style | py::array::forcecast>;

f64c as_f64(const py::object& obj, const char* name) {
  if (obj.is_none()) throw py::value_error(std::string(name) + ": expected a float64 array, got None");
  f64c a = f64c::ensure(obj);
  if (!a) throw py::value_error(std::string(name) + ": expected an array of real numbers (float64)");
  return a;
}

int as_out_dim(const py::object& obj) {
  if (obj.is_none() || PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
    throw py::value_error("out_dim: expected an integer >= 1");
  const long long v = PyLong_AsLongLong(obj.ptr());
  if (v == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error("out_dim: expected an integer >= 1");
  }
  if (v < 1 || v > (1 << 20)) throw py::value_error("out_dim: expected an integer in [1, 2**20], got " + std::to_string(v));
  return static_cast<int>(v);
}

// theta (K, P) of shallow [1, H, out] nets -> H.
int64_t check_theta(const f64c& theta, int out_dim) {
  if (out_dim < 1) throw py::value_error("out_dim: expected out_dim >= 1, got " + std::to_string(out_dim));
  if (theta.ndim() != 2)
    throw py::value_error("theta: expected a (K, P) array, got shape " + shape_str(theta));
  const int64_t H = sweep1d::hidden_width(theta.shape(1), out_dim);
  if (H < 1)
    throw py::value_error("theta: P = " + std::to_string(theta.shape(1)) +
                          " is not H * (2 + out_dim) + out_dim for any H >= 1 (out_dim = " +
                          std::to_string(out_dim) + "); expected a shallow [1, H, out_dim] network");
  return H;
}

// The checked arguments of a point sweep: theta (K, P) of [1, H, out] nets, finite 1-D nodes x (N,) or
// (N, 1), weights w (N,), target values y (N, out) (or (N,) for out = 1).
struct PointsArgs {
  int out = 0;
  int64_t K = 0, P = 0, H = 0, N = 0;
  f64c theta, x, w, y;
  PointsArgs(const py::object& theta_o, const py::object& out_o, const py::object& x_o, const py::object& w_o,
             const py::object& y_o) {
    out = as_out_dim(out_o);
    theta = as_f64(theta_o, "theta");
    H = check_theta(theta, out);
    x = as_f64(x_o, "x");
    if (!(x.ndim() == 1 || (x.ndim() == 2 && x.shape(1) == 1)))
      throw py::value_error("x: expected 1-D nodes of shape (N,) or (N, 1), got shape " + shape_str(x));
    N = x.shape(0);
    if (!all_finite(x)) throw py::value_error("x: expected finite nodes (NaN or inf found)");
    w = as_f64(w_o, "w");
    if (w.ndim() != 1 || w.shape(0) != N)
      throw py::value_error("w: expected one weight per node, shape (" + std::to_string(N) + ",), got shape " +
                            shape_str(w));
    y = as_f64(y_o, "y");
    const bool y_ok = (y.ndim() == 2 && y.shape(0) == N && y.shape(1) == out) ||
                      (y.ndim() == 1 && out == 1 && y.shape(0) == N);
    if (!y_ok)
      throw py::value_error("y: expected target values of shape (" + std::to_string(N) + ", " +
                            std::to_string(out) + "), got shape " + shape_str(y));
    K = theta.shape(0);
    P = theta.shape(1);
  }
};

}  // namespace

void bind_sweep(py::module_& m) {
  m.def(
      "stable_order",
      [](const py::object& x_in, int threads) {
        const f64c x = as_f64(x_in, "x");
        if (x.ndim() != 1) throw py::value_error("x: expected a 1-D array");
        const int64_t N = x.shape(0);
        for (int64_t j = 0; j < N; ++j)
          if (std::isnan(x.data()[j])) throw py::value_error("x: expected no NaN");
        if (threads < 1) throw py::value_error("threads: expected threads >= 1");
        py::array_t<int64_t> order(N);
        py::array_t<double> sorted(N);
        {
          py::gil_scoped_release release;
          std::vector<int64_t> o;
          stable_order(x.data(), N, o, threads, sorted.mutable_data());
          std::copy(o.begin(), o.end(), order.mutable_data());
        }
        return py::make_tuple(order, sorted);
      },
      py::arg("x"), py::arg("threads") = 1,
      "The point sweep's sort (cpu/radix_sort.h), for tests: the stable sorting permutation of x (N,)\n"
      "(int64) and x in that order (-0.0 as +0.0), on up to `threads` threads.");

  m.def(
      "shallow1d_exact",
      [](py::object theta_o, py::object out_o, py::object spec) {
        const int out_dim = as_out_dim(out_o);
        f64c theta = as_f64(theta_o, "theta");
        const int64_t H = check_theta(theta, out_dim);
        const ProblemArgs prob =
            parse_problem_spec(make_layout({1, H, out_dim}), spec, kNeedSupport | kNeedTargetPieces | kNeedDensity1D);
        const ProblemSpec& p = prob.spec;
        const int64_t K = theta.shape(0), P = theta.shape(1);
        py::array_t<double> risk(K);
        py::array_t<double> grad({K, P});
        {
          py::gil_scoped_release release;
          shallow1d_exact_cpu(theta.data(), K, H, out_dim, p.lo, p.hi, p.target_pieces, p.density, risk.mutable_data(),
                              grad.mutable_data());
        }
        return py::make_tuple(risk, grad);
      },
      py::arg("theta"), py::arg("out_dim"), py::kw_only(), py::arg("spec"),
      "Exact risk ∫_lo^hi |N(x) - f(x)|^2 rho(x) dx and generalized gradient of shallow [1, H, out] "
      "nets theta (K, P), by one sorted sweep over the kinks (O(H log H) per net). spec: "
      "ProblemSpec.native() with the support lo, hi, the target f as 1-D pieces target_breaks (m+1,), "
      "target_coeffs (m, deg+1, out) in local powers (the end pieces extend beyond the breaks) and the "
      "density rho as density_breaks (q+1,), density_coeffs (q, dd+1) in local powers, zero outside its "
      "breaks. Returns (risk (K,), grad (K, P)) float64.");

  m.def(
      "shallow1d_points",
      [](py::object theta_o, py::object out_o, py::object x_o, py::object w_o, py::object y_o) {
        const PointsArgs a(theta_o, out_o, x_o, w_o, y_o);
        py::array_t<double> risk(a.K);
        py::array_t<double> grad({a.K, a.P});
        {
          py::gil_scoped_release release;
          shallow1d_points_cpu(a.theta.data(), a.K, a.H, a.out, a.N, a.x.data(), a.w.data(), a.y.data(),
                               risk.mutable_data(), grad.mutable_data());
        }
        return py::make_tuple(risk, grad);
      },
      py::arg("theta"), py::arg("out_dim"), py::arg("x"), py::arg("w"), py::arg("y"),
      "Weighted risk sum_j w_j |N(x_j) - y_j|^2 and its generalized gradient (relu'(0) = 0) of "
      "shallow [1, H, out] nets theta (K, P) at 1-D nodes x (N,), by one sweep over nodes and kinks "
      "sorted together: O((N + H) log(N + H)) per net. Returns (risk (K,), grad (K, P)) float64.");

  m.def(
      "_harness_exact_sweep",
      [](py::object theta_o, py::object out_o, py::object spec, int64_t group) {
        const int out_dim = as_out_dim(out_o);
        if (out_dim > sweep_grid::kMaxOut) throw py::value_error("out_dim: the exact sweep grid takes at most 3 outputs");
        if (group < 1) throw py::value_error("group: expected >= 1 networks per launch");
        f64c theta = as_f64(theta_o, "theta");
        const int64_t H = check_theta(theta, out_dim);
        const ProblemArgs prob =
            parse_problem_spec(make_layout({1, H, out_dim}), spec, kNeedSupport | kNeedTargetPieces | kNeedDensity1D);
        const ExactSweepArgs args(prob.spec);
        const int64_t K = theta.shape(0), P = theta.shape(1);
        py::array_t<double> risk(K);
        py::array_t<double> grad({K, P});
        exact_sweep_grid_host(theta.data(), K, H, out_dim, args.ex, group, risk.mutable_data(), grad.mutable_data());
        return py::make_tuple(risk, grad);
      },
      py::arg("theta"), py::arg("out_dim"), py::kw_only(), py::arg("spec"), py::arg("group") = 1 << 30,
      "Test only: the CUDA exact sweep's grid (cuda/src/sweep_points.cu) run sequentially on the host "
      "(reluflow/sweep_grid.h), networks launched in groups of `group`. Arguments and results as "
      "shallow1d_exact.");

  m.def(
      "_harness_point_sweep",
      [](py::object theta_o, py::object out_o, py::object x_o, py::object w_o, py::object y_o, int64_t group) {
        const PointsArgs a(theta_o, out_o, x_o, w_o, y_o);
        if (a.out > sweep_grid::kMaxOut) throw py::value_error("out_dim: the point sweep grid takes at most 3 outputs");
        if (group < 1) throw py::value_error("group: expected >= 1 networks per launch");
        py::array_t<double> risk(a.K);
        py::array_t<double> grad({a.K, a.P});
        point_sweep_grid_host(a.theta.data(), a.K, a.H, a.out, a.N, a.x.data(), a.w.data(), a.y.data(), group,
                              risk.mutable_data(), grad.mutable_data());
        return py::make_tuple(risk, grad);
      },
      py::arg("theta"), py::arg("out_dim"), py::arg("x"), py::arg("w"), py::arg("y"), py::arg("group") = 1 << 30,
      "Test only: the CUDA point sweep's grid (cuda/src/sweep_points.cu) run sequentially on the host "
      "(reluflow/sweep_grid.h), networks launched in groups of `group`. Arguments and results as "
      "shallow1d_points.");
}

}  // namespace reluflow
