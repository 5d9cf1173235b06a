// Bindings of the random-number generators and samplers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>

#include "bindings.h"
#include "kernels_cpu.h"

namespace py = pybind11;

namespace reluflow {

using u32_array = py::array_t<uint32_t, py::array::c_style | py::array::forcecast>;

void bind_sampling(py::module_& m) {
  m.def(
      "philox4x32_10",
      [](u32_array ctr, uint32_t k0, uint32_t k1) {
        if (ctr.ndim() != 2 || ctr.shape(1) != 4)
          throw std::invalid_argument("ctr: expected a (n, 4) uint32 array");
        const int64_t n = ctr.shape(0);
        py::array_t<uint32_t> out({n, static_cast<int64_t>(4)});
        {
          py::gil_scoped_release release;
          philox_block(ctr.data(), n, k0, k1, out.mutable_data());
        }
        return out;
      },
      py::arg("ctr"), py::arg("k0"), py::arg("k1"),
      "Philox-4x32-10 of each row of ctr (n, 4) under key (k0, k1): (n, 4) uint32.");

  m.def(
      "philox_uniforms",
      [](uint64_t seed, uint32_t stream, uint32_t step, uint32_t first, int64_t n, int d) {
        if (n < 0) throw std::invalid_argument("n: expected n >= 0");
        if (d < 1) throw std::invalid_argument("d: expected d >= 1");
        py::array_t<double> out({n, static_cast<int64_t>(d)});
        {
          py::gil_scoped_release release;
          philox_uniforms(seed, stream, step, first, n, d, out.mutable_data());
        }
        return out;
      },
      py::arg("seed"), py::arg("stream"), py::arg("step"), py::arg("first"), py::arg("n"),
      py::arg("d"), "Uniforms (n, d) in (0, 1) of samples first..first+n-1 (float64).");

}

}  // namespace reluflow
