// Bindings of the integrator loops (flow_cpu.cpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/bind_field.h"
#include "bindings/bind_spec.h"
#include "bindings/bind_util.h"
#include "bindings/bindings.h"
#include "cpu/flow_cpu.h"
#include "cpu/parallel_policy.h"

namespace py = pybind11;

namespace reluflow {

namespace {

template <class T>
py::dict run_typed(FlowSpec spec, py::array_t<T, py::array::c_style | py::array::forcecast> theta_in,
                   bool record_theta) {
  const int64_t K = spec.K, P = spec.field.problem.lay.num_params;
  py::array_t<T> theta({K, P});
  std::copy(theta_in.data(), theta_in.data() + K * P, theta.mutable_data());
  const int64_t T_rec = flow_num_records(spec.steps, spec.record_every);
  py::array_t<double> rec_risk({T_rec, K}), rec_gnorm({T_rec, K}), rec_energy({T_rec, K});
  py::array_t<double> energy(K);
  py::array_t<uint8_t> active(K), reason(K), rose(K);
  py::array_t<double> growth(K);
  ThetaRecords<T> thetas(record_theta, T_rec, K, P);
  std::fill(energy.mutable_data(), energy.mutable_data() + K, 0.0);
  std::fill(active.mutable_data(), active.mutable_data() + K, 1);
  FlowOut out;
  out.rec_risk = rec_risk.mutable_data();
  out.rec_gnorm = rec_gnorm.mutable_data();
  out.rec_energy = rec_energy.mutable_data();
  out.energy = energy.mutable_data();
  out.active = active.mutable_data();
  out.reason = reason.mutable_data();
  out.growth = growth.mutable_data();
  out.rose = rose.mutable_data();
  {
    py::gil_scoped_release release;
    flow_run_cpu<T>(spec, theta.mutable_data(), out, thetas.data());
  }
  py::dict res;
  res["theta"] = theta;
  res["risk"] = rec_risk;
  res["grad_norm"] = rec_gnorm;
  res["energy"] = rec_energy;
  res["active"] = active;
  res["reason"] = reason;
  res["growth"] = growth;
  res["risk_rose"] = rose;
  res["thetas"] = thetas.result();
  res["evaluations"] = out.evaluations;
  res["interrupted"] = out.interrupted;
  res["steps_done"] = out.steps_done;
  res["records"] = out.records;
  return res;
}

}  // namespace

void bind_flow(py::module_& m) {
  // Configure once, call many: the integrator loops take `field=` instead of re-parsing the ~10 field
  // keyword arguments (and the problem's spec) at every call.
  py::class_<FieldArgs>(m, "Field",
                        "The vector field of the integrator loops (flow_run, dopri5_run), parsed and checked "
                        "once: Field(widths, **field keyword arguments) with the keywords of bind_field.h "
                        "(source, spec, x/w/y, seed/n, target_fn, fixed_breaks/order, sweep, normalized). "
                        "Pass it as field= to the loops.")
      .def(py::init([](std::vector<int64_t> widths, py::kwargs kwargs) { return parse_field(make_layout(widths), kwargs); }),
           py::arg("widths"))
      .def_property_readonly("widths", [](const FieldArgs& f) {
        const Layout& lay = f.spec.problem.lay;
        return std::vector<int>(lay.widths, lay.widths + lay.num_layers + 1);
      })
      .def_property_readonly("source", [](const FieldArgs& f) {
        static const char* names[] = {"fixed", "resample", "exact_shallow1d", "quad1d"};
        return std::string(names[f.spec.source]);
      });

  m.def(
      "target_values",
      [](std::vector<int64_t> widths, f64_array x, py::object spec) {
        const Layout lay = make_layout(widths);
        const int d = lay.widths[0], od = lay.widths[lay.num_layers];
        if (x.ndim() != 2 || x.shape(1) != d) throw py::value_error("x: expected an (N, d) array, got " + shape_str(x));
        const ProblemArgs prob = parse_problem_spec(lay, spec, kNeedTarget);
        const TargetSpec target = prob.spec.target;
        const int64_t N = x.shape(0);
        py::array_t<double> y({N, static_cast<int64_t>(od)});
        {
          py::gil_scoped_release release;
          const double* xp = x.data();
          double* yp = y.mutable_data();
#pragma omp parallel for schedule(static) if (N * od > kMinParallelTargetValues)
          for (int64_t j = 0; j < N; ++j) target_eval(target, xp + j * d, yp + j * od);
        }
        return y;
      },
      py::arg("widths"), py::arg("x"), py::kw_only(), py::arg("spec"),
      "Native target f(x) (N, out) evaluated in C++ (targets.h): affine or piecewise polynomial, from "
      "spec (ProblemSpec.native()).");

  m.def(
      "flow_run",
      [](std::vector<int64_t> widths, py::array theta, const std::string& method, int64_t steps,
         int64_t start_step, int64_t record_every, f64_array h, double max_abs, double max_growth,
         double rise_tol, py::kwargs kwargs) {
        FlowSpec spec;
        const Layout lay = make_layout(widths);
        const int64_t P = lay.num_params;
        if (theta.ndim() != 2 || theta.shape(1) != P)
          throw py::value_error("theta: expected a (K, " + std::to_string(P) + ") array, got " + shape_str(theta));
        spec.K = theta.shape(0);
        if (method == "euler" || method == "gd") spec.method = kFlowEuler;
        else if (method == "heun") spec.method = kFlowHeun;
        else if (method == "rk4") spec.method = kFlowRK4;
        else throw py::value_error("method: expected 'gd', 'euler', 'heun' or 'rk4', got '" + method + "'");
        if (steps < 0) throw py::value_error("steps: expected steps >= 0");
        if (record_every < 1) throw py::value_error("record_every: expected >= 1");
        if (start_step < 0 || start_step + steps > 4294967295LL)
          throw py::value_error("start_step: step indices must lie in [0, 2**32)");
        if (h.ndim() != 1 || (h.shape(0) != 1 && h.shape(0) < steps))
          throw py::value_error("h: expected one step size for every step (length 1) or one per step (length steps), "
                                "got " + shape_str(h));
        spec.steps = steps;
        spec.start_step = start_step;
        spec.record_every = record_every;
        spec.h = h.data();
        spec.h_len = h.shape(0) == 1 ? 1 : steps;
        spec.max_abs = max_abs;
        if (!(max_growth > 1)) throw py::value_error("max_growth: expected a factor > 1, got " + std::to_string(max_growth));
        spec.max_growth = max_growth;
        if (std::isnan(rise_tol)) throw py::value_error("rise_tol: expected a number (negative: off)");
        spec.rise_tol = rise_tol;
        spec.progress = take_progress<int64_t>(kwargs);  // before take_field: not a field argument
        const bool record_theta = take_record_theta(kwargs);
        std::unique_ptr<FieldArgs> owned;
        spec.field = take_field(lay, kwargs, owned).spec;
        return dispatch_loop_theta(theta, [&](auto th) { return run_typed(spec, th, record_theta); });
      },
      py::arg("widths"), py::arg("theta"), py::arg("method"), py::arg("steps"), py::arg("start_step"),
      py::arg("record_every"), py::arg("h"), py::arg("max_abs"), py::arg("max_growth") = 1e6, py::arg("rise_tol") = -1.0,
      "Gradient descent / fixed-step RK loop for K networks in C++ (GIL released except for a Python "
      "target callback). h: (steps,) step sizes, or (1,) for the same step every step. The vector field is field= (a "
      "_core.Field) or its keyword arguments (bind_field.h). Returns a "
      "dict with theta (K,P), risk/grad_norm/energy records (T,K), active (K,), reason (K,) codes of "
      "tableaux::StopReason (why a network was frozen), growth (K,) (risk / starting risk of a network "
      "frozen for a risk > max_growth x its start, else 0), risk_rose (K,) (the risk rose by more than "
      "rise_tol, relative, from a step to the next; rise_tol < 0: not checked), evaluations, "
      "interrupted (Ctrl-C stopped the loop after steps_done steps, with only the first `records` "
      "records written), and thetas (T,K,P) in "
      "theta's dtype if record_theta=True (a frozen network's last parameters) else None.");
}

}  // namespace reluflow
