// reluflow._cuda: the pybind11 glue of the CUDA extension (host compiler only). Argument parsing and
// checks here, before any device call; the kernels and launchers live in cuda/src/ (a static library).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "bindings/bind_spec.h"
#include "bindings/bind_util.h"
#include "bindings/exact_sweep_args.h"
#include "bindings/progress.h"
#include "launchers.h"
#include "reluflow/manifold.h"
#include "reluflow/tableaux.h"

namespace py = pybind11;

namespace {

// A device array read through its __cuda_array_interface__ (CuPy, PyTorch, Numba, ...): the pointer,
// checked to be C-contiguous, of the expected type string and shape. No copy, no device call.
struct DeviceView {
  uintptr_t ptr = 0;
  std::vector<int64_t> shape;
};

std::string shape_text(const std::vector<int64_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

DeviceView device_view(const py::object& obj, const char* name, const std::string& typestr, bool writable,
                       const char* kind = nullptr) {
  if (!py::hasattr(obj, "__cuda_array_interface__"))
    throw py::type_error(std::string(name) + ": expected a device array (with __cuda_array_interface__, e.g. a "
                         "CuPy array), got " + std::string(py::str(py::type::of(obj).attr("__name__"))));
  const py::dict cai = obj.attr("__cuda_array_interface__");
  const std::string ts = py::str(cai["typestr"]);
  if (ts != typestr)
    throw py::type_error(std::string(name) + ": expected dtype " + (kind ? kind : typestr.c_str()) + " (typestr " +
                         typestr + "), got typestr " + ts);
  DeviceView v;
  for (auto s : py::tuple(cai["shape"])) v.shape.push_back(s.cast<int64_t>());
  if (cai.contains("mask") && !cai["mask"].is_none())
    throw py::value_error(std::string(name) + ": masked device arrays are not supported");
  if (cai.contains("strides") && !cai["strides"].is_none()) {  // None means C-contiguous
    const py::tuple st = cai["strides"];
    int64_t expect = static_cast<int64_t>(ts.back() - '0');
    for (int i = static_cast<int>(v.shape.size()) - 1; i >= 0; --i) {
      if (v.shape[i] > 1 && st[i].cast<int64_t>() != expect)
        throw py::value_error(std::string(name) + ": expected a C-contiguous device array (cupy.ascontiguousarray)");
      expect *= v.shape[i];
    }
  }
  const py::tuple data = cai["data"];
  v.ptr = data[0].cast<uintptr_t>();
  if (writable && data[1].cast<bool>()) throw py::value_error(std::string(name) + ": the output array is read-only");
  return v;
}

void expect_shape(const DeviceView& v, const char* name, const std::vector<int64_t>& shape, const char* what) {
  if (v.shape != shape)
    throw py::value_error(std::string(name) + ": expected shape " + what + " = " + shape_text(shape) + ", got " +
                          shape_text(v.shape));
}

// The arguments both sweeps share: widths [1, H, out] (out <= 3), theta (K, P) float64 and the outputs risk
// (K,) and grad (K, P) (None: the risk only), as device views.
struct SweepViews {
  reluflow::Layout lay{};
  int64_t H = 0, out = 0, P = 0, K = 0;
  uintptr_t theta = 0, risk = 0, grad = 0;
};

SweepViews sweep_views(const std::vector<int64_t>& widths, const py::object& theta, const py::object& risk,
                       const py::object& grad, const char* what) {
  SweepViews v;
  v.lay = reluflow::make_layout(widths);
  const reluflow::Layout& lay = v.lay;
  if (lay.num_layers != 2 || lay.widths[0] != 1 || lay.widths[2] > 3)
    throw py::value_error(std::string("widths: the ") + what + " needs a shallow 1-D net [1, H, out] with out <= 3");
  v.H = lay.widths[1];
  v.out = lay.widths[2];
  v.P = lay.num_params;
  const DeviceView th = device_view(theta, "theta", "<f8", false, "float64");
  v.K = th.shape.size() == 2 ? th.shape[0] : -1;
  expect_shape(th, "theta", {v.K, v.P}, "(K, P)");
  v.theta = th.ptr;
  const DeviceView rv = device_view(risk, "risk", "<f8", true, "float64");
  expect_shape(rv, "risk", {v.K}, "(K,)");
  v.risk = rv.ptr;
  if (!grad.is_none()) {
    const DeviceView gv = device_view(grad, "grad", "<f8", true, "float64");
    expect_shape(gv, "grad", {v.K, v.P}, "(K, P)");
    v.grad = gv.ptr;
  }
  return v;
}

// The arguments the dense and the ragged kernels share: theta (K, P) float32 or float64, x (N, d), w (N,)
// float64 and the outputs risk (K,) and grad (K, P) float64 (None: the risk only), as device views.
struct DenseViews {
  int64_t K = 0, N = 0;
  bool f32 = false;
  uintptr_t theta = 0, x = 0, w = 0, risk = 0, grad = 0;
};

// The dense kernels' problem from those views and y (N, out) device pointer (0: the target of the spec).
reluflow::cuda::DenseDevice dense_device(const reluflow::Layout& lay, const DenseViews& v, uintptr_t y) {
  reluflow::cuda::DenseDevice p;
  p.lay = lay;
  p.K = v.K;
  p.N = v.N;
  p.f32 = v.f32;
  p.theta = reinterpret_cast<const void*>(v.theta);
  p.x = reinterpret_cast<const double*>(v.x);
  p.w = reinterpret_cast<const double*>(v.w);
  p.y = reinterpret_cast<const double*>(y);
  return p;
}

DenseViews dense_views(const reluflow::Layout& lay, const py::object& theta, const py::object& x, const py::object& w,
                       const py::object& risk, const py::object& grad) {
  DenseViews v;
  v.f32 = py::hasattr(theta, "__cuda_array_interface__") &&
          py::str(theta.attr("__cuda_array_interface__")["typestr"]).cast<std::string>() == "<f4";
  const DeviceView th = device_view(theta, "theta", v.f32 ? "<f4" : "<f8", false, "float32 or float64");
  if (th.shape.size() != 2) throw py::value_error("theta: expected shape (K, P), got " + shape_text(th.shape));
  const int64_t P = lay.num_params;
  v.K = th.shape[0];
  expect_shape(th, "theta", {v.K, P}, "(K, P)");
  const DeviceView xv = device_view(x, "x", "<f8", false, "float64");
  v.N = xv.shape.empty() ? -1 : xv.shape[0];
  expect_shape(xv, "x", {v.N, lay.widths[0]}, "(N, d)");
  const DeviceView wv = device_view(w, "w", "<f8", false, "float64");
  expect_shape(wv, "w", {v.N}, "(N,)");
  const DeviceView rv = device_view(risk, "risk", "<f8", true, "float64");
  expect_shape(rv, "risk", {v.K}, "(K,)");
  if (!grad.is_none()) {
    const DeviceView gv = device_view(grad, "grad", "<f8", true, "float64");
    expect_shape(gv, "grad", {v.K, P}, "(K, P)");
    v.grad = gv.ptr;
  }
  v.theta = th.ptr;
  v.x = xv.ptr;
  v.w = wv.ptr;
  v.risk = rv.ptr;
  return v;
}

// progress(done) of a loop: the CPU loops' hook (Ctrl-C stops the loop, other errors propagate)
using reluflow::progress_hook;

reluflow::cuda::DensePath parse_path(const std::string& path) {
  namespace rc = reluflow::cuda;
  if (path == "auto") return rc::DensePath::Auto;
  if (path == "shallow") return rc::DensePath::Shallow;
  if (path == "deep") return rc::DensePath::Deep;
  throw py::value_error("path: expected 'auto', 'shallow' or 'deep', got '" + path + "'");
}


// A device loop's per-step target callback: target_fn(x) with x the step's nodes as a CuPy array (n, d)
// viewing the loop's device buffer (no copy), its result (n, out) (or (n,) for one output) copied into
// the loop's y buffer on the current stream (the loop's). Runs with the GIL taken.
std::function<void(const double*, int64_t, double*)> device_target_fn(const py::object& fn, int64_t d, int64_t out) {
  const py::module_ cp = py::module_::import("cupy");  // once per run, not per step
  return [fn, cp, d, out](const double* x, int64_t n, double* y) {
    py::gil_scoped_acquire gil;
    const auto view = [&](const double* ptr, std::vector<int64_t> shape) {
      const py::object mem = cp.attr("cuda").attr("UnownedMemory")(reinterpret_cast<uintptr_t>(ptr),
                                                                    n * shape.back() * 8, py::none());
      return cp.attr("ndarray")(py::tuple(py::cast(shape)), cp.attr("float64"),
                                cp.attr("cuda").attr("MemoryPointer")(mem, 0));
    };
    const py::object xv = view(x, {n, d});
    py::object yv = view(y, {n, out});
    py::object r = fn(xv);
    r = cp.attr("asarray")(r, cp.attr("float64"));
    const py::tuple shape = r.attr("shape");
    const bool ok = (shape.size() == 2 && shape[0].cast<int64_t>() == n && shape[1].cast<int64_t>() == out) ||
                    (shape.size() == 1 && out == 1 && shape[0].cast<int64_t>() == n);
    if (!ok)
      throw py::value_error("target_fn: expected target values of shape (" + std::to_string(n) + ", " +
                            std::to_string(out) + "), got " + std::string(py::str(shape)));
    cp.attr("copyto")(yv, r.attr("reshape")(n, out));
  };
}

// The problem of a device loop from its Python arguments: theta's view (float32 / float64, (K, P)),
// the fixed nodes x, w, y (y None: the target of spec evaluated in the kernel) unless resampling, and
// the host arrays of spec's target / teacher / input (kept alive in `args` for the run).
struct LoopProblem {
  reluflow::cuda::DenseDevice prob{};
  reluflow::ProblemArgs args;
  int64_t K = 0, P = 0;
  bool f32 = false;
};

void loop_problem(LoopProblem& lp, const reluflow::Layout& lay, const py::object& theta, const py::object& x,
                  const py::object& w, const py::object& y, const py::object& spec, bool resample,
                  bool target_by_callback = false) {
  lp.f32 = py::hasattr(theta, "__cuda_array_interface__") &&
           py::str(theta.attr("__cuda_array_interface__")["typestr"]).cast<std::string>() == "<f4";
  const DeviceView th = device_view(theta, "theta", lp.f32 ? "<f4" : "<f8", true, "float32 or float64");
  if (th.shape.size() != 2) throw py::value_error("theta: expected shape (K, P), got " + shape_text(th.shape));
  lp.K = th.shape[0];
  lp.P = lay.num_params;
  expect_shape(th, "theta", {lp.K, lp.P}, "(K, P)");
  const int64_t d = lay.widths[0], out = lay.widths[lay.num_layers];
  lp.prob.lay = lay;
  lp.prob.K = lp.K;
  lp.prob.f32 = lp.f32;
  lp.prob.theta = reinterpret_cast<const void*>(th.ptr);
  if (resample && target_by_callback) {  // the input only: the target's values come from the callback
    if (spec.is_none()) throw py::value_error("spec: required to resample");
    lp.args = reluflow::parse_problem_spec(lay, spec, reluflow::kNeedInput);
    return;
  }
  if (resample || y.is_none()) {
    if (spec.is_none()) throw py::value_error("spec: required to resample or to evaluate the target in the kernel");
    lp.args = reluflow::parse_problem_spec(lay, spec, reluflow::kNeedTarget | reluflow::kNeedTeacherOk |
                                                          (resample ? reluflow::kNeedInput : 0u));
    if (out > 16) throw py::value_error("spec: the kernels evaluate targets with at most 16 outputs");
    if (lp.args.spec.teacher.theta && lp.args.spec.teacher.lay.num_layers != 2)
      throw py::value_error("spec: the kernels evaluate shallow teachers only");
    lp.prob.target = lp.args.spec.target;
    lp.prob.teacher = lp.args.spec.teacher;
  }
  if (resample) return;
  const DeviceView xv = device_view(x, "x", "<f8", false, "float64");
  const int64_t N = xv.shape.empty() ? -1 : xv.shape[0];
  expect_shape(xv, "x", {N, d}, "(N, d)");
  const DeviceView wv = device_view(w, "w", "<f8", false, "float64");
  expect_shape(wv, "w", {N}, "(N,)");
  lp.prob.N = N;
  lp.prob.x = reinterpret_cast<const double*>(xv.ptr);
  lp.prob.w = reinterpret_cast<const double*>(wv.ptr);
  if (!y.is_none()) {
    const DeviceView yv = device_view(y, "y", "<f8", false, "float64");
    expect_shape(yv, "y", {N, out}, "(N, out)");
    lp.prob.y = reinterpret_cast<const double*>(yv.ptr);
  }
}

using u8_mask = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

// A (P,) frozen mask or null (kept alive by `keep`).
const uint8_t* frozen_mask(const py::object& frozen, int64_t P, u8_mask& keep) {
  if (frozen.is_none()) return nullptr;
  keep = u8_mask::ensure(frozen);
  if (!keep || keep.ndim() != 1 || keep.shape(0) != P)
    throw py::value_error("frozen: expected a (P,) mask with P = " + std::to_string(P));
  return keep.data();
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "reluflow CUDA kernels";
  m.def("device_count", &reluflow::cuda::device_count, "Number of CUDA devices visible (0 when no driver/GPU).");
  m.def(
      "philox_uniforms",
      [](uint64_t seed, uint32_t stream, uint32_t step, uint32_t first, int64_t n, int d) {
        if (n < 0 || d < 1) throw py::value_error("n, d: expected n >= 0 and d >= 1");
        py::array_t<double> out({n, static_cast<int64_t>(d)});
        reluflow::cuda::philox_uniforms(seed, stream, step, first, n, d, out.mutable_data());
        return out;
      },
      py::arg("seed"), py::arg("stream"), py::arg("step"), py::arg("first"), py::arg("n"), py::arg("d"),
      "Philox uniforms (n, d) of samples first..first+n-1 on the GPU (float64).");
  m.def(
      "mc_nodes",
      [](uint64_t seed, uint32_t step, int64_t n, py::object spec) {
        if (n < 0 || n > (int64_t(1) << 32)) throw py::value_error("n: expected a number of samples in [0, 2**32]");
        // the one problem parser of the bindings (bind_spec.h): a DensitySpec.native() dict
        const reluflow::ProblemArgs prob = reluflow::parse_problem_spec(reluflow::Layout{}, spec, reluflow::kNeedInput);
        const reluflow::InputDist& dist = prob.spec.input;
        const bool box = dist.kind == reluflow::kDistUniform, gauss = dist.kind == reluflow::kDistGaussian;
        const int64_t sizes[3] = {box ? prob.low.size() : gauss ? prob.mean.size() : prob.ibreaks.size(),
                                  box ? prob.high.size() : gauss ? prob.chol.size() : prob.danti.size(),
                                  box || gauss ? 0 : prob.dcum.size()};
        py::array_t<double> out({n, static_cast<int64_t>(dist.dim)});
        reluflow::cuda::mc_nodes(seed, step, n, dist, sizes, out.mutable_data());
        return out;
      },
      py::arg("seed"), py::arg("step"), py::arg("n"), py::kw_only(), py::arg("spec"),
      "Monte-Carlo nodes (n, d) of step on the GPU, bitwise those of reluflow._core.mc_nodes (same "
      "arguments: spec is DensitySpec.native()).");
  m.def(
      "risk_and_grad",
      [](const std::vector<int64_t>& widths, const py::object& theta, const py::object& x, const py::object& w,
         const py::object& y, const py::object& risk, const py::object& grad, const std::string& path,
         uintptr_t stream, const py::object& spec) {
        namespace rc = reluflow::cuda;
        const reluflow::Layout lay = reluflow::make_layout(widths);
        const rc::DensePath dp = parse_path(path);
        try {
          rc::resolve_dense_path(lay, dp);
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
        const DenseViews v = dense_views(lay, theta, x, w, risk, grad);
        const int64_t out = lay.widths[lay.num_layers];
        DeviceView yv;
        reluflow::ProblemArgs prob;  // the target when y is None (its arrays: host memory, kept alive here)
        if (y.is_none()) {
          if (spec.is_none()) throw py::value_error("y: required unless spec= gives a native target");
          prob = reluflow::parse_problem_spec(lay, spec, reluflow::kNeedTarget | reluflow::kNeedTeacherOk);
          if (out > 16) throw py::value_error("y: required for targets with more than 16 outputs");
          if (prob.spec.teacher.theta && prob.spec.teacher.lay.num_layers != 2)
            throw py::value_error("y: required for a deep teacher (the kernels evaluate shallow teachers only)");
        } else {
          yv = device_view(y, "y", "<f8", false, "float64");
          expect_shape(yv, "y", {v.N, out}, "(N, out)");
        }
        rc::DenseDevice p = dense_device(lay, v, yv.ptr);
        p.target = prob.spec.target;
        p.teacher = prob.spec.teacher;
        {
          py::gil_scoped_release release;
          rc::risk_and_grad_dense(p, dp, reinterpret_cast<double*>(v.risk), reinterpret_cast<double*>(v.grad), stream);
        }
      },
      py::arg("widths"), py::arg("theta"), py::arg("x"), py::arg("w"), py::arg("y"), py::kw_only(), py::arg("risk"),
      py::arg("grad"), py::arg("path") = "auto", py::arg("stream") = 0, py::arg("spec") = py::none(),
      "Dense risk sum_j w_j |N_k(x_j) - y_j|^2 (K,) and generalized gradient (K, P) on the GPU, written into\n"
      "the device arrays risk (K,) and grad (K, P) float64 (grad None: the risk only). theta (K, P) float32 or\n"
      "float64, x (N, d), w (N,), y (N, out) float64: C-contiguous device arrays (__cuda_array_interface__,\n"
      "read without a copy); y None: the target of spec=ProblemSpec.native() evaluated per node on the\n"
      "device (a shallow teacher by net.h, an affine or piecewise-polynomial target by targets.h).\n"
      "Queued on `stream` (a cudaStream_t as an integer, e.g. cupy.cuda.get_current_stream().ptr);\n"
      "returns before the kernels finish. path: 'auto', 'shallow'\n"
      "([d, H, out], d <= 8, out <= 3) or 'deep'. Deterministic (no atomics).");
  m.def(
      "risk_and_grad_ragged",
      [](const std::vector<int64_t>& widths, const py::object& theta, const py::object& x, const py::object& w,
         const py::object& y, const py::object& offset, const py::object& zero, const py::object& risk,
         const py::object& grad, uintptr_t stream) {
        namespace rc = reluflow::cuda;
        const reluflow::Layout lay = reluflow::make_layout(widths);
        const DenseViews v = dense_views(lay, theta, x, w, risk, grad);
        const DeviceView yv = device_view(y, "y", "<f8", false, "float64");
        expect_shape(yv, "y", {v.N, lay.widths[lay.num_layers]}, "(N, out)");
        const reluflow::i64_array off = reluflow::ragged_offsets(offset, v.K, v.N);
        const int64_t hidden = reluflow::hidden_neurons(lay);  // l_1 + ... + l_{L-1}
        DeviceView zv;
        if (!zero.is_none()) {
          zv = device_view(zero, "zero", "|u1", false, "uint8");
          expect_shape(zv, "zero", {v.N, hidden}, "(N, hidden)");
        }
        rc::RaggedDevice p;
        p.nodes = dense_device(lay, v, yv.ptr);
        p.zero = reinterpret_cast<const uint8_t*>(zv.ptr);
        p.node_offset = off.data();
        {
          py::gil_scoped_release release;
          rc::risk_and_grad_ragged(p, reinterpret_cast<double*>(v.risk), reinterpret_cast<double*>(v.grad), stream);
        }
      },
      py::arg("widths"), py::arg("theta"), py::arg("x"), py::arg("w"), py::arg("y"), py::arg("offset"),
      py::arg("zero") = py::none(), py::kw_only(), py::arg("risk"), py::arg("grad"), py::arg("stream") = 0,
      "Risk (K,) and generalized gradient (K, P) of K networks, each over its own nodes, on the GPU (the exact\n"
      "1-D quadrature: the output of _core.quad1d_nodes_batch): network k of theta (K, P) float32/float64\n"
      "over rows offset[k]:offset[k + 1] of x (N, d), w (N,), y (N, out) float64 and of zero (N, hidden)\n"
      "uint8 flags or None (device arrays); offset (K + 1,) int64 on the HOST. Written into the device\n"
      "arrays risk (K,) and grad (K, P) float64 (grad None: the risk only; 0 for a network without nodes),\n"
      "queued on `stream`. Deterministic (no atomics); a network's bits depend on its own nodes only.");
  m.def(
      "point_sweep",
      [](const std::vector<int64_t>& widths, const py::object& theta, const py::object& x, const py::object& w,
         const py::object& y, const py::object& risk, const py::object& grad, uintptr_t stream) {
        const SweepViews v = sweep_views(widths, theta, risk, grad, "point sweep");
        const DeviceView xv = device_view(x, "x", "<f8", false, "float64");
        const int64_t N = xv.shape.size() == 1 ? xv.shape[0] : -1;
        expect_shape(xv, "x", {N}, "(N,)");
        const DeviceView wv = device_view(w, "w", "<f8", false, "float64");
        expect_shape(wv, "w", {N}, "(N,)");
        const DeviceView yv = device_view(y, "y", "<f8", false, "float64");
        expect_shape(yv, "y", {N, v.out}, "(N, out)");
        if (N >= (int64_t(1) << 31) || 2 * v.H >= (int64_t(1) << 31))
          throw py::value_error("x: the point sweep takes fewer than 2^31 nodes and 2^30 neurons");
        py::gil_scoped_release release;
        reluflow::cuda::point_sweep_device(reinterpret_cast<const double*>(v.theta), v.K, v.H, int(v.out), N,
                                           reinterpret_cast<const double*>(xv.ptr),
                                           reinterpret_cast<const double*>(wv.ptr),
                                           reinterpret_cast<const double*>(yv.ptr), reinterpret_cast<double*>(v.risk),
                                           reinterpret_cast<double*>(v.grad), stream);
      },
      py::arg("widths"), py::arg("theta"), py::arg("x"), py::arg("w"), py::arg("y"), py::kw_only(), py::arg("risk"),
      py::arg("grad"), py::arg("stream") = 0,
      "Point sweep of shallow 1-D nets [1, H, out] (out <= 3) on the GPU: risk sum_j w_j |N_k(x_j) - y_j|^2\n"
      "and its generalized gradient written into the device arrays risk (K,) and grad (K, P) float64 (grad\n"
      "None: the risk only). theta (K, P), x (N,) (finite: the caller checks), w (N,), y (N, out): float64\n"
      "C-contiguous device arrays, read without a copy. O(N + H) per network (CUB radix sorts, fixed-order\n"
      "double-double scans: reluflow/sweep_grid.h); queued on `stream`; deterministic.");
  m.def(
      "exact_sweep",
      [](const std::vector<int64_t>& widths, const py::object& theta, const py::object& risk, const py::object& grad,
         const py::object& spec, uintptr_t stream) {
        const SweepViews v = sweep_views(widths, theta, risk, grad, "exact sweep");
        const reluflow::ProblemArgs prob = reluflow::parse_problem_spec(
            v.lay, spec, reluflow::kNeedSupport | reluflow::kNeedTargetPieces | reluflow::kNeedDensity1D);
        const reluflow::ExactSweepArgs args(prob.spec);
        py::gil_scoped_release release;
        reluflow::cuda::exact_sweep_device(reinterpret_cast<const double*>(v.theta), v.K, v.H, int(v.out), args.ex,
                                           reinterpret_cast<double*>(v.risk), reinterpret_cast<double*>(v.grad), stream);
      },
      py::arg("widths"), py::arg("theta"), py::kw_only(), py::arg("risk"), py::arg("grad"), py::arg("spec"),
      py::arg("stream") = 0,
      "Exact quadrature sweep of shallow 1-D nets [1, H, out] (out <= 3) on the GPU: risk\n"
      "∫_lo^hi |N_k - f|^2 rho and its generalized gradient written into the device arrays risk (K,) and\n"
      "grad (K, P) float64 (grad None: the risk only). theta (K, P) float64 C-contiguous device array; spec:\n"
      "ProblemSpec.native() with a piecewise-polynomial target and density (as _core.shallow1d_exact).\n"
      "O(ng + H) pieces per network (CUB segmented sort of the kinks, fixed-order double-double scans:\n"
      "reluflow/sweep_grid.h); queued on `stream`; deterministic.");
  m.def(
      "gd_loop",
      [](const std::vector<int64_t>& widths, const py::object& theta, const py::object& x, const py::object& w,
         const py::object& y, bool resample, uint64_t seed, int64_t n, const py::object& spec, int64_t steps,
         int64_t start_step, int64_t record_every, const py::object& h, const py::object& h_fn, double max_abs,
         double max_growth, const py::object& frozen, bool record_theta, const py::object& progress,
         const std::string& path, uintptr_t stream, const std::string& method, double rise_tol, bool normalized,
         const py::object& target_fn) {
        namespace rc = reluflow::cuda;
        namespace tb = reluflow::tableaux;
        const reluflow::Layout lay = reluflow::make_layout(widths);
        rc::GdLoopSpec s;
        // gradient descent is Euler's update with its own step sizes
        if (method == "gd" || method == "euler") s.method = tb::kEuler;
        else if (method == "heun") s.method = tb::kHeun;
        else if (method == "rk4") s.method = tb::kRK4;
        else throw py::value_error("method: expected 'gd', 'euler', 'heun' or 'rk4', got '" + method + "'");
        if (!(rise_tol < 0 || std::isfinite(rise_tol))) throw py::value_error("rise_tol: expected a finite tolerance (< 0: off)");
        s.rise_tol = rise_tol;
        s.normalized = normalized;
        s.path = parse_path(path);
        try {
          rc::resolve_dense_path(lay, s.path);
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
        LoopProblem lp;
        loop_problem(lp, lay, theta, x, w, y, spec, resample, !target_fn.is_none());
        const bool f32 = lp.f32;
        const int64_t K = lp.K, P = lp.P;
        if (steps < 0) throw py::value_error("steps: expected steps >= 0");
        if (record_every < 1) throw py::value_error("record_every: expected >= 1");
        if (start_step < 0 || start_step + steps > 4294967295LL)
          throw py::value_error("start_step: step indices must lie in [0, 2**32)");
        if (!(max_abs > 0)) throw py::value_error("max_abs: expected > 0");
        if (!(max_growth > 1)) throw py::value_error("max_growth: expected a factor > 1");
        s.prob = lp.prob;
        if (resample) {
          if (n < 1 || n > (int64_t(1) << 32)) throw py::value_error("n: expected a number of samples in [1, 2**32]");
          s.resample = true;
          s.seed = seed;
          s.n = n;
          const reluflow::ProblemArgs& prob = lp.args;
          s.input = prob.spec.input;
          const bool box = s.input.kind == reluflow::kDistUniform, gauss = s.input.kind == reluflow::kDistGaussian;
          s.input_sizes[0] = box ? prob.low.size() : gauss ? prob.mean.size() : prob.ibreaks.size();
          s.input_sizes[1] = box ? prob.high.size() : gauss ? prob.chol.size() : prob.danti.size();
          s.input_sizes[2] = box || gauss ? 0 : prob.dcum.size();
        }
        s.steps = steps;
        s.start_step = start_step;
        s.record_every = record_every;
        py::array_t<double, py::array::c_style | py::array::forcecast> harr;
        if (!h_fn.is_none()) {
          s.h_fill = [h_fn](int64_t first, int64_t count, double* dst) {
            py::gil_scoped_acquire gil;
            const py::array_t<double, py::array::c_style | py::array::forcecast> v(h_fn(first, count));
            if (v.ndim() != 1 || v.shape(0) != count)
              throw py::value_error("h_fn: expected " + std::to_string(count) + " step sizes");
            std::copy(v.data(), v.data() + count, dst);
          };
        } else {
          if (h.is_none()) throw py::value_error("h: required unless h_fn is given");
          harr = decltype(harr)::ensure(h);
          if (!harr || harr.ndim() != 1 || (harr.shape(0) != 1 && harr.shape(0) < steps))
            throw py::value_error("h: expected one step size (length 1) or one per step (length steps)");
          s.h = harr.data();
          s.h_len = harr.shape(0) == 1 ? 1 : steps;
        }
        s.max_abs = max_abs;
        s.max_growth = max_growth;
        py::array_t<uint8_t, py::array::c_style | py::array::forcecast> fr;
        s.frozen = frozen_mask(frozen, P, fr);
        s.record_theta = record_theta;
        s.progress = progress_hook<int64_t>(progress);
        s.stream = stream;
        if (!target_fn.is_none()) {
          if (!resample) throw py::value_error("target_fn: only with resample=True (fixed nodes take y)");
          s.target_fn = device_target_fn(target_fn, lay.widths[0], lay.widths[lay.num_layers]);
        }
        const int64_t T = rc::gd_num_records(steps, record_every);
        py::array_t<double> rr({T, K}), rg({T, K}), ren({T, K}), growth(K);
        py::array_t<uint8_t> active(K), reason(K), rose(K);
        py::array_t<int64_t> stop(K);
        py::array thetas = record_theta ? py::array(f32 ? py::dtype::of<float>() : py::dtype::of<double>(),
                                                    std::vector<int64_t>{T, K, P})
                                        : py::array();
        rc::GdLoopOut o;
        o.rec_risk = rr.mutable_data();
        o.rec_gnorm = rg.mutable_data();
        o.rec_energy = ren.mutable_data();
        o.rec_theta = record_theta ? thetas.mutable_data() : nullptr;
        o.active = active.mutable_data();
        o.reason = reason.mutable_data();
        o.growth = growth.mutable_data();
        o.stop_iter = stop.mutable_data();
        o.rose = rose.mutable_data();
        {
          py::gil_scoped_release release;
          rc::gd_loop(s, o);
        }
        py::dict res;
        auto cut = [&](const py::array& a) { return a[py::slice(0, o.records, 1)]; };
        res["risk"] = cut(rr);
        res["grad_norm"] = cut(rg);
        res["energy"] = cut(ren);
        res["thetas"] = record_theta ? py::object(cut(thetas)) : py::none();
        res["active"] = active;
        res["reason"] = reason;
        res["growth"] = growth;
        res["stop_iter"] = stop;
        res["risk_rose"] = rose;
        res["evaluations"] = o.evaluations;
        res["interrupted"] = o.interrupted;
        res["steps_done"] = o.steps_done;
        res["records"] = o.records;
        res["blocks"] = o.blocks;
        res["compactions"] = o.compactions;
        return res;
      },
      py::arg("widths"), py::arg("theta"), py::kw_only(), py::arg("x") = py::none(), py::arg("w") = py::none(),
      py::arg("y") = py::none(), py::arg("resample") = false, py::arg("seed") = 0, py::arg("n") = 0,
      py::arg("spec") = py::none(), py::arg("steps"), py::arg("start_step") = 0, py::arg("record_every") = 1,
      py::arg("h") = py::none(), py::arg("h_fn") = py::none(), py::arg("max_abs") = 1e8, py::arg("max_growth") = 1e6,
      py::arg("frozen") = py::none(), py::arg("record_theta") = false, py::arg("progress") = py::none(),
      py::arg("path") = "auto", py::arg("stream") = 0, py::arg("method") = "gd", py::arg("rise_tol") = -1.0,
      py::arg("normalized") = false, py::arg("target_fn") = py::none(),
      "Gradient descent / SGD (method='gd') or the fixed-step gradient flow (method 'euler', 'heun', 'rk4';\n"
      "h: (1,) the step dt) of K networks with the whole loop on the GPU (cuda/src/gd_loop.cu), theta\n"
      "(K, P) float32/float64 device array updated in place. Nodes: fixed device arrays x (N, d), w (N,),\n"
      "y (N, out) (y None: the target of spec= evaluated in the kernel), or resample=True: n Monte-Carlo\n"
      "nodes per step from Philox (seed, step) of spec's input distribution, drawn on the device. h: (1,)\n"
      "or (steps,) step sizes, or h_fn(first, count) -> (count,) asked once per block (a callable\n"
      "schedule). Returns a dict: risk/grad_norm/energy records (T, K) (cut to the records written),\n"
      "thetas (T, K, P) or None, active, reason (tableaux::StopReason), growth, stop_iter, risk_rose (K,),\n"
      "evaluations (dense evaluations, stages included), interrupted, steps_done, records, compactions (the\n"
      "evaluations shrank to the active networks), blocks (host\n"
      "synchronizations). rise_tol >= 0: risk_rose flags a risk above the previous step's x (1 + rise_tol).\n"
      "normalized=True: the gradients projected on the hidden neurons' spheres and every update retracted\n"
      "(theta must start on the manifold). target_fn (resample only): the target's values by\n"
      "target_fn(x) -> (n, out) on each step's nodes x, a CuPy array (n, d) viewing the loop's buffer, for\n"
      "targets the kernels do not evaluate (a Function, a deep teacher); called on the loop's stream.");
  m.def(
      "dopri5_loop",
      [](const std::vector<int64_t>& widths, const py::object& theta, const py::object& x, const py::object& w,
         const py::object& y, const py::object& spec, const py::object& grid_in, double t_end, double h0,
         double rtol, double atol, double max_abs, double max_growth, int64_t max_steps, int64_t max_rejections,
         double min_step, const py::object& frozen, bool record_theta, const py::object& progress,
         const std::string& path, uintptr_t stream, bool normalized) {
        namespace rc = reluflow::cuda;
        const reluflow::Layout lay = reluflow::make_layout(widths);
        rc::Dopri5LoopSpec s;
        if (normalized && !frozen.is_none())
          throw py::value_error("frozen: not with normalized=True (the retraction moves every hidden parameter)");
        s.normalized = normalized;
        s.path = parse_path(path);
        try {
          rc::resolve_dense_path(lay, s.path);
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
        if (x.is_none() || w.is_none()) throw py::value_error("x, w: dopri5 on the device needs fixed nodes");
        LoopProblem lp;
        loop_problem(lp, lay, theta, x, w, y, spec, false);
        const int64_t K = lp.K, P = lp.P;
        const py::array_t<double, py::array::c_style | py::array::forcecast> grid =
            py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(grid_in);
        if (!grid || grid.ndim() != 1 || grid.shape(0) < 1)
          throw py::value_error("grid: expected a (T,) array of record times, T >= 1");
        const int64_t T = grid.shape(0);
        if (!(t_end > 0) || !std::isfinite(t_end)) throw py::value_error("t_end: expected a positive time");
        for (int64_t j = 0; j < T; ++j)
          if (!(grid.data()[j] >= 0 && grid.data()[j] <= t_end) || (j > 0 && !(grid.data()[j] > grid.data()[j - 1])))
            throw py::value_error("grid: expected increasing times in [0, t_end]");
        if (!(rtol >= 0) || !(atol >= 0) || !(rtol + atol > 0)) throw py::value_error("rtol, atol: expected >= 0, not both 0");
        if (!(max_abs > 0)) throw py::value_error("max_abs: expected > 0");
        if (!(max_growth > 1)) throw py::value_error("max_growth: expected a factor > 1");
        if (max_steps < 1 || max_rejections < 1) throw py::value_error("max_steps, max_rejections: expected >= 1");
        if (!(min_step >= 0)) throw py::value_error("min_step: expected >= 0");
        s.prob = lp.prob;
        s.grid = grid.data();
        s.T = T;
        s.t_end = t_end;
        s.h0 = h0;
        s.rtol = rtol;
        s.atol = atol;
        s.max_abs = max_abs;
        s.max_growth = max_growth;
        s.max_steps = max_steps;
        s.max_rejections = max_rejections;
        s.min_step = min_step;
        u8_mask fr;
        s.frozen = frozen_mask(frozen, P, fr);
        s.record_theta = record_theta;
        s.progress = progress_hook<double>(progress);  // called with the smallest time reached
        s.stream = stream;
        py::array_t<double> rr({T, K}), rg({T, K}), ren({T, K}), growth(K), t(K);
        py::array_t<int32_t> status(K);
        py::array_t<int64_t> accepted(K), rejected(K);
        py::array_t<uint8_t> reason(K);
        py::array thetas = record_theta ? py::array(lp.f32 ? py::dtype::of<float>() : py::dtype::of<double>(),
                                                    std::vector<int64_t>{T, K, P})
                                        : py::array();
        rc::Dopri5LoopOut o;
        o.rec_risk = rr.mutable_data();
        o.rec_gnorm = rg.mutable_data();
        o.rec_energy = ren.mutable_data();
        o.rec_theta = record_theta ? thetas.mutable_data() : nullptr;
        o.status = status.mutable_data();
        o.accepted = accepted.mutable_data();
        o.rejected = rejected.mutable_data();
        o.reason = reason.mutable_data();
        o.growth = growth.mutable_data();
        o.t = t.mutable_data();
        {
          py::gil_scoped_release release;
          rc::dopri5_loop(s, o);
        }
        py::dict res;
        res["risk"] = rr;
        res["grad_norm"] = rg;
        res["energy"] = ren;
        res["thetas"] = record_theta ? py::object(thetas) : py::none();
        res["status"] = status;
        res["accepted"] = accepted;
        res["rejected"] = rejected;
        res["reason"] = reason;
        res["growth"] = growth;
        res["t"] = t;
        res["evaluations"] = o.evaluations;
        res["interrupted"] = o.interrupted;
        res["blocks"] = o.blocks;
        res["compactions"] = o.compactions;
        return res;
      },
      py::arg("widths"), py::arg("theta"), py::kw_only(), py::arg("x"), py::arg("w"), py::arg("y") = py::none(),
      py::arg("spec") = py::none(), py::arg("grid"), py::arg("t_end"), py::arg("h0") = -1.0, py::arg("rtol") = 1e-6,
      py::arg("atol") = 1e-9, py::arg("max_abs") = 1e8, py::arg("max_growth") = 1e6, py::arg("max_steps") = 1000000,
      py::arg("max_rejections") = 50, py::arg("min_step") = 1e-14, py::arg("frozen") = py::none(),
      py::arg("record_theta") = false, py::arg("progress") = py::none(), py::arg("path") = "auto",
      py::arg("stream") = 0, py::arg("normalized") = false,
      "Dormand-Prince 5(4) gradient flow of K networks with the whole adaptive loop on the GPU\n"
      "(cuda/src/dopri5_loop.cu): a step size, error control and status per network as the cpu loop\n"
      "(cpp/src/cpu/dopri5_cpu.cpp). theta (K, P) float32/float64 device array, overwritten with the final\n"
      "state; fixed device nodes x (N, d), w (N,), y (N, out) (None: the target of spec= in the kernel);\n"
      "grid (T,) increasing record times in [0, t_end]; h0 <= 0: Hairer-Wanner's initial step per network.\n"
      "progress(t_min) once per block of iterations; True or Ctrl-C stops the run. Returns a dict: risk,\n"
      "grad_norm, energy (T, K) (NaN where never reached), thetas (T, K, P) or None, status (K,) int32\n"
      "(ok, diverged, max_rejections, min_step, max_steps, interrupted), accepted, rejected, reason,\n"
      "growth, t (K,), evaluations, interrupted, blocks, compactions (the evaluations shrank to\n"
      "the running networks). normalized=True: the flow on the hidden neurons'\n"
      "spheres as the cpu loop's (every evaluation projected, y_new retracted before its error test, the\n"
      "field re-evaluated at the accepted point; theta must start on the manifold; no frozen).");
}
