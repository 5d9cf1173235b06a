// Each bind_*.cpp file adds one group of functions to the `reluflow._core` module.
#pragma once
#include <pybind11/pybind11.h>

namespace reluflow {
void bind_sampling(pybind11::module_& m);  // bind_sampling.cpp: Philox, samplers
void bind_risk(pybind11::module_& m);      // bind_risk.cpp: fused risk/gradient, realization
void bind_sweep(pybind11::module_& m);     // bind_sweep.cpp: shallow 1-D sweeps
void bind_flow(pybind11::module_& m);      // bind_flow.cpp: integrator loops (GD/SGD, Euler, Heun, RK4)
void bind_quad1d(pybind11::module_& m);    // bind_quad1d.cpp: exact 1-D quadrature of deep nets
void bind_dopri5(pybind11::module_& m);    // bind_dopri5.cpp: adaptive Dormand–Prince 5(4) loop
void bind_harness(pybind11::module_& m);   // bind_harness.cpp: test-only host run of the CUDA dense grid
void bind_hvp(pybind11::module_& m);       // bind_hvp.cpp: Hessian-vector products
}  // namespace reluflow
