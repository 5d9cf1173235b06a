// Binding of the test-only host harness of the CUDA dense grid (cpu/grid_harness.h):
// _core._harness_risk_grad. Argument checks only; the grid runs in grid_harness.cpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/bind_spec.h"
#include "bindings/bind_util.h"
#include "bindings/bindings.h"
#include "cpu/grid_harness.h"

namespace py = pybind11;

namespace reluflow {
namespace {

using f32_array = py::array_t<float, py::array::c_style | py::array::forcecast>;

GridPath parse_path(const std::string& s) {
  if (s == "auto") return GridPath::Auto;
  if (s == "shallow") return GridPath::Shallow;
  if (s == "deep") return GridPath::Deep;
  throw std::invalid_argument("path: expected 'auto', 'shallow' or 'deep', got '" + s + "'");
}

f64_array take_f64(const py::array& a_in, const char* name) {
  f64_array a = f64_array::ensure(a_in);
  if (!a) throw std::invalid_argument(std::string(name) + ": expected an array of real numbers");
  return a;
}

void check_shape(const py::array& a, const char* name, std::vector<int64_t> shape, const char* what) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
  if (!ok) throw std::invalid_argument(std::string(name) + ": expected shape " + what + ", got " + shape_str(a));
}

}  // namespace

void bind_harness(py::module_& m) {
  m.def(
      "_harness_risk_grad",
      [](const std::vector<int64_t>& widths, const py::array& theta_in, const py::array& x_in, const py::array& w_in,
         const py::object& y_in, bool want_grad, const std::string& path, const py::object& spec) {
        const Layout lay = make_layout(widths);
        const GridPath gp = parse_path(path);
        py::array theta;
        bool f32 = false;
        dispatch_float(
            theta_in, [&] { theta = f32_array::ensure(theta_in); f32 = true; },
            [&] { theta = take_f64(theta_in, "theta"); }, [&] { theta = take_f64(theta_in, "theta"); });
        if (theta.ndim() != 2 || theta.shape(1) != lay.num_params)
          throw std::invalid_argument("theta: expected shape (K, P) with P = " + std::to_string(lay.num_params) +
                                      ", got " + shape_str(theta));
        const int64_t K = theta.shape(0);
        const f64_array x = take_f64(x_in, "x"), w = take_f64(w_in, "w");
        const int64_t N = x.ndim() >= 1 ? x.shape(0) : -1;
        const int d = lay.widths[0], out = lay.widths[lay.num_layers];
        check_shape(x, "x", {N, d}, "(N, d)");
        check_shape(w, "w", {N}, "(N,) with N the rows of x");
        f64_array y;
        ProblemArgs prob;  // the target, when y is None (kept alive: its arrays back prob.spec.target)
        if (y_in.is_none()) {
          if (spec.is_none()) throw std::invalid_argument("y: required unless spec= gives a native target");
          prob = parse_problem_spec(lay, spec, kNeedTarget | kNeedTeacherOk);
        } else {
          y = take_f64(y_in, "y");
          check_shape(y, "y", {N, out}, "(N, out)");
        }
        py::array_t<double> risk(K);
        py::object grad = py::none();
        double* gptr = nullptr;
        if (want_grad) {
          py::array_t<double> g({K, static_cast<int64_t>(lay.num_params)});
          gptr = g.mutable_data();
          grad = g;
        }
        {
          py::gil_scoped_release release;
          risk_and_grad_grid_host(lay, K, N, f32, theta.data(), x.data(), w.data(), y_in.is_none() ? nullptr : y.data(),
                                  prob.spec, gp, risk.mutable_data(), gptr);
        }
        return py::make_tuple(risk, grad);
      },
      py::arg("widths"), py::arg("theta"), py::arg("x"), py::arg("w"), py::arg("y"), py::arg("want_grad") = true,
      py::arg("path") = "auto", py::kw_only(), py::arg("spec") = py::none(),
      "TEST ONLY: the CUDA dense grid (cuda/src/risk_grad.cu) run sequentially on the host with the same\n"
      "per-thread functions (reluflow/risk_grad_grid.h). theta (K, P) float32/float64, x (N, d), w (N,),\n"
      "y (N, out) float64 (or None: the target of spec=ProblemSpec.native() evaluated per node: a shallow\n"
      "teacher by net.h, an affine or piecewise-polynomial target by targets.h) -> risk (K,), grad (K, P) float64 (None unless want_grad). path: 'auto', 'shallow'\n"
      "(two passes, [d, H, out] with d <= 8, out <= 3) or 'deep' (any widths).");
}

}  // namespace reluflow
