// Each bind_*.cpp file adds one group of functions to the `reluflow._core` module.
#pragma once
#include <pybind11/pybind11.h>

namespace reluflow {
void bind_sampling(pybind11::module_& m);  // bind_sampling.cpp: Philox, samplers
}  // namespace reluflow
