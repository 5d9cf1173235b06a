// pybind11 bindings of the CPU extension `reluflow._core`; the loops live in kernels_*.cpp.
#include <pybind11/pybind11.h>

#include "bindings/bindings.h"
#include "cpu/kernels_cpu.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "reluflow CPU kernels (C++/OpenMP/SIMD)";

  reluflow::bind_sampling(m);
  reluflow::bind_risk(m);
  reluflow::bind_sweep(m);
  reluflow::bind_flow(m);
  reluflow::bind_quad1d(m);
  reluflow::bind_dopri5(m);
  reluflow::bind_harness(m);

  m.def("simd_path", &reluflow::simd_path, "SIMD instruction set the kernels were compiled for.");
  m.def("max_threads", &reluflow::max_threads, "OpenMP threads available (1 without OpenMP).");
#ifdef RELUFLOW_OPENMP
  m.attr("has_openmp") = true;
#else
  m.attr("has_openmp") = false;
#endif
}
