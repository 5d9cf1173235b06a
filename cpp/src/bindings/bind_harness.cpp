// Bindings of the test-only host harnesses of the CUDA kernels: the dense grid (cpu/grid_harness.h,
// _core._harness_risk_grad), the GD update (cpu/gd_harness.h, _core._harness_gd_step) and the Heun /
// RK4 stage and update (_core._harness_rk_stage, _harness_rk_update). Argument
// checks only; the grids run in grid_harness.cpp and gd_harness.cpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/bind_spec.h"
#include "bindings/bind_util.h"
#include "bindings/bindings.h"
#include "cpu/gd_harness.h"
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

using u8_array = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

// A float array of a harness: float32 kept, any other real dtype as float64 (f32 says which).
struct FloatArray {
  py::array a;
  bool f32 = false;
};

FloatArray keep_float(const py::array& in, const char* name) {
  FloatArray r;
  dispatch_float(
      in, [&] { r.a = f32_array::ensure(in); r.f32 = true; }, [&] { r.a = take_f64(in, name); },
      [&] { r.a = take_f64(in, name); });
  return r;
}

// theta (K, P) of a risk / gradient harness (keep_float).
struct HarnessTheta : FloatArray {
  int64_t K = 0;
};

HarnessTheta harness_theta(const py::array& theta_in, const Layout& lay) {
  HarnessTheta th;
  static_cast<FloatArray&>(th) = keep_float(theta_in, "theta");
  if (th.a.ndim() != 2 || th.a.shape(1) != lay.num_params)
    throw std::invalid_argument("theta: expected shape (K, P) with P = " + std::to_string(lay.num_params) + ", got " +
                                shape_str(th.a));
  th.K = th.a.shape(0);
  return th;
}

// The outputs of a risk / gradient harness: risk (K,) and, with want_grad, grad (K, P) float64 (made
// with the GIL held; filled without it).
struct RiskGradOut {
  py::array_t<double> risk;
  py::object grad = py::none();
  double* gptr = nullptr;
  RiskGradOut(int64_t K, int64_t P, bool want_grad) : risk(K) {
    if (!want_grad) return;
    py::array_t<double> g({K, P});
    gptr = g.mutable_data();
    grad = g;
  }
  py::tuple result() const { return py::make_tuple(risk, grad); }
};

// Copies of a harness's per-network state dict (K,) arrays: active, reason (uint8), growth, risk0,
// last_risk, last_gn, energy (float64), stop_iter (int64) and, when present, rose (uint8).
struct HarnessState {
  u8_array active, reason, rose;
  f64_array growth, risk0, last_risk, last_gn, energy;
  i64_array stop;
  bool has_rose = false;

  HarnessState(const py::dict& state, int64_t K) {
    auto copy = [&](const char* key) {
      if (!state.contains(key)) throw std::invalid_argument(std::string("state: missing '") + key + "'");
      return py::array(state[key]).attr("copy")();
    };
    auto f64 = [&](const char* key) {
      f64_array a = take_f64(copy(key), key);
      check_shape(a, key, {K}, "(K,)");
      return a;
    };
    auto u8 = [&](const char* key) {
      u8_array a = u8_array::ensure(copy(key));
      if (!a) throw std::invalid_argument(std::string(key) + ": expected an array of flags");
      check_shape(a, key, {K}, "(K,)");
      return a;
    };
    stop = i64_array::ensure(copy("stop_iter"));
    if (!stop) throw std::invalid_argument("stop_iter: expected an array of integers");
    check_shape(stop, "stop_iter", {K}, "(K,)");
    active = u8("active");
    reason = u8("reason");
    growth = f64("growth");
    risk0 = f64("risk0");
    last_risk = f64("last_risk");
    last_gn = f64("last_gn");
    energy = f64("energy");
    has_rose = state.contains("rose");
    if (has_rose) rose = u8("rose");
  }

  gd::State view() {
    return gd::State{active.mutable_data(),    reason.mutable_data(),  growth.mutable_data(),
                     risk0.mutable_data(),     last_risk.mutable_data(), last_gn.mutable_data(),
                     energy.mutable_data(),    stop.mutable_data(),    has_rose ? rose.mutable_data() : nullptr};
  }

  void into(py::dict& out) const {
    out["active"] = active;
    out["reason"] = reason;
    out["growth"] = growth;
    out["risk0"] = risk0;
    out["last_risk"] = last_risk;
    out["last_gn"] = last_gn;
    out["energy"] = energy;
    out["stop_iter"] = stop;
    if (has_rose) out["rose"] = rose;
  }
};

// A (P,) frozen mask or none (kept alive by `keep`).
const uint8_t* frozen_mask(const py::object& frozen_in, int64_t P, u8_array& keep) {
  if (frozen_in.is_none()) return nullptr;
  keep = u8_array::ensure(frozen_in);
  if (!keep) throw std::invalid_argument("frozen: expected a (P,) mask");
  check_shape(keep, "frozen", {P}, "(P,)");
  return keep.data();
}

// A copy of theta in its dtype T.
template <class T>
py::array_t<T, py::array::c_style | py::array::forcecast> theta_copy(const py::array& theta_in) {
  using arr_t = py::array_t<T, py::array::c_style | py::array::forcecast>;
  return arr_t(py::array(arr_t::ensure(theta_in)).attr("copy")());
}

// The GD step harness in theta's dtype T: copies of every array in, the new ones out (a dict).
template <class T>
py::dict gd_step_typed(const py::array& theta_in, const f64_array& risk, const f64_array& grad, const py::dict& state,
                       const py::object& frozen_in, int64_t i, bool update, double h, double max_abs, double max_growth,
                       double rise_tol, bool record) {
  const int64_t K = theta_in.shape(0), P = theta_in.shape(1);
  auto theta = theta_copy<T>(theta_in);
  check_shape(risk, "risk", {K}, "(K,)");
  check_shape(grad, "grad", {K, P}, "(K, P)");
  HarnessState hs(state, K);
  if (rise_tol >= 0 && !hs.has_rose) throw std::invalid_argument("state: missing 'rose' (needed with rise_tol >= 0)");
  u8_array frozen;
  gd::StepArgs<T> a;
  a.frozen = frozen_mask(frozen_in, P, frozen);
  a.K = K;
  a.P = P;
  a.i = i;
  a.update = update;
  a.h = h;
  a.max_abs = max_abs;
  a.max_growth = max_growth;
  a.rise_tol = rise_tol;
  a.theta = theta.mutable_data();
  a.risk = risk.data();
  a.grad = grad.data();
  a.st = hs.view();
  py::array_t<double> rr(K), rg(K), re(K);
  py::array_t<T> rt({K, P});
  if (record) {
    a.rec_risk = rr.mutable_data();
    a.rec_gn = rg.mutable_data();
    a.rec_energy = re.mutable_data();
    a.rec_theta = rt.mutable_data();
  }
  gd_step_host<T>(a);
  py::dict out;
  out["theta"] = theta;
  hs.into(out);
  out["rec_risk"] = record ? py::object(rr) : py::none();
  out["rec_gn"] = record ? py::object(rg) : py::none();
  out["rec_energy"] = record ? py::object(re) : py::none();
  out["rec_theta"] = record ? py::object(rt) : py::none();
  return out;
}

int parse_method(const std::string& m) {
  if (m == "euler") return tableaux::kEuler;
  if (m == "heun") return tableaux::kHeun;
  if (m == "rk4") return tableaux::kRK4;
  throw std::invalid_argument("method: expected 'euler', 'heun' or 'rk4', got '" + m + "'");
}

// The stage values ks: a sequence of at least `need` (K, P) float64 arrays (kept alive by `keep`).
template <class T>
void stage_values(rk::RkArgs<T>& a, const py::sequence& ks, size_t need, std::vector<f64_array>& keep) {
  if (py::len(ks) < need || py::len(ks) > static_cast<size_t>(rk::kMaxStages))
    throw std::invalid_argument("ks: expected " + std::to_string(need) + " to " + std::to_string(rk::kMaxStages) +
                                " (K, P) stage values, got " + std::to_string(py::len(ks)));
  for (size_t s = 0; s < py::len(ks); ++s) {
    keep.push_back(take_f64(py::array(ks[s]), "ks"));
    check_shape(keep.back(), "ks", {a.K, a.P}, "(K, P) per stage");
    a.k[s] = keep.back().data();
  }
}

template <class T>
py::array rk_stage_typed(const py::array& theta_in, const py::sequence& ks, int stage, double h, int method,
                         const py::object& frozen_in) {
  const tableaux::FixedTableau tab = tableaux::fixed_tableau(method);
  if (stage < 1 || stage >= tab.stages)
    throw std::invalid_argument("stage: expected 1.." + std::to_string(tab.stages - 1) + " for this method, got " +
                                std::to_string(stage));
  auto theta = theta_copy<T>(theta_in);
  rk::RkArgs<T> a;
  a.K = theta_in.shape(0);
  a.P = theta_in.shape(1);
  a.method = method;
  a.h = h;
  a.theta = theta.mutable_data();
  u8_array frozen;
  a.frozen = frozen_mask(frozen_in, a.P, frozen);
  std::vector<f64_array> keep;
  stage_values(a, ks, static_cast<size_t>(stage), keep);
  py::array_t<T> out({a.K, a.P});
  a.stage_theta = out.mutable_data();
  rk_stage_host<T>(a, stage);
  return out;
}

template <class T>
py::dict rk_update_typed(const py::array& theta_in, const py::sequence& ks, const py::dict& state, int64_t i, double h,
                         int method, double max_abs, const py::object& frozen_in) {
  auto theta = theta_copy<T>(theta_in);
  rk::RkArgs<T> a;
  a.K = theta_in.shape(0);
  a.P = theta_in.shape(1);
  a.method = method;
  a.i = i;
  a.h = h;
  a.max_abs = max_abs;
  a.theta = theta.mutable_data();
  u8_array frozen;
  a.frozen = frozen_mask(frozen_in, a.P, frozen);
  std::vector<f64_array> keep;
  stage_values(a, ks, static_cast<size_t>(tableaux::fixed_tableau(method).stages), keep);
  HarnessState hs(state, a.K);
  a.st = hs.view();
  rk_update_host<T>(a);
  py::dict out;
  out["theta"] = theta;
  hs.into(out);
  return out;
}


// The normalized update harness in theta's dtype T (copies in, a dict out; see nm::UpdateArgs).
template <class T>
py::dict nm_update_typed(const Layout& lay, const py::array& theta_in, const py::sequence& ks, const py::dict& state,
                         int64_t i, double h, int method, double max_abs, const py::object& frozen_in) {
  auto theta = theta_copy<T>(theta_in);
  const int64_t K = theta_in.shape(0), P = theta_in.shape(1);
  if (P != lay.num_params) throw std::invalid_argument("theta: expected shape (K, P) with P of the widths");
  rk::RkArgs<T> view;  // for stage_values' checks
  view.K = K;
  view.P = P;
  std::vector<f64_array> keep;
  stage_values(view, ks, static_cast<size_t>(tableaux::fixed_tableau(method).stages), keep);
  nm::UpdateArgs<T> a;
  a.lay = lay;
  a.K = K;
  a.H = hidden_neurons(lay);
  a.method = method;
  a.i = i;
  a.h = h;
  a.max_abs = max_abs;
  a.theta = theta.mutable_data();
  for (int s = 0; s < rk::kMaxStages; ++s) a.k[s] = view.k[s];
  u8_array frozen;
  a.frozen = frozen_mask(frozen_in, P, frozen);
  std::vector<T> scratch(static_cast<size_t>(K * P));
  a.scratch = scratch.data();
  HarnessState hs(state, K);
  a.st = hs.view();
  nm_update_host<T>(a);
  py::dict out;
  out["theta"] = theta;
  hs.into(out);
  return out;
}

template <class F32, class F64>
auto by_dtype(const py::array& theta_in, F32 f32, F64 f64) {
  if (theta_in.ndim() != 2) throw std::invalid_argument("theta: expected shape (K, P), got " + shape_str(theta_in));
  return dispatch_float(theta_in, f32, f64, f64);
}


// ---- the dopri5 harness: a workspace dict of arrays updated in place (the loop's device memory) ----

// ws[key] as a C-contiguous writeable array of exactly U (no copy: the harness writes into it).
template <class U>
U* ws_array(const py::dict& ws, const char* key, std::vector<int64_t> shape, const char* what) {
  if (!ws.contains(key)) throw std::invalid_argument(std::string("ws: missing '") + key + "'");
  py::array a = py::reinterpret_borrow<py::array>(ws[key]);
  if (!py::isinstance<py::array>(ws[key]) || !a.dtype().is(py::dtype::of<U>()) ||
      !(a.flags() & py::array::c_style) || !a.writeable())
    throw std::invalid_argument(std::string(key) + ": expected a writeable C-contiguous array of the loop's dtype");
  check_shape(a, key, shape, what);
  return static_cast<U*>(a.mutable_data());
}

template <class T>
void dp_phase_typed(const std::string& phase, const py::dict& ws, int64_t it, int stage) {
  py::array th = py::reinterpret_borrow<py::array>(ws["theta0"]);
  if (th.ndim() != 2) throw std::invalid_argument("theta0: expected shape (K, P), got " + shape_str(th));
  const int64_t K = th.shape(0), P = th.shape(1);
  py::array gr = py::reinterpret_borrow<py::array>(ws["grid"]);
  const int64_t nT = gr.ndim() == 1 ? gr.shape(0) : -1;
  dp::Args<T> a;
  a.K = K;
  a.P = P;
  a.nT = nT;
  a.grid = ws_array<double>(ws, "grid", {nT}, "(T,)");
  auto f = [&](const char* key) { return ws[key].cast<double>(); };
  a.t_end = f("t_end");
  a.t_tol = f("t_tol");
  a.h0 = f("h0");
  a.rtol = f("rtol");
  a.atol = f("atol");
  a.max_abs = f("max_abs");
  a.max_growth = f("max_growth");
  a.min_step = f("min_step");
  a.max_steps = ws["max_steps"].cast<int64_t>();
  a.max_rejections = ws["max_rejections"].cast<int64_t>();
  a.frozen = ws.contains("frozen") && !ws["frozen"].is_none() ? ws_array<uint8_t>(ws, "frozen", {P}, "(P,)") : nullptr;
  a.theta0 = ws_array<T>(ws, "theta0", {K, P}, "(K, P)");
  a.y = ws_array<double>(ws, "y", {K, P}, "(K, P)");
  double* k = ws_array<double>(ws, "k", {dp::kStages, K, P}, "(7, K, P)");
  for (int j = 0; j < dp::kStages; ++j) a.k[j] = k + size_t(j) * size_t(K * P);
  a.risk = ws_array<double>(ws, "risk", {K}, "(K,)");
  a.stage = ws_array<T>(ws, "stage", {K, P}, "(K, P)");
  a.st.t = ws_array<double>(ws, "t", {K}, "(K,)");
  a.st.h = ws_array<double>(ws, "h", {K}, "(K,)");
  a.st.energy = ws_array<double>(ws, "energy", {K}, "(K,)");
  a.st.risk0 = ws_array<double>(ws, "risk0", {K}, "(K,)");
  a.st.growth = ws_array<double>(ws, "growth", {K}, "(K,)");
  a.st.hh = ws_array<double>(ws, "hh", {K}, "(K,)");
  a.st.target = ws_array<double>(ws, "target", {K}, "(K,)");
  a.st.nxt = ws_array<int64_t>(ws, "nxt", {K}, "(K,)");
  a.st.streak = ws_array<int64_t>(ws, "streak", {K}, "(K,)");
  a.st.accepted = ws_array<int64_t>(ws, "accepted", {K}, "(K,)");
  a.st.rejected = ws_array<int64_t>(ws, "rejected", {K}, "(K,)");
  a.st.status = ws_array<int32_t>(ws, "status", {K}, "(K,)");
  a.st.done = ws_array<uint8_t>(ws, "done", {K}, "(K,)");
  a.st.reason = ws_array<uint8_t>(ws, "reason", {K}, "(K,)");
  a.rec_risk = ws_array<double>(ws, "rec_risk", {nT, K}, "(T, K)");
  a.rec_gn = ws_array<double>(ws, "rec_gn", {nT, K}, "(T, K)");
  a.rec_energy = ws_array<double>(ws, "rec_energy", {nT, K}, "(T, K)");
  a.rec_theta = ws.contains("rec_theta") && !ws["rec_theta"].is_none()
                    ? ws_array<T>(ws, "rec_theta", {nT, K, P}, "(T, K, P)") : nullptr;
  a.normalized = ws.contains("widths") && !ws["widths"].is_none();
  if (a.normalized) {  // the normalized loop's arrays
    a.lay = make_layout(ws["widths"].cast<std::vector<int64_t>>());
    if (a.lay.num_params != P)
      throw std::invalid_argument("widths: P = " + std::to_string(a.lay.num_params) + " differs from theta0's " +
                                  std::to_string(P));
    a.H = hidden_neurons(a.lay);
    a.ynew = ws_array<double>(ws, "ynew", {K, P}, "(K, P)");
    a.st.pending = ws_array<uint8_t>(ws, "pending", {K}, "(K,)");
    a.st.bad_why = ws_array<uint8_t>(ws, "bad_why", {K}, "(K,)");
    a.st.err = ws_array<double>(ws, "err", {K}, "(K,)");
    a.st.any_accepted = ws_array<int32_t>(ws, "any_accepted", {1}, "(1,)");
    a.st.extra_evals = ws_array<int64_t>(ws, "extra_evals", {1}, "(1,)");
  }
  if (phase == "init") {
    dp_init_host(a);
  } else if (phase == "begin") {
    dp_begin_host(a, it);
  } else if (phase == "stage") {
    if (stage < 1 || stage >= dp::kStages) throw std::invalid_argument("stage: expected 1..6");
    dp_stage_host(a, stage);
  } else if (phase == "finish") {
    dp_finish_host(a);
  } else if (phase == "conclude") {
    if (!a.normalized) throw std::invalid_argument("phase: 'conclude' is the normalized loop's (ws['widths'] set)");
    dp_conclude_host(a);
  } else {
    throw std::invalid_argument("phase: expected 'init', 'begin', 'stage', 'finish' or 'conclude', got '" + phase +
                                "'");
  }
}

}  // namespace

void bind_harness(py::module_& m) {
  m.def(
      "_harness_risk_grad",
      [](const std::vector<int64_t>& widths, const py::array& theta_in, const py::array& x_in, const py::array& w_in,
         const py::object& y_in, bool want_grad, const std::string& path, const py::object& spec) {
        const Layout lay = make_layout(widths);
        const GridPath gp = parse_path(path);
        const HarnessTheta th = harness_theta(theta_in, lay);
        const py::array& theta = th.a;
        const bool f32 = th.f32;
        const int64_t K = th.K;
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
        RiskGradOut res(K, lay.num_params, want_grad);
        {
          py::gil_scoped_release release;
          risk_and_grad_grid_host(lay, K, N, f32, theta.data(), x.data(), w.data(), y_in.is_none() ? nullptr : y.data(),
                                  prob.spec, gp, res.risk.mutable_data(), res.gptr);
        }
        return res.result();
      },
      py::arg("widths"), py::arg("theta"), py::arg("x"), py::arg("w"), py::arg("y"), py::arg("want_grad") = true,
      py::arg("path") = "auto", py::kw_only(), py::arg("spec") = py::none(),
      "TEST ONLY: the CUDA dense grid (cuda/src/risk_grad.cu) run sequentially on the host with the same\n"
      "per-thread functions (reluflow/risk_grad_grid.h). theta (K, P) float32/float64, x (N, d), w (N,),\n"
      "y (N, out) float64 (or None: the target of spec=ProblemSpec.native() evaluated per node: a shallow\n"
      "teacher by net.h, an affine or piecewise-polynomial target by targets.h) -> risk (K,), grad (K, P) float64 (None unless want_grad). path: 'auto', 'shallow'\n"
      "(two passes, [d, H, out] with d <= 8, out <= 3) or 'deep' (any widths).");
  m.def(
      "_harness_risk_grad_ragged",
      [](const std::vector<int64_t>& widths, const py::array& theta_in, const py::array& x_in, const py::array& w_in,
         const py::array& y_in, const py::object& offset_in, const py::object& zero_in, bool want_grad) {
        const Layout lay = make_layout(widths);
        const HarnessTheta th = harness_theta(theta_in, lay);
        const py::array& theta = th.a;
        const bool f32 = th.f32;
        const int64_t K = th.K;
        const f64_array x = take_f64(x_in, "x"), w = take_f64(w_in, "w"), y = take_f64(y_in, "y");
        const int64_t N = x.ndim() >= 1 ? x.shape(0) : -1;
        const int d = lay.widths[0], out = lay.widths[lay.num_layers];
        check_shape(x, "x", {N, d}, "(N, d)");
        check_shape(w, "w", {N}, "(N,) with N the rows of x");
        check_shape(y, "y", {N, out}, "(N, out)");
        const i64_array offset = ragged_offsets(offset_in, K, N);
        const int64_t hidden = hidden_neurons(lay);  // l_1 + ... + l_{L-1}
        u8_array zero;
        if (!zero_in.is_none()) {
          zero = u8_array::ensure(zero_in);
          if (!zero) throw std::invalid_argument("zero: expected an array of flags");
          check_shape(zero, "zero", {N, hidden}, "(N, hidden)");
        }
        RiskGradOut res(K, lay.num_params, want_grad);
        {
          py::gil_scoped_release release;
          risk_and_grad_ragged_host(lay, K, N, f32, theta.data(), x.data(), w.data(), y.data(), offset.data(),
                                    zero_in.is_none() ? nullptr : zero.data(), res.risk.mutable_data(), res.gptr);
        }
        return res.result();
      },
      py::arg("widths"), py::arg("theta"), py::arg("x"), py::arg("w"), py::arg("y"), py::arg("offset"),
      py::arg("zero") = py::none(), py::arg("want_grad") = true,
      "TEST ONLY: the CUDA ragged deep grid (cuda/src/risk_grad.cu risk_and_grad_ragged) run sequentially on\n"
      "the host with the same per-thread functions (reluflow/risk_grad_grid.h). Network k of theta (K, P)\n"
      "float32/float64 over rows offset[k]:offset[k + 1] of x (N, d), w (N,), y (N, out) and of zero\n"
      "(N, hidden) uint8 flags or None (the output of _core.quad1d_nodes_batch) -> risk (K,), grad (K, P)\n"
      "float64 (None unless want_grad); a network without nodes gets 0.");
  m.def(
      "_harness_gd_step",
      [](const py::array& theta_in, const py::array& risk_in, const py::array& grad_in, const py::dict& state,
         int64_t i, bool update, double h, double max_abs, double max_growth, const py::object& frozen, bool record,
         double rise_tol) {
        if (theta_in.ndim() != 2) throw std::invalid_argument("theta: expected shape (K, P), got " + shape_str(theta_in));
        const f64_array risk = take_f64(risk_in, "risk"), grad = take_f64(grad_in, "grad");
        return by_dtype(
            theta_in,
            [&] { return gd_step_typed<float>(theta_in, risk, grad, state, frozen, i, update, h, max_abs, max_growth, rise_tol, record); },
            [&] { return gd_step_typed<double>(theta_in, risk, grad, state, frozen, i, update, h, max_abs, max_growth, rise_tol, record); });
      },
      py::arg("theta"), py::arg("risk"), py::arg("grad"), py::kw_only(), py::arg("state"), py::arg("i"),
      py::arg("update"), py::arg("h"), py::arg("max_abs"), py::arg("max_growth"), py::arg("frozen") = py::none(),
      py::arg("record") = false, py::arg("rise_tol") = -1.0,
      "TEST ONLY: one step of the GD update kernel (cuda/src/gd_loop.cu) run sequentially on the host with\n"
      "the same per-thread functions (reluflow/gd_step.h). theta (K, P) float32/float64 (copied), risk (K,),\n"
      "grad (K, P) float64 at theta_i; state: a dict of (K,) arrays active, reason (uint8), growth, risk0,\n"
      "last_risk, last_gn, energy (float64), stop_iter (int64) (copied). i: the local iteration, update:\n"
      "i < steps, h: the step size. Returns a dict of the new theta and state and, with record=True, the\n"
      "record slot rec_risk, rec_gn, rec_energy (K,) and rec_theta (K, P) (else None). rise_tol >= 0 (the\n"
      "flows): state['rose'] (uint8, required then) flags a risk above the last one x (1 + rise_tol).");
  m.def(
      "_harness_rk_stage",
      [](const py::array& theta_in, const py::sequence& ks, int stage, double h, const std::string& method,
         const py::object& frozen) {
        const int meth = parse_method(method);
        return by_dtype(
            theta_in, [&] { return rk_stage_typed<float>(theta_in, ks, stage, h, meth, frozen); },
            [&] { return rk_stage_typed<double>(theta_in, ks, stage, h, meth, frozen); });
      },
      py::arg("theta"), py::arg("ks"), py::kw_only(), py::arg("stage"), py::arg("h"), py::arg("method"),
      py::arg("frozen") = py::none(),
      "TEST ONLY: the stage kernel of a Heun / RK4 step (cuda/src/gd_loop.cu) run on the host with the same\n"
      "per-entry function (reluflow/rk_step.h): theta (K, P) float32/float64, ks: the stage values k_0..\n"
      "(K, P) float64 (at least `stage` of them), stage in 1..stages-1 -> the stage point\n"
      "T(theta - h a_stage k_{stage-1}) (K, P) in theta's dtype (k 0 where frozen).");
  m.def(
      "_harness_rk_update",
      [](const py::array& theta_in, const py::sequence& ks, const py::dict& state, int64_t i, double h,
         const std::string& method, double max_abs, const py::object& frozen) {
        const int meth = parse_method(method);
        return by_dtype(
            theta_in, [&] { return rk_update_typed<float>(theta_in, ks, state, i, h, meth, max_abs, frozen); },
            [&] { return rk_update_typed<double>(theta_in, ks, state, i, h, meth, max_abs, frozen); });
      },
      py::arg("theta"), py::arg("ks"), py::kw_only(), py::arg("state"), py::arg("i"), py::arg("h"), py::arg("method"),
      py::arg("max_abs"), py::arg("frozen") = py::none(),
      "TEST ONLY: the update kernel of a Heun / RK4 step (cuda/src/gd_loop.cu) run on the host with the same\n"
      "per-thread functions (reluflow/rk_step.h): theta (K, P) float32/float64 (copied), ks: the `stages`\n"
      "stage values (K, P) float64, state: as _harness_gd_step's (copied; the networks still active are\n"
      "updated). Returns a dict of the new theta and state.");
  m.def(
      "_harness_project",
      [](const std::vector<int64_t>& widths, const py::array& theta_in, const py::array& grad_in) {
        const Layout lay = make_layout(widths);
        if (theta_in.ndim() != 2 || theta_in.shape(1) != lay.num_params)
          throw std::invalid_argument("theta: expected shape (K, P) with P of the widths, got " + shape_str(theta_in));
        const int64_t K = theta_in.shape(0);
        f64_array grad = take_f64(py::array(grad_in).attr("copy")(), "grad");
        check_shape(grad, "grad", {K, lay.num_params}, "(K, P)");
        by_dtype(
            theta_in,
            [&] { nm_project_host<float>(lay, K, theta_copy<float>(theta_in).data(), grad.mutable_data()); return 0; },
            [&] { nm_project_host<double>(lay, K, theta_copy<double>(theta_in).data(), grad.mutable_data()); return 0; });
        return grad;
      },
      py::arg("widths"), py::arg("theta"), py::arg("grad"),
      "TEST ONLY: the tangent projection kernel of the normalized device loop (cuda/src/gd_loop.cu) on the\n"
      "host (reluflow/normalized_step.h): grad (K, P) float64 (copied) projected at theta (K, P)\n"
      "float32/float64, one entry per (network, hidden neuron).");
  m.def(
      "_harness_nm_update",
      [](const std::vector<int64_t>& widths, const py::array& theta_in, const py::sequence& ks, const py::dict& state,
         int64_t i, double h, const std::string& method, double max_abs, const py::object& frozen) {
        const Layout lay = make_layout(widths);
        const int meth = parse_method(method);
        return by_dtype(
            theta_in, [&] { return nm_update_typed<float>(lay, theta_in, ks, state, i, h, meth, max_abs, frozen); },
            [&] { return nm_update_typed<double>(lay, theta_in, ks, state, i, h, meth, max_abs, frozen); });
      },
      py::arg("widths"), py::arg("theta"), py::arg("ks"), py::kw_only(), py::arg("state"), py::arg("i"), py::arg("h"),
      py::arg("method"), py::arg("max_abs"), py::arg("frozen") = py::none(),
      "TEST ONLY: the retracting update kernel of the normalized device loop (cuda/src/gd_loop.cu) on the\n"
      "host (reluflow/normalized_step.h): method 'euler' (gradient descent's update in theta's dtype),\n"
      "'heun' or 'rk4'; theta (K, P) float32/float64 (copied), ks: the stage values (K, P) float64\n"
      "(projected), state: as _harness_gd_step's (copied; the networks still active are updated).\n"
      "Returns a dict of the new theta and state.");
  m.def(
      "_harness_gd_block_end",
      [](int64_t i0, int64_t want, int64_t steps, int64_t record_every, int64_t slots) {
        if (record_every < 1 || slots < 2 || i0 < 0 || i0 > steps)
          throw std::invalid_argument("record_every >= 1, slots >= 2, 0 <= i0 <= steps expected");
        return py::make_tuple(gd::block_end(i0, want, steps, record_every, slots),
                              gd::records_in(i0, gd::block_end(i0, want, steps, record_every, slots), steps,
                                             record_every));
      },
      py::arg("i0"), py::arg("want"), py::arg("steps"), py::arg("record_every"), py::arg("slots"),
      "TEST ONLY: the CUDA GD loop's block planning (reluflow/gd_step.h): (end of the block of iterations\n"
      "starting at i0, records in it).");
  m.def(
      "_harness_rows",
      [](const std::string& mode, const py::array& evaluated_in, const py::array& src_in, const py::object& out_in) {
        const i64_array ev = i64_array::ensure(evaluated_in);
        if (!ev || ev.ndim() != 1) throw std::invalid_argument("evaluated: expected (n,) network indices");
        const int64_t n = ev.shape(0);
        const int64_t* idx = ev.data();
        const auto check_indices = [&](int64_t K) {
          for (int64_t i = 0; i < n; ++i)
            if (idx[i] < 0 || idx[i] >= K) throw std::invalid_argument("evaluated: expected network indices in [0, K)");
        };
        if (mode == "gather") {  // rows (K, P) -> compact (n, P), in rows' dtype
          const FloatArray src = keep_float(src_in, "rows");
          const py::array& rows = src.a;
          if (rows.ndim() != 2) throw std::invalid_argument("rows: expected shape (K, P), got " + shape_str(rows));
          const int64_t K = rows.shape(0), P = rows.shape(1);
          check_indices(K);
          py::array compact(rows.dtype(), std::vector<int64_t>{n, P});
          if (src.f32)
            rows_gather_host(idx, n, P, static_cast<const float*>(rows.data()), static_cast<float*>(compact.mutable_data()));
          else
            rows_gather_host(idx, n, P, static_cast<const double*>(rows.data()), static_cast<double*>(compact.mutable_data()));
          return py::object(compact);
        }
        if (mode != "scatter") throw std::invalid_argument("mode: expected 'gather' or 'scatter', got '" + mode + "'");
        // compact (n, P) float64 -> rows evaluated[i] of out (K, P) float64 (a copy, returned)
        const f64_array compact = take_f64(src_in, "compact");
        f64_array out = take_f64(out_in, "out");
        if (compact.ndim() != out.ndim() || compact.ndim() < 1 || compact.ndim() > 2 || compact.shape(0) != n ||
            (out.ndim() == 2 && out.shape(1) != compact.shape(1)))
          throw std::invalid_argument("compact, out: expected (n, P) and (K, P), or (n,) and (K,)");
        const int64_t K = out.shape(0), P = out.ndim() == 2 ? out.shape(1) : 1;
        check_indices(K);
        f64_array res(std::vector<int64_t>(out.shape(), out.shape() + out.ndim()));
        std::copy(out.data(), out.data() + out.size(), res.mutable_data());
        rows_scatter_host(idx, n, P, compact.data(), res.mutable_data());
        return py::object(res);
      },
      py::arg("mode"), py::arg("evaluated"), py::arg("src"), py::arg("out") = py::none(),
      "TEST ONLY: the device loops' compaction to the running networks (reluflow/running_rows.h; the\n"
      "gather_rows_kernel / scatter_rows_kernel of cuda/src/loop_common.cuh) on the host. 'gather': rows\n"
      "evaluated[i] of src (K, P) float32/float64 -> (n, P) in its dtype; 'scatter': src (n, P) (or (n,))\n"
      "float64 into rows evaluated[i] of a copy of out (K, P) (or (K,)), returned.");
  m.def(
      "_harness_dp",
      [](const std::string& phase, const py::dict& ws, int64_t it, int stage) {
        if (!ws.contains("theta0")) throw std::invalid_argument("ws: missing 'theta0'");
        py::array th = py::reinterpret_borrow<py::array>(ws["theta0"]);
        if (th.dtype().is(py::dtype::of<float>())) dp_phase_typed<float>(phase, ws, it, stage);
        else dp_phase_typed<double>(phase, ws, it, stage);
      },
      py::arg("phase"), py::arg("ws"), py::kw_only(), py::arg("it") = 0, py::arg("stage") = 0,
      "TEST ONLY: one phase of the device dopri5 loop (cuda/src/dopri5_loop.cu: 'init', 'begin' of\n"
      "iteration it, 'stage' 1..6, 'finish', and for the normalized loop 'conclude') run on the host with\n"
      "the same per-thread functions\n"
      "(reluflow/dopri5_step.h). ws: a dict of the loop's arrays (theta0 (K, P) float32/float64 and the\n"
      "stage buffer in its dtype; y (K, P), k (7, K, P), risk (K,), grid (T,), t, h, energy, risk0, growth,\n"
      "hh, target (K,) float64; nxt, streak, accepted, rejected (K,) int64; status (K,) int32; done, reason\n"
      "(K,) uint8; rec_risk, rec_gn, rec_energy (T, K); rec_theta (T, K, P) or None; frozen (P,) uint8 or\n"
      "None) and the scalars t_end, t_tol, h0, rtol, atol, max_abs, max_growth, min_step, max_steps,\n"
      "max_rejections; the normalized loop: widths (list) and ynew (K, P) float64, pending, bad_why (K,)\n"
      "uint8, err (K,) float64, any_accepted (1,) int32, extra_evals (1,) int64; the arrays are updated\n"
      "in place.");
}

}  // namespace reluflow
