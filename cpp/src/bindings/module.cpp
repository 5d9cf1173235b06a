// pybind11 bindings of the CPU extension `reluflow._core`; the loops live in kernels_*.cpp.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "cpu/kernels_cpu.h"
#include "cpu/simd_dispatch.h"

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
  reluflow::bind_hvp(m);

  // RELUFLOW_SIMD at import: a bad value fails the import with a message naming the variable
  reluflow::set_simd_path_from_env();
  m.def("simd_path", &reluflow::simd_path, "The SIMD path the risk/gradient kernels run: scalar, avx2 or avx512.");
  m.def("simd_paths_compiled", &reluflow::simd_paths_compiled, "SIMD paths compiled into this build.");
  m.def("simd_paths_supported", &reluflow::simd_paths_supported,
        "SIMD paths compiled into this build that this CPU runs (narrow to wide).");
  m.def("set_simd_path", &reluflow::set_simd_path, py::arg("name"),
        "Run the kernels on path `name` ('auto': the widest supported; for tests and benchmarks). "
        "Process-wide; ValueError when unknown, not compiled or not supported by this CPU.");
  m.def("max_threads", &reluflow::max_threads, "OpenMP threads available (1 without OpenMP).");
#ifdef RELUFLOW_NATIVE_BUILD
  m.attr("native_build") = true;  // -march=native: runs on the building machine only
#else
  m.attr("native_build") = false;
#endif
#ifdef RELUFLOW_OPENMP
  m.attr("has_openmp") = true;
#else
  m.attr("has_openmp") = false;
#endif
}
