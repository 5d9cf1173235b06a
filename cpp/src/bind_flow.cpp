// Bindings of the integrator loops (flow_cpu.cpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "bind_util.h"
#include "bindings.h"
#include "flow_cpu.h"

namespace py = pybind11;

namespace reluflow {

namespace {

// A TargetSpec viewing the arrays it keeps alive.
struct TargetArgs {
  f64_array A, b, breaks, coeffs;
  TargetSpec spec{};
};

TargetArgs parse_target(const std::string& kind, const Layout& lay, const py::object& A,
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

template <class T>
py::dict run_typed(FlowSpec spec, py::array_t<T, py::array::c_style | py::array::forcecast> theta_in) {
  const int64_t K = spec.K, P = spec.lay.num_params;
  py::array_t<T> theta({K, P});
  std::copy(theta_in.data(), theta_in.data() + K * P, theta.mutable_data());
  const int64_t T_rec = flow_num_records(spec.steps, spec.record_every);
  py::array_t<double> rec_risk({T_rec, K}), rec_gnorm({T_rec, K}), rec_energy({T_rec, K});
  py::array_t<double> energy(K);
  py::array_t<uint8_t> active(K);
  std::fill(energy.mutable_data(), energy.mutable_data() + K, 0.0);
  std::fill(active.mutable_data(), active.mutable_data() + K, 1);
  FlowOut out;
  out.rec_risk = rec_risk.mutable_data();
  out.rec_gnorm = rec_gnorm.mutable_data();
  out.rec_energy = rec_energy.mutable_data();
  out.energy = energy.mutable_data();
  out.active = active.mutable_data();
  {
    py::gil_scoped_release release;
    flow_run_cpu<T>(spec, theta.mutable_data(), out);
  }
  py::dict res;
  res["theta"] = theta;
  res["risk"] = rec_risk;
  res["grad_norm"] = rec_gnorm;
  res["energy"] = rec_energy;
  res["active"] = active;
  res["evaluations"] = out.evaluations;
  return res;
}

}  // namespace

void bind_flow(py::module_& m) {
  m.def(
      "target_values",
      [](std::vector<int64_t> widths, f64_array x, const std::string& target_kind, py::object tA,
         py::object tb, py::object tbreaks, py::object tcoeffs) {
        const Layout lay = make_layout(widths);
        const int d = lay.widths[0], od = lay.widths[lay.num_layers];
        if (x.ndim() != 2 || x.shape(1) != d) throw py::value_error("x: expected an (N, d) array, got " + shape_str(x));
        TargetArgs target = parse_target(target_kind, lay, tA, tb, tbreaks, tcoeffs);
        const int64_t N = x.shape(0);
        py::array_t<double> y({N, static_cast<int64_t>(od)});
        {
          py::gil_scoped_release release;
          const double* xp = x.data();
          double* yp = y.mutable_data();
#pragma omp parallel for schedule(static) if (N * od > 65536)
          for (int64_t j = 0; j < N; ++j) target_eval(target.spec, xp + j * d, yp + j * od);
        }
        return y;
      },
      py::arg("widths"), py::arg("x"), py::arg("target_kind"), py::arg("target_A") = py::none(),
      py::arg("target_b") = py::none(), py::arg("target_breaks") = py::none(),
      py::arg("target_coeffs") = py::none(),
      "Native target f(x) (N, out) evaluated in C++ (targets.h): affine or piecewise polynomial.");

  m.def(
      "flow_run",
      [](std::vector<int64_t> widths, py::array theta, const std::string& method, int64_t steps,
         int64_t start_step, int64_t record_every, f64_array h, double max_abs, bool normalized,
         py::object x, py::object w, py::object y, bool resample, uint64_t seed, int64_t n,
         const std::string& dist_kind, py::object low, py::object high, py::object dbreaks,
         py::object anti, py::object cum, const std::string& target_kind, py::object tA,
         py::object tb, py::object tbreaks, py::object tcoeffs) {
        FlowSpec spec;
        spec.lay = make_layout(widths);
        const int64_t P = spec.lay.num_params;
        if (theta.ndim() != 2 || theta.shape(1) != P)
          throw py::value_error("theta: expected a (K, " + std::to_string(P) + ") array");
        spec.K = theta.shape(0);
        if (method == "euler" || method == "gd") spec.method = kFlowEuler;
        else if (method == "heun") spec.method = kFlowHeun;
        else if (method == "rk4") spec.method = kFlowRK4;
        else throw py::value_error("method: expected 'gd', 'euler', 'heun' or 'rk4', got '" + method + "'");
        if (steps < 0) throw py::value_error("steps: expected steps >= 0");
        if (record_every < 1) throw py::value_error("record_every: expected >= 1");
        if (start_step < 0 || start_step + steps > 4294967295LL)
          throw py::value_error("start_step: step indices must lie in [0, 2**32)");
        if (h.ndim() != 1 || h.shape(0) < steps) throw py::value_error("h: expected one step size per step");
        spec.steps = steps;
        spec.start_step = start_step;
        spec.record_every = record_every;
        spec.h = h.data();
        spec.max_abs = max_abs;
        spec.normalized = normalized;
        spec.resample = resample;
        f64_array xa, wa, ya;
        DistArgs dist;
        TargetArgs target;
        const int d = spec.lay.widths[0], od = spec.lay.widths[spec.lay.num_layers];
        if (resample) {
          if (n < 1) throw py::value_error("n: expected n >= 1 samples per step");
          dist = parse_dist(dist_kind, low, high, dbreaks, anti, cum);
          if (dist.dist.dim != d) throw py::value_error("low: the distribution's dimension differs from widths[0]");
          target = parse_target(target_kind, spec.lay, tA, tb, tbreaks, tcoeffs);
          spec.seed = seed;
          spec.n = n;
          spec.dist = dist.dist;
          spec.target = target.spec;
        } else {
          xa = as_vector(x, "x");
          wa = as_vector(w, "w");
          ya = as_vector(y, "y");
          if (xa.ndim() != 2 || xa.shape(1) != d) throw py::value_error("x: expected an (N, d) array");
          spec.N = xa.shape(0);
          if (wa.ndim() != 1 || wa.shape(0) != spec.N) throw py::value_error("w: expected an (N,) array");
          if (ya.ndim() != 2 || ya.shape(0) != spec.N || ya.shape(1) != od)
            throw py::value_error("y: expected an (N, out) array");
          spec.x = xa.data();
          spec.w = wa.data();
          spec.y = ya.data();
        }
        if (py::isinstance<py::array_t<float>>(theta) && theta.dtype().is(py::dtype::of<float>()))
          return run_typed<float>(spec, py::array_t<float, py::array::c_style | py::array::forcecast>(theta));
        if (!theta.dtype().is(py::dtype::of<double>()))
          throw py::type_error("theta: expected a float32 or float64 array");
        return run_typed<double>(spec, py::array_t<double, py::array::c_style | py::array::forcecast>(theta));
      },
      py::arg("widths"), py::arg("theta"), py::arg("method"), py::arg("steps"), py::arg("start_step"),
      py::arg("record_every"), py::arg("h"), py::arg("max_abs"), py::arg("normalized"),
      py::arg("x") = py::none(), py::arg("w") = py::none(), py::arg("y") = py::none(),
      py::arg("resample") = false, py::arg("seed") = 0, py::arg("n") = 0, py::arg("dist_kind") = "uniform",
      py::arg("low") = py::none(), py::arg("high") = py::none(), py::arg("breaks") = py::none(),
      py::arg("anti") = py::none(), py::arg("cum") = py::none(), py::arg("target_kind") = "affine",
      py::arg("target_A") = py::none(), py::arg("target_b") = py::none(),
      py::arg("target_breaks") = py::none(), py::arg("target_coeffs") = py::none(),
      "Gradient descent / fixed-step RK loop for K networks in C++ (GIL released). Returns a dict "
      "with theta (K,P), risk/grad_norm/energy records (T,K), active (K,) and evaluations.");
}

}  // namespace reluflow
