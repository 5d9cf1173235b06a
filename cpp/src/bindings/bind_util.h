// Helpers shared by the bind_*.cpp files: argument formatting, the layout from widths, arrays.
// The problem (target, input distribution) is parsed by bind_spec.h only.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "reluflow/layout.h"

namespace reluflow {

namespace py = pybind11;
using f64_array = py::array_t<double, py::array::c_style | py::array::forcecast>;

inline std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << (a.ndim() == 1 ? ",)" : ")");
  return s.str();
}

inline std::string widths_str(const std::vector<int64_t>& w) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < w.size(); ++i) s << (i ? ", " : "") << w[i];
  s << "]";
  return s.str();
}

inline Layout make_layout(const std::vector<int64_t>& widths) {
  if (widths.size() < 2)
    throw std::invalid_argument("widths: expected at least two widths [d, ..., out], got " + widths_str(widths));
  if (widths.size() - 1 > static_cast<size_t>(kMaxLayers))
    throw std::invalid_argument("widths: at most 16 layers are supported, got " + widths_str(widths));
  Layout lay;
  lay.num_layers = static_cast<int>(widths.size()) - 1;
  for (size_t k = 0; k < widths.size(); ++k) {
    if (widths[k] < 1 || widths[k] > (int64_t(1) << 30))
      throw std::invalid_argument("widths: expected every width in [1, 2^30], got " + widths_str(widths));
    lay.widths[k] = static_cast<int>(widths[k]);
  }
  layout_finalize(lay);
  return lay;
}

inline f64_array as_vector(const py::object& obj, const char* name) {
  if (obj.is_none()) throw py::value_error(std::string(name) + ": required");
  f64_array a = f64_array::ensure(obj);
  if (!a) throw py::value_error(std::string(name) + ": expected a float64 array");
  return a;
}

// The one dtype dispatch of theta: f32_fn() for float32, f64_fn() for float64, other_fn() for
// anything else (each entry point decides: refuse, or cast to float64). The dtype is compared by value
// (numpy's ==, which also knows byte orders), never by object identity: an equal dtype object that is
// not numpy's builtin one (from zarr, from newbyteorder('='), from a pickle) is the same float type,
// not a stranger to refuse or to cast.
template <class F32, class F64, class Other>
auto dispatch_float(const py::array& theta, F32&& f32_fn, F64&& f64_fn, Other&& other_fn) -> decltype(f64_fn()) {
  const py::dtype dt = theta.dtype();
  if (dt.equal(py::dtype::of<float>())) return f32_fn();
  if (dt.equal(py::dtype::of<double>())) return f64_fn();
  return other_fn();
}

// The node offsets of a ragged node set (network k's nodes at rows offset[k] .. offset[k + 1] - 1 of N):
// (K + 1,) int64, from 0 to N, non-decreasing; a copy (host memory). Refused with the argument named.
using i64_array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
inline i64_array ragged_offsets(const py::object& obj, int64_t K, int64_t N) {
  const i64_array off = i64_array::ensure(obj);
  if (!off || off.ndim() != 1 || off.shape(0) != K + 1)
    throw py::value_error("offset: expected (K + 1,) = (" + std::to_string(K + 1) + ",) integer node offsets");
  const int64_t* o = off.data();
  bool ok = o[0] == 0 && o[K] == N;
  for (int64_t k = 0; ok && k < K; ++k) ok = o[k + 1] >= o[k];
  if (!ok)
    throw py::value_error("offset: expected non-decreasing node offsets from 0 to N = " + std::to_string(N));
  return off;
}

inline bool all_finite(const f64_array& a) {
  const double* p = a.data();
  for (py::ssize_t j = 0; j < a.size(); ++j)
    if (!std::isfinite(p[j])) return false;
  return true;
}

}  // namespace reluflow
