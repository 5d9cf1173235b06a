// Binding of the adaptive Dormand–Prince loop (dopri5_cpu.cpp): `_core.dopri5_run`.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bindings/bind_field.h"
#include "bindings/bind_util.h"
#include "bindings/bindings.h"
#include "cpu/dopri5_cpu.h"

namespace py = pybind11;

namespace reluflow {

namespace {

template <class T>
py::dict dopri5_typed(const Dopri5Spec& spec, py::array_t<T, py::array::c_style | py::array::forcecast> theta_in,
                      bool record_theta) {
  const int64_t K = spec.K, P = spec.field.problem.lay.num_params, nT = spec.T;
  py::array_t<T> theta({K, P});
  std::copy(theta_in.data(), theta_in.data() + K * P, theta.mutable_data());
  py::array_t<double> rec_risk({nT, K}), rec_gnorm({nT, K}), rec_energy({nT, K});
  py::array_t<int32_t> status(K);
  py::array_t<int64_t> accepted(K), rejected(K);
  py::array_t<uint8_t> reason(K);
  py::array_t<double> growth(K), t_reached(K);
  ThetaRecords<T> thetas(record_theta, nT, K, P);
  Dopri5Out out;
  out.rec_risk = rec_risk.mutable_data();
  out.rec_gnorm = rec_gnorm.mutable_data();
  out.rec_energy = rec_energy.mutable_data();
  out.status = status.mutable_data();
  out.accepted = accepted.mutable_data();
  out.rejected = rejected.mutable_data();
  out.reason = reason.mutable_data();
  out.growth = growth.mutable_data();
  out.t = t_reached.mutable_data();
  {
    // the field takes the GIL back only for a Python target callback
    py::gil_scoped_release release;
    dopri5_run_cpu<T>(spec, theta.mutable_data(), out, thetas.data());
  }
  py::dict res;
  res["theta"] = theta;
  res["risk"] = rec_risk;
  res["grad_norm"] = rec_gnorm;
  res["energy"] = rec_energy;
  res["status"] = status;
  res["accepted"] = accepted;
  res["rejected"] = rejected;
  res["reason"] = reason;
  res["growth"] = growth;
  res["thetas"] = thetas.result();
  res["evaluations"] = out.evaluations;
  res["t"] = t_reached;
  res["interrupted"] = out.interrupted;
  return res;
}

}  // namespace

void bind_dopri5(py::module_& m) {
  py::tuple names(kDopri5NumStatus);
  for (int i = 0; i < kDopri5NumStatus; ++i) names[i] = py::str(kDopri5StatusNames[i]);
  m.attr("dopri5_status_names") = names;

  m.def(
      "dopri5_run",
      [](std::vector<int64_t> widths, py::array theta, double t_end, double h0, double rtol, double atol,
         f64_array grid, double max_abs, int64_t max_steps, int64_t max_rejections, double min_step,
         double max_growth, py::kwargs kwargs) {
        const Layout lay = make_layout(widths);
        const int64_t P = lay.num_params;
        if (theta.ndim() != 2 || theta.shape(1) != P)
          throw py::value_error("theta: expected a (K, " + std::to_string(P) + ") array, got " + shape_str(theta));
        if (!(std::isfinite(t_end) && t_end > 0))
          throw py::value_error("t_end: expected a finite positive time, got " + std::to_string(t_end));
        if (!std::isfinite(h0)) throw py::value_error("h0: expected a finite initial step (<= 0: automatic)");
        if (!(std::isfinite(rtol) && rtol > 0)) throw py::value_error("rtol: expected a finite rtol > 0");
        if (!(std::isfinite(atol) && atol >= 0)) throw py::value_error("atol: expected a finite atol >= 0");
        if (!(max_abs > 0)) throw py::value_error("max_abs: expected max_abs > 0");
        if (!(max_growth > 1)) throw py::value_error("max_growth: expected a factor > 1, got " + std::to_string(max_growth));
        if (max_steps < 1) throw py::value_error("max_steps: expected max_steps >= 1");
        if (max_rejections < 1) throw py::value_error("max_rejections: expected max_rejections >= 1");
        if (!(std::isfinite(min_step) && min_step >= 0))
          throw py::value_error("min_step: expected a finite min_step >= 0");
        if (grid.ndim() != 1 || grid.shape(0) < 1)
          throw py::value_error("grid: expected a non-empty 1-D array of record times, got " + shape_str(grid));
        const double* g = grid.data();
        // times past t_end are allowed (np.arange may round one up); a network stops at t_end, so it
        // records them only when its last step lands there, as in the Python driver
        for (py::ssize_t i = 0; i < grid.shape(0); ++i) {
          if (!(std::isfinite(g[i]) && g[i] >= 0) || (i > 0 && !(g[i] > g[i - 1])))
            throw py::value_error("grid: expected strictly increasing finite record times >= 0");
        }
        // in the order of Dopri5Spec's fields (dopri5_cpu.h); the field and the progress hook follow
        Dopri5Spec spec{FieldSpec{}, theta.shape(0), t_end,      h0,         rtol,           atol,     g,
                        grid.shape(0), max_abs, max_growth, max_steps, max_rejections, min_step, {}};
        spec.progress = take_progress<double>(kwargs);  // before take_field: not a field argument
        const bool record_theta = take_record_theta(kwargs);
        // the arrays (and the Python callback) the FieldSpec points into, for the whole run: the Field
        // object of field= (held by kwargs) or the keyword arguments parsed into `owned`
        std::unique_ptr<FieldArgs> owned;
        spec.field = take_field(lay, kwargs, owned).spec;
        return dispatch_loop_theta(theta, [&](auto th) { return dopri5_typed(spec, th, record_theta); });
      },
      py::arg("widths"), py::arg("theta"), py::arg("t_end"), py::arg("h0"), py::arg("rtol"), py::arg("atol"),
      py::arg("grid"), py::arg("max_abs"), py::arg("max_steps"), py::arg("max_rejections"), py::arg("min_step"),
      py::arg("max_growth") = 1e6,
      "Adaptive Dormand–Prince 5(4) gradient flow of K networks in C++, with time, step size and status "
      "per network (GIL released except for a Python target callback). h0 <= 0 picks the initial step. "
      "The vector field is field= (a _core.Field) or its keyword arguments (bind_field.h; normalized=True "
      "for the normalized flow). Returns a dict with theta (K,P), risk/grad_norm/energy (T,K) on the grid (NaN "
      "where a network never got there), status (K,) codes into dopri5_status_names, accepted and "
      "rejected (K,), reason and growth (K,) as flow_run's, t (K,) the time each network reached, "
      "interrupted (Ctrl-C stopped the loop: the running networks have status 'interrupted'), evaluations, and thetas: with record_theta=True the (T,K,P) parameters at the grid "
      "times in theta's dtype (NaN where a network never got there), else None.");
}

}  // namespace reluflow
