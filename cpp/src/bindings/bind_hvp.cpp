// Bindings of the CPU Hessian-vector products (hvp_cpu.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/bind_util.h"
#include "bindings/bindings.h"
#include "cpu/hvp_cpu.h"
#include "reluflow/manifold.h"

namespace py = pybind11;

namespace reluflow {
namespace {

using u8_array = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

f64_array take_f64(const py::object& obj, const char* name) {
  f64_array a = f64_array::ensure(obj);
  if (!a) throw std::invalid_argument(std::string(name) + ": expected an array of real numbers");
  return a;
}

}  // namespace

void bind_hvp(py::module_& m) {
  m.def(
      "risk_grad_hvp",
      [](const std::vector<int64_t>& widths, const py::object& theta_in, const py::object& V_in,
         const py::object& x_in, const py::object& w_in, const py::object& y_in, const py::object& zero_in,
         const py::object& kink_c_in, const py::object& kink_u_in) {
        const Layout lay = make_layout(widths);
        const int64_t P = lay.num_params;
        const int d = lay.widths[0], out = lay.widths[lay.num_layers];
        const f64_array theta = take_f64(theta_in, "theta");
        if (theta.ndim() != 2 || theta.shape(1) != P)
          throw std::invalid_argument("theta: expected shape (K, P) with P = " + std::to_string(P) + " for widths " +
                                      widths_str(widths) + ", got " + shape_str(theta));
        const int64_t K = theta.shape(0);
        const f64_array V = take_f64(V_in, "V");
        if (V.ndim() != 3 || V.shape(0) != K || V.shape(2) != P)
          throw std::invalid_argument("V: expected shape (K, B, P) with K = " + std::to_string(K) + ", P = " +
                                      std::to_string(P) + ", got " + shape_str(V));
        const f64_array x = take_f64(x_in, "x");
        if (x.ndim() != 2 || x.shape(1) != d)
          throw std::invalid_argument("x: expected shape (N, d) with d = widths[0] = " + std::to_string(d) +
                                      ", got " + shape_str(x));
        const int64_t N = x.shape(0);
        const f64_array w = take_f64(w_in, "w");
        if (w.ndim() != 1 || w.shape(0) != N)
          throw std::invalid_argument("w: expected shape (N,) with N = " + std::to_string(N) +
                                      " (the rows of x), got " + shape_str(w));
        const f64_array y = take_f64(y_in, "y");
        if (y.ndim() != 2 || y.shape(0) != N || y.shape(1) != out)
          throw std::invalid_argument("y: expected shape (N, out) = (" + std::to_string(N) + ", " +
                                      std::to_string(out) + "), got " + shape_str(y));
        HVPProblem p;
        p.lay = lay;
        p.K = K;
        p.N = N;
        p.B = V.shape(1);
        p.theta = theta.data();
        p.V = V.data();
        p.x = x.data();
        p.w = w.data();
        p.y = y.data();
        u8_array zero;
        if (!zero_in.is_none()) {
          zero = u8_array::ensure(zero_in);
          const int64_t hidden = hidden_neurons(lay);  // l_1 + ... + l_{L-1}
          if (!zero || zero.ndim() != 2 || zero.shape(0) != N || zero.shape(1) != hidden)
            throw std::invalid_argument("zero: expected a bool array of shape (N, l_1 + ... + l_{L-1}) = (" +
                                        std::to_string(N) + ", " + std::to_string(hidden) + ")");
          p.zero = zero.data();
        }
        f64_array kc, ku;
        if (kink_c_in.is_none() != kink_u_in.is_none())
          throw std::invalid_argument("kink_c: kink_c and kink_u come together (both or neither)");
        if (!kink_c_in.is_none()) {
          kc = take_f64(kink_c_in, "kink_c");
          ku = take_f64(kink_u_in, "kink_u");
          if (kc.ndim() != 2 || kc.shape(0) != K)
            throw std::invalid_argument("kink_c: expected shape (K, M) with K = " + std::to_string(K) + ", got " +
                                        shape_str(kc));
          if (ku.ndim() != 3 || ku.shape(0) != K || ku.shape(1) != kc.shape(1) || ku.shape(2) != P)
            throw std::invalid_argument("kink_u: expected shape (K, M, P) = (" + std::to_string(K) + ", " +
                                        std::to_string(kc.shape(1)) + ", " + std::to_string(P) + "), got " +
                                        shape_str(ku));
          p.M = kc.shape(1);
          p.kink_c = kc.data();
          p.kink_u = ku.data();
        }
        py::array_t<double> risk(K);
        py::array_t<double> grad({K, P});
        py::array_t<double> hv({K, p.B, P});
        {
          py::gil_scoped_release release;
          risk_grad_hvp_cpu(p, risk.mutable_data(), grad.mutable_data(), hv.mutable_data());
        }
        return py::make_tuple(risk, grad, hv);
      },
      py::arg("widths"), py::arg("theta"), py::arg("V"), py::arg("x"), py::arg("w"), py::arg("y"),
      py::arg("zero") = py::none(), py::arg("kink_c") = py::none(), py::arg("kink_u") = py::none(),
      "Risk sum_j w_j |N_k(x_j) - y_j|^2 (K,), its generalized gradient (K, P) and the Hessian-vector\n"
      "products H_k V_k (K, B, P) of that weighted sum (relu'' = 0, relu'(0) = 0), float64. theta (K, P),\n"
      "V (K, B, P), x (N, d), w (N,), y (N, out); zero (N, l_1 + ... + l_{L-1}) bool or None: hidden\n"
      "pre-activations set to exactly 0 at each node. kink_c (K, M), kink_u (K, M, P) or None: rank-one\n"
      "terms added to every product, hv_kb += sum_i c_ki (u_ki . v_kb) u_ki (the moving kinks of the exact\n"
      "1-D quadrature). Deterministic: the same bits for any number of\n"
      "threads, and for a network alone or in any batch.");
}

}  // namespace reluflow
