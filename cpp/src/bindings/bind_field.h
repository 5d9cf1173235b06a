// Parsing of the vector-field arguments shared by the integrator bindings (flow_run, dopri5_run):
// the node source, its own arguments (data, seed/n, rule) and the kernel choice, as keyword arguments
// from python/reluflow/backends/cpu.py (`field_args`); the problem is one `spec` dict (bind_spec.h).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bindings/bind_quad1d.h"
#include "bindings/bind_spec.h"
#include "bindings/bind_util.h"
#include "bindings/progress.h"
#include "cpu/field_cpu.h"
#include "reluflow/targets.h"

namespace reluflow {

// A FieldSpec viewing the arrays (and the callback) it keeps alive.
struct FieldArgs {
  FieldSpec spec;
  f64_array x, w, y;
  py::array_t<uint8_t, py::array::c_style | py::array::forcecast> frozen;
  ProblemArgs problem;
  QuadRule quad;
  py::object target_fn;
};

inline py::object kw(const py::dict& d, const char* name) {
  return d.contains(name) ? py::reinterpret_borrow<py::object>(d[name]) : py::none();
}

// y (n, out) = fn(x (n, d)) with the GIL taken for the call; fn returns an (n, out) or (n,) array.
// The callable is held through a shared_ptr: the loops copy their FieldSpec (and this std::function)
// with the GIL released, and copying a py::object there would touch its Python reference count
// without the GIL; copying the shared_ptr does not. The last owner is the binding's FieldArgs (or the
// _core.Field object), destroyed with the GIL held.
inline TargetFn python_target(py::object fn, int d, int out) {
  auto held = std::make_shared<py::object>(std::move(fn));
  return [held, d, out](const double* x, int64_t n, double* y) {
    py::gil_scoped_acquire gil;
    py::array_t<double> xa({n, static_cast<int64_t>(d)});
    std::copy(x, x + n * d, xa.mutable_data());
    f64_array ya = f64_array::ensure((*held)(xa));
    if (!ya || ya.size() != n * out)
      throw py::value_error("target: the function returned " + (ya ? shape_str(ya) : std::string("a non-array")) +
                            " for " + std::to_string(n) + " points; expected (n, " + std::to_string(out) + ")");
    std::copy(ya.data(), ya.data() + n * out, y);
  };
}

// Keyword arguments: source ("fixed" | "resample" | "exact_shallow1d" | "quad1d"), normalized, sweep, and
//   fixed: x (N, d), w (N,), y (N, out) (the problem is not needed: spec may be left out);
//   resample: seed, n, spec (input density; a native target unless target_fn, a Python callable y = f(x),
//     gives the target values);
//   exact_shallow1d: spec (1-D target and density pieces, lo, hi);
//   quad1d: fixed_breaks, order, spec (as _core.quad1d_risk_and_grad takes them).
// spec: python's ProblemSpec.native(), parsed by bind_spec.h.
inline std::unique_ptr<FieldArgs> parse_field(const Layout& lay, const py::dict& kwargs) {
  auto a = std::make_unique<FieldArgs>();
  FieldSpec& s = a->spec;
  const int d = lay.widths[0], od = lay.widths[lay.num_layers];
  const std::string source = kwargs.contains("source") ? kwargs["source"].cast<std::string>() : "fixed";
  s.normalized = kwargs.contains("normalized") && kwargs["normalized"].cast<bool>();
  if (!kw(kwargs, "frozen").is_none()) {
    a->frozen = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(kwargs["frozen"]);
    if (!a->frozen || a->frozen.ndim() != 1 || a->frozen.shape(0) != lay.num_params)
      throw py::value_error("frozen: expected a (P,) mask with P = " + std::to_string(lay.num_params));
    s.frozen = a->frozen.data();
  }
  s.sweep = kwargs.contains("sweep") && kwargs["sweep"].cast<bool>();
  if (s.sweep && (lay.num_layers != 2 || d != 1))
    throw py::value_error("sweep: the point sweep needs a shallow 1-D network [1, H, out]");
  unsigned needs = 0;
  if (source == "fixed") {
    s.source = kFieldFixed;
    a->x = as_vector(kw(kwargs, "x"), "x");
    a->w = as_vector(kw(kwargs, "w"), "w");
    a->y = as_vector(kw(kwargs, "y"), "y");
    if (a->x.ndim() != 2 || a->x.shape(1) != d) throw py::value_error("x: expected an (N, d) array, got " + shape_str(a->x));
    s.N = a->x.shape(0);
    if (a->w.ndim() != 1 || a->w.shape(0) != s.N) throw py::value_error("w: expected an (N,) array, got " + shape_str(a->w));
    if (a->y.ndim() != 2 || a->y.shape(0) != s.N || a->y.shape(1) != od)
      throw py::value_error("y: expected an (N, out) array, got " + shape_str(a->y));
    s.x = a->x.data();
    s.w = a->w.data();
    s.y = a->y.data();
  } else if (source == "resample") {
    s.source = kFieldResample;
    s.seed = kwargs.contains("seed") ? kwargs["seed"].cast<uint64_t>() : 0;
    s.n = kwargs.contains("n") ? kwargs["n"].cast<int64_t>() : 0;
    if (s.n < 1) throw py::value_error("n: expected n >= 1 samples per step");
    needs = kNeedInput;
    if (!kw(kwargs, "target_fn").is_none()) {
      a->target_fn = kw(kwargs, "target_fn");
      s.target_fn = python_target(a->target_fn, d, od);
    } else {
      needs |= kNeedTarget;
    }
  } else if (source == "exact_shallow1d") {
    if (lay.num_layers != 2 || d != 1)
      throw py::value_error("source: 'exact_shallow1d' needs a shallow 1-D network [1, H, out]");
    s.source = kFieldExactShallow1D;
    needs = kNeedSupport | kNeedTargetPieces | kNeedDensity1D;
  } else if (source == "quad1d") {
    if (d != 1) throw py::value_error("source: 'quad1d' needs a 1-D network (widths[0] == 1)");
    s.source = kFieldQuad1D;
    py::object order = kw(kwargs, "order");
    if (order.is_none()) throw py::value_error("order: required for source 'quad1d'");
    a->quad = parse_quad_rule(kw(kwargs, "fixed_breaks"), order.cast<int>());
    s.quad = a->quad.spec;
    needs = kQuad1DNeeds;
  } else {
    throw py::value_error("source: expected 'fixed', 'resample', 'exact_shallow1d' or 'quad1d', got '" + source +
                          "'");
  }
  if (needs != 0) a->problem = parse_problem_spec(lay, kw(kwargs, "spec"), needs);
  s.problem = a->problem.spec;
  s.problem.lay = lay;  // also for the fixed source, which reads no spec
  return a;
}

// The field of one loop call: `field=` (a `_core.Field`, configured once per run by
// backends/cpu.py) or, for direct calls, the field's keyword arguments, parsed here into `owned`. The
// returned FieldArgs lives as long as the call's kwargs (which hold the Field) or `owned`.
inline const FieldArgs& take_field(const Layout& lay, const py::dict& kwargs, std::unique_ptr<FieldArgs>& owned) {
  if (!kwargs.contains("field")) {
    owned = parse_field(lay, kwargs);
    return *owned;
  }
  if (kwargs.size() != 1)
    throw py::value_error("field: give either field= (a _core.Field) or the field's keyword arguments, not both");
  py::object obj = kwargs["field"];
  if (!py::isinstance<FieldArgs>(obj)) throw py::value_error("field: expected a _core.Field");
  const FieldArgs& f = obj.cast<const FieldArgs&>();
  const Layout& fl = f.spec.problem.lay;
  bool same = fl.num_layers == lay.num_layers;
  for (int k = 0; same && k <= lay.num_layers; ++k) same = fl.widths[k] == lay.widths[k];
  if (!same) throw py::value_error("field: configured for other widths than the loop's");
  return f;
}

// theta of an integrator loop in its own precision: typed(theta as a C-contiguous array_t<float> or
// array_t<double>) by dispatch_float; any other dtype is refused (the loops never cast theta).
template <class Typed>
py::dict dispatch_loop_theta(const py::array& theta, Typed&& typed) {
  return dispatch_float(
      theta, [&] { return typed(py::array_t<float, py::array::c_style | py::array::forcecast>(theta)); },
      [&] { return typed(py::array_t<double, py::array::c_style | py::array::forcecast>(theta)); },
      []() -> py::dict { throw py::type_error("theta: expected a float32 or float64 array"); });
}

// Takes the optional "progress" callable out of kwargs and returns the loop's progress hook
// (progress.h: Ctrl-C stops the loop, which returns what it has; other exceptions propagate).
template <class Done>
std::function<bool(Done)> take_progress(py::dict& kwargs) {
  py::object progress = kw(kwargs, "progress");
  if (kwargs.contains("progress")) PyDict_DelItemString(kwargs.ptr(), "progress");
  return progress_hook<Done>(std::move(progress));
}

// The (T, K, P) parameter records of an integrator loop in theta's dtype, allocated only when asked for
// (data() is then where the loop writes, else null); result() is the array or None.
template <class T>
class ThetaRecords {
 public:
  ThetaRecords(bool on, int64_t n_rec, int64_t K, int64_t P)
      : on_(on), a_(on ? std::vector<int64_t>{n_rec, K, P} : std::vector<int64_t>{0}) {}
  T* data() { return on_ ? a_.mutable_data() : nullptr; }
  py::object result() const { return on_ ? py::object(a_) : py::none(); }

 private:
  bool on_;
  py::array_t<T> a_;
};

// Takes the `record_theta` keyword (default False) out of kwargs: not a field argument.
inline bool take_record_theta(py::dict& kwargs) {
  const bool on = kwargs.contains("record_theta") && kwargs["record_theta"].cast<bool>();
  if (kwargs.contains("record_theta")) PyDict_DelItemString(kwargs.ptr(), "record_theta");
  return on;
}

}  // namespace reluflow
