// Bindings of the fused CPU risk/gradient and realization (risk_grad_cpu.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/bind_util.h"
#include "bindings/bindings.h"
#include "cpu/risk_grad_cpu.h"

namespace py = pybind11;

namespace reluflow {
namespace {

using f32_array = py::array_t<float, py::array::c_style | py::array::forcecast>;
using u8_array = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

// l_1 + ... + l_{L-1}: the hidden pre-activations of one node.
int64_t net_hidden_width(const Layout& lay) {
  int64_t s = 0;
  for (int k = 1; k < lay.num_layers; ++k) s += lay.widths[k];
  return s;
}

RGKernel parse_kernel(const std::string& s) {
  if (s == "auto") return RGKernel::Auto;
  if (s == "shallow") return RGKernel::Shallow;
  if (s == "deep") return RGKernel::Deep;
  if (s == "scalar") return RGKernel::Scalar;
  throw std::invalid_argument("kernel: expected 'auto', 'shallow', 'deep' or 'scalar', got '" + s + "'");
}

// theta: float32 stays float32 (no copy when C-contiguous); anything else becomes float64.
struct Theta {
  py::array arr;
  bool f32 = false;
  const void* data = nullptr;
};

Theta take_theta(const py::array& theta_in, const Layout& lay, const std::vector<int64_t>& widths) {
  Theta t;
  const auto as_f64 = [&] {  // float64, and anything else cast to it
    f64_array a = f64_array::ensure(theta_in);
    if (!a) throw std::invalid_argument("theta: expected a float32 or float64 array");
    t.arr = a;
    t.data = a.data();
  };
  dispatch_float(
      theta_in,
      [&] {
        f32_array a = f32_array::ensure(theta_in);
        if (!a) throw std::invalid_argument("theta: could not read the array as float32");
        t.arr = a;
        t.f32 = true;
        t.data = a.data();
      },
      as_f64, as_f64);
  if (t.arr.ndim() != 2 || t.arr.shape(1) != lay.num_params)
    throw std::invalid_argument("theta: expected shape (K, P) with P = " + std::to_string(lay.num_params) +
                                " for widths " + widths_str(widths) + ", got " + shape_str(t.arr));
  return t;
}

f64_array take_x(const py::array& x_in, const Layout& lay) {
  f64_array x = f64_array::ensure(x_in);
  if (!x) throw std::invalid_argument("x: expected an array of real numbers");
  const int d = lay.widths[0];
  if (x.ndim() != 2 || x.shape(1) != d)
    throw std::invalid_argument("x: expected shape (N, d) with d = widths[0] = " + std::to_string(d) + ", got " +
                                shape_str(x));
  return x;
}

RGProblem make_problem(const Layout& lay, const Theta& th, const f64_array& x, const std::string& kernel,
                       int tile) {
  if (tile < 0) throw std::invalid_argument("tile: expected tile >= 0 (0: the kernel's default)");
  RGProblem p;
  p.lay = lay;
  p.K = th.arr.shape(0);
  p.N = x.shape(0);
  p.f32 = th.f32;
  p.theta = th.data;
  p.x = x.data();
  p.tile = tile;
  p.kernel = parse_kernel(kernel);
  if (p.kernel == RGKernel::Shallow && !shallow_kernel_supported(lay))
    throw std::invalid_argument("kernel: 'shallow' needs widths [d, H, out] with d <= 8 and out <= 3");
  return p;
}

}  // namespace

void bind_risk(py::module_& m) {
  m.def(
      "risk_and_grad",
      [](const std::vector<int64_t>& widths, const py::array& theta_in, const py::array& x_in,
         const py::array& w_in, const py::array& y_in, bool want_grad, const std::string& kernel, int tile,
         const py::object& zero_in) {
        const Layout lay = make_layout(widths);
        const Theta th = take_theta(theta_in, lay, widths);
        const f64_array x = take_x(x_in, lay);
        const int64_t N = x.shape(0);
        const int out = lay.widths[lay.num_layers];
        f64_array w = f64_array::ensure(w_in);
        if (!w) throw std::invalid_argument("w: expected an array of real numbers");
        if (w.ndim() != 1 || w.shape(0) != N)
          throw std::invalid_argument("w: expected shape (N,) with N = " + std::to_string(N) +
                                      " (the rows of x), got " + shape_str(w));
        f64_array y = f64_array::ensure(y_in);
        if (!y) throw std::invalid_argument("y: expected an array of real numbers");
        const bool y_ok = (y.ndim() == 2 && y.shape(0) == N && y.shape(1) == out) ||
                          (y.ndim() == 1 && out == 1 && y.shape(0) == N);
        if (!y_ok)
          throw std::invalid_argument("y: expected shape (N, out) = (" + std::to_string(N) + ", " +
                                      std::to_string(out) + "), got " + shape_str(y));
        RGProblem p = make_problem(lay, th, x, kernel, tile);
        p.w = w.data();
        p.y = y.data();
        u8_array zero;
        if (!zero_in.is_none()) {
          zero = u8_array::ensure(zero_in);
          const int64_t hidden = net_hidden_width(lay);
          if (!zero || zero.ndim() != 2 || zero.shape(0) != N || zero.shape(1) != hidden)
            throw std::invalid_argument("zero: expected a bool array of shape (N, l_1 + ... + l_{L-1}) = (" +
                                        std::to_string(N) + ", " + std::to_string(hidden) + ")");
          if (p.kernel != RGKernel::Auto && p.kernel != RGKernel::Scalar)
            throw std::invalid_argument("zero: only the 'scalar' kernel takes zero flags (kernel='auto' picks it)");
          p.zero = zero.data();
        }
        py::array_t<double> risk(p.K);
        py::object grad = py::none();
        double* gptr = nullptr;
        if (want_grad) {
          py::array_t<double> g({p.K, static_cast<int64_t>(lay.num_params)});
          gptr = g.mutable_data();
          grad = g;
        }
        {
          py::gil_scoped_release release;
          risk_and_grad_cpu(p, risk.mutable_data(), gptr);
        }
        return py::make_tuple(risk, grad);
      },
      py::arg("widths"), py::arg("theta"), py::arg("x"), py::arg("w"), py::arg("y"), py::arg("want_grad") = true,
      py::arg("kernel") = "auto", py::arg("tile") = 0, py::arg("zero") = py::none(),
      "Risk sum_j w_j |N_k(x_j) - y_j|^2 (K,) and its generalized gradient (K, P) (None unless want_grad),\n"
      "float64. theta (K, P) float32 (computed in float32, accumulated in float64) or float64; x (N, d),\n"
      "w (N,), y (N, out) float64. kernel: 'auto', 'shallow', 'deep' or 'scalar'; tile: nodes per tile\n"
      "(0: default). zero (N, l_1 + ... + l_{L-1}) bool or None: hidden pre-activations set to exactly 0\n"
      "at each node (runs the scalar kernel). Deterministic: the same bits for any number of threads.");

  m.def(
      "realization",
      [](const std::vector<int64_t>& widths, const py::array& theta_in, const py::array& x_in,
         const std::string& kernel, int tile) {
        const Layout lay = make_layout(widths);
        const Theta th = take_theta(theta_in, lay, widths);
        const f64_array x = take_x(x_in, lay);
        RGProblem p = make_problem(lay, th, x, kernel, tile);
        const int64_t out = lay.widths[lay.num_layers];
        py::array_t<double> res({p.K, p.N, out});
        {
          py::gil_scoped_release release;
          realization_cpu(p, res.mutable_data());
        }
        return res;
      },
      py::arg("widths"), py::arg("theta"), py::arg("x"), py::arg("kernel") = "auto", py::arg("tile") = 0,
      "N_theta(x) for every network: theta (K, P) float32/float64, x (N, d) -> (K, N, out) float64.");

  m.def(
      "risk_kernel",
      [](const std::vector<int64_t>& widths, const std::string& kernel) {
        RGProblem p;
        p.lay = make_layout(widths);
        p.kernel = parse_kernel(kernel);
        return resolve_kernel_name(p);
      },
      py::arg("widths"), py::arg("kernel") = "auto",
      "Which kernel risk_and_grad runs for these widths: 'shallow', 'deep' or 'scalar'.");
}

}  // namespace reluflow
