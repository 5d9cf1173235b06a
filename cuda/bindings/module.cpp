// reluflow._cuda: the pybind11 glue of the CUDA extension (host compiler only). Argument parsing and
// checks here, before any device call; the kernels and launchers live in cuda/src/ (a static library).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/bind_spec.h"
#include "launchers.h"

namespace py = pybind11;

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
        const bool box = dist.kind == reluflow::kDistUniform;
        const int64_t sizes[3] = {box ? prob.low.size() : prob.ibreaks.size(), box ? prob.high.size() : prob.danti.size(),
                                  box ? 0 : prob.dcum.size()};
        py::array_t<double> out({n, static_cast<int64_t>(dist.dim)});
        reluflow::cuda::mc_nodes(seed, step, n, dist, sizes, out.mutable_data());
        return out;
      },
      py::arg("seed"), py::arg("step"), py::arg("n"), py::kw_only(), py::arg("spec"),
      "Monte-Carlo nodes (n, d) of step on the GPU, bitwise those of reluflow._core.mc_nodes (same "
      "arguments: spec is DensitySpec.native()).");
}
