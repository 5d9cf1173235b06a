// Bindings of the random-number generators and samplers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "bindings/bindings.h"
#include "cpu/kernels_cpu.h"
#include "reluflow/dists.h"
#include "reluflow/sobol_directions.h"
#include "bindings/bind_spec.h"
#include "bindings/bind_util.h"
#include "cpu/sampling_cpu.h"

namespace py = pybind11;

namespace reluflow {

using u32_array = py::array_t<uint32_t, py::array::c_style | py::array::forcecast>;

namespace {

constexpr int64_t kMaxPoints = 4294967295LL;  // 2^32 - 1: point indices are 32-bit

void check_points(int64_t n) {
  if (n < 0 || n > kMaxPoints)
    throw py::value_error("n: expected a number of points in [0, 2**32 - 1], got " + std::to_string(n));
}

void check_sobol_dim(int d) {
  if (d < 1) throw py::value_error("d: expected a dimension d >= 1, got " + std::to_string(d));
  if (d > kSobolMaxDim)
    throw py::value_error("d: the Sobol generator has direction numbers for at most " +
                          std::to_string(kSobolMaxDim) + " dimensions, got d=" + std::to_string(d) +
                          "; use MonteCarlo for higher-dimensional inputs");
}

}  // namespace

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

  // ---- Sobol -------------------------------------------------------------------------------
  m.attr("sobol_max_dim") = kSobolMaxDim;

  m.def(
      "sobol_uniforms",
      [](int64_t n, int d, uint64_t seed) {
        check_points(n);
        check_sobol_dim(d);
        py::array_t<double> out({n, static_cast<int64_t>(d)});
        {
          py::gil_scoped_release release;
          sobol_uniforms_cpu(n, d, seed, out.mutable_data());
        }
        return out;
      },
      py::arg("n"), py::arg("d"), py::arg("seed"),
      "Scrambled Sobol points 0..n-1 (natural order) as uniforms (n, d) in (0, 1), float64; "
      "bitwise equal to reluflow._sobol.sobol_uniforms.");

  m.def(
      "sobol_bits",
      [](int64_t n, int d, uint64_t seed, bool scramble) {
        check_points(n);
        check_sobol_dim(d);
        py::array_t<uint32_t> out({n, static_cast<int64_t>(d)});
        {
          py::gil_scoped_release release;
          sobol_bits_cpu(n, d, seed, scramble, out.mutable_data());
        }
        return out;
      },
      py::arg("n"), py::arg("d"), py::arg("seed"), py::arg("scramble") = true,
      "Sobol points 0..n-1 as 32-digit words (n, d) uint32; scramble=False: unscrambled (seed unused).");

  m.def(
      "sobol_scrambled_directions",
      [](int d, uint64_t seed) {
        check_sobol_dim(d);
        py::array_t<uint32_t> dirs({static_cast<int64_t>(d), static_cast<int64_t>(32)});
        py::array_t<uint32_t> shifts(static_cast<py::ssize_t>(d));
        sobol_prepare(seed, d, true, dirs.mutable_data(), shifts.mutable_data());
        return py::make_tuple(dirs, shifts);
      },
      py::arg("d"), py::arg("seed"),
      "(scrambled direction numbers (d, 32) uint32, digital shifts (d,) uint32) of seed.");

  // ---- input samplers ------------------------------------------------------------------------
  // The distribution is a DensitySpec.native() dict (bind_spec.h: density_kind, low/high or
  // density_breaks/density_anti/density_cum), the one encoding every entry point takes.
  m.def(
      "mc_nodes",
      [](uint64_t seed, uint32_t step, int64_t n, py::object spec) {
        if (n < 0 || n > kMaxPoints + 1)
          throw py::value_error("n: expected a number of samples in [0, 2**32], got " + std::to_string(n));
        const ProblemArgs prob = parse_problem_spec(Layout{}, spec, kNeedInput);
        const InputDist& dist = prob.spec.input;
        py::array_t<double> out({n, static_cast<int64_t>(dist.dim)});
        {
          py::gil_scoped_release release;
          mc_nodes_cpu(seed, step, n, dist, out.mutable_data());
        }
        return out;
      },
      py::arg("seed"), py::arg("step"), py::arg("n"), py::kw_only(), py::arg("spec"),
      "Monte-Carlo nodes (n, d) of step: Philox uniforms (stream 2) through the distribution of spec "
      "(DensitySpec.native() or ProblemSpec.native(): uniform low, high (d,), or piecewise polynomial "
      "density_breaks (m+1,), density_anti (m, deg+1), density_cum (m+1,) as in dists.PiecewisePolynomial).");

  m.def(
      "dist_from_uniform",
      [](f64_array u, py::object spec) {
        const ProblemArgs prob = parse_problem_spec(Layout{}, spec, kNeedInput);
        const InputDist& dist = prob.spec.input;
        if (u.ndim() != 2 || u.shape(1) != dist.dim)
          throw py::value_error("u: expected an (n, " + std::to_string(dist.dim) + ") array of uniforms");
        const int64_t n = u.shape(0);
        py::array_t<double> out({n, static_cast<int64_t>(dist.dim)});
        {
          py::gil_scoped_release release;
          dist_from_uniform_cpu(u.data(), n, dist, out.mutable_data());
        }
        return out;
      },
      py::arg("u"), py::kw_only(), py::arg("spec"),
      "The distribution's nodes (n, d) of given uniforms u (n, d) (C++ twin of "
      "Distribution.from_uniform; spec as mc_nodes).");

  m.def(
      "qmc_nodes",
      [](int64_t n, uint64_t seed, py::object spec) {
        check_points(n);
        const ProblemArgs prob = parse_problem_spec(Layout{}, spec, kNeedInput);
        const InputDist& dist = prob.spec.input;
        check_sobol_dim(dist.dim);
        py::array_t<double> out({n, static_cast<int64_t>(dist.dim)});
        {
          py::gil_scoped_release release;
          qmc_nodes_cpu(n, seed, dist, out.mutable_data());
        }
        return out;
      },
      py::arg("n"), py::arg("seed"), py::kw_only(), py::arg("spec"),
      "Quasi-Monte-Carlo nodes (n, d): scrambled Sobol uniforms through the distribution of spec (as "
      "mc_nodes).");
}

}  // namespace reluflow
