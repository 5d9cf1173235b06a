// Bindings of the exact 1-D quadrature on the kink partition (quad1d_cpu.h): the per-network pipeline
// for K networks, and for tests its two stages for one network (the partition, the nodes).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bindings/bind_quad1d.h"
#include "bindings/bind_util.h"
#include "bindings/bindings.h"
#include "cpu/quad1d_cpu.h"
#include "reluflow/manifold.h"

namespace py = pybind11;

namespace reluflow {
namespace {

template <class T>
py::tuple run_typed(const ProblemSpec& prob, const py::array& theta_in, const Quad1DSpec& rule, bool want_grad) {
  const Layout& lay = prob.lay;
  using arr_t = py::array_t<T, py::array::c_style | py::array::forcecast>;
  arr_t theta = arr_t::ensure(theta_in);
  if (!theta) throw py::value_error("theta: could not read the array");
  const int64_t P = lay.num_params;
  if (theta.ndim() != 2 || theta.shape(1) != P)
    throw py::value_error("theta: expected shape (K, P) with P = " + std::to_string(P) + ", got " +
                          shape_str(theta));
  const int64_t K = theta.shape(0);
  py::array_t<double> risk(K);
  py::object grad = py::none();
  double* gp = nullptr;
  if (want_grad) {
    py::array_t<double> g({K, P});
    gp = g.mutable_data();
    grad = g;
  }
  double* rp = risk.mutable_data();
  {
    py::gil_scoped_release release;
    quad1d_risk_and_grad_cpu<T>(prob, theta.data(), K, rule, rp, gp);
  }
  return py::make_tuple(risk, grad);
}

// A numpy array of `shape` holding v's values (a copy; the GIL held).
template <class U>
py::array_t<U> to_array(const std::vector<U>& v, std::vector<py::ssize_t> shape) {
  py::array_t<U> a(std::move(shape));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

f64_array one_network(const py::object& theta_in, const Layout& lay) {
  f64_array th = f64_array::ensure(theta_in);
  if (!th || th.ndim() != 1 || th.shape(0) != lay.num_params)
    throw py::value_error("theta: expected (" + std::to_string(lay.num_params) + ",) parameters of one network");
  return th;
}

}  // namespace

void bind_quad1d(py::module_& m) {
  m.def(
      "quad1d_risk_and_grad",
      [](std::vector<int64_t> widths, py::array theta, py::object fixed_breaks, int order, bool want_grad,
         py::object spec) {
        const Layout lay = layout_1d(widths, "widths");
        const QuadRule rule = parse_quad_rule(fixed_breaks, order);
        const ProblemArgs prob = parse_problem_spec(lay, spec, kQuad1DNeeds);
        const auto f64 = [&] { return run_typed<double>(prob.spec, theta, rule.spec, want_grad); };
        return dispatch_float(
            theta, [&] { return run_typed<float>(prob.spec, theta, rule.spec, want_grad); }, f64, [&] {
              // other real numbers (integers, half or long double) are computed in float64
              const char kind = theta.dtype().kind();
              if (kind != 'f' && kind != 'i' && kind != 'u')
                throw py::value_error("theta: expected a float32 or float64 array");
              return f64();
            });
      },
      py::arg("widths"), py::arg("theta"), py::arg("fixed_breaks"), py::arg("order"), py::arg("want_grad") = true,
      py::kw_only(), py::arg("spec"),
      "Exact 1-D quadrature of K deep nets theta (K, P) (float32 or float64) on their kink partitions merged "
      "with fixed_breaks, `order` Gauss–Legendre points per piece, then the fused dense kernel per network "
      "(OpenMP over networks, GIL released, deterministic). spec: ProblemSpec.native() (support lo/hi, "
      "density, target: affine, piecewise polynomial or teacher). Returns (risk (K,), grad (K, P) or None), "
      "float64; NaN for a network with a non-finite parameter.");

  m.def(
      "quad1d_nodes",
      [](std::vector<int64_t> widths, py::object theta, py::object fixed_breaks, int order, py::object spec) {
        const Layout lay = layout_1d(widths, "widths");
        const f64_array th = one_network(theta, lay);
        const QuadRule rule = parse_quad_rule(fixed_breaks, order);
        const ProblemArgs prob = parse_problem_spec(lay, spec, kQuad1DNeeds);
        std::vector<double> x, w, y;
        {
          py::gil_scoped_release release;
          quad1d_nodes(prob.spec, th.data(), rule.spec, x, w, y);
        }
        const int64_t N = static_cast<int64_t>(x.size()), od = lay.widths[lay.num_layers];
        return py::make_tuple(to_array(x, {N}), to_array(w, {N}), to_array(y, {N, od}));
      },
      py::arg("widths"), py::arg("theta"), py::arg("fixed_breaks"), py::arg("order"), py::kw_only(), py::arg("spec"),
      "The quadrature nodes of one network theta (P,) as quad1d_risk_and_grad builds them: (x (N,), w (N,), "
      "y (N, out)), float64 (for tests against quadrature.quadrature_nodes).");

  m.def(
      "quad1d_nodes_batch",
      [](std::vector<int64_t> widths, py::object theta_in, py::object fixed_breaks, int order, py::object spec) {
        const Layout lay = layout_1d(widths, "widths");
        const f64_array theta = f64_array::ensure(theta_in);
        if (!theta || theta.ndim() != 2 || theta.shape(1) != lay.num_params)
          throw py::value_error("theta: expected shape (K, P) with P = " + std::to_string(lay.num_params));
        const QuadRule rule = parse_quad_rule(fixed_breaks, order);
        const ProblemArgs prob = parse_problem_spec(lay, spec, kQuad1DNeeds);
        const int64_t K = theta.shape(0);
        Quad1DNodes nodes;
        {
          py::gil_scoped_release release;
          quad1d_nodes_batch(prob.spec, theta.data(), K, rule.spec, nodes);
        }
        const int64_t N = nodes.offset.back(), od = lay.widths[lay.num_layers];
        const int64_t hidden = hidden_neurons(lay);  // l_1 + ... + l_{L-1}
        py::object zero = py::none();
        if (!nodes.zero.empty()) zero = to_array(nodes.zero, {N, hidden});
        return py::make_tuple(to_array(nodes.offset, {K + 1}), to_array(nodes.x, {N}), to_array(nodes.w, {N}),
                              to_array(nodes.y, {N, od}), zero);
      },
      py::arg("widths"), py::arg("theta"), py::arg("fixed_breaks"), py::arg("order"), py::kw_only(), py::arg("spec"),
      "The quadrature nodes of K networks theta (K, P) side by side (OpenMP over networks, GIL released), as "
      "quad1d_nodes builds them: (offset (K + 1,) int64, x (N,), w (N,), y (N, out), zero (N, hidden) uint8 "
      "or None); network k's nodes are rows offset[k]:offset[k + 1]; zero flags the hidden pre-activations "
      "that vanish identically around a node (None when no network has one); a network with a non-finite "
      "parameter gets no nodes. What the device's ragged dense kernel takes (backends/cuda.py partition).");

  m.def(
      "kink_partition_1d",
      [](std::vector<int64_t> widths, py::object theta, double lo, double hi) {
        const Layout lay = layout_1d(widths, "widths");
        const f64_array th = one_network(theta, lay);
        if (std::isnan(lo) || std::isnan(hi) || !(lo < hi))
          throw py::value_error("lo, hi: expected lo < hi, got lo=" + std::to_string(lo) +
                                ", hi=" + std::to_string(hi));
        std::vector<double> out;
        {
          py::gil_scoped_release release;
          kink_partition_1d(lay, th.data(), lo, hi, out);
        }
        return to_array(out, {static_cast<py::ssize_t>(out.size())});
      },
      py::arg("widths"), py::arg("theta"), py::arg("lo"), py::arg("hi"),
      "Sorted breakpoints [lo, kinks..., hi] of one 1-D network theta (P,) on [lo, hi] (either end may be "
      "infinite), as quadrature.kink_partition computes them.");
}

}  // namespace reluflow
