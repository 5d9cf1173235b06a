// The progress hook of a long-running loop, shared by the CPU module (bind_field.h take_progress) and
// the CUDA module (cuda/bindings/module.cpp), so that both answer Ctrl-C alike.
#pragma once
#include <pybind11/pybind11.h>

#include <functional>
#include <utility>

namespace reluflow {

namespace py = pybind11;

// progress(done) of a loop, called with the GIL released: the hook takes the GIL, runs the pending
// signal handlers (PyErr_CheckSignals), then calls progress(done) unless progress is None. It returns
// true when Ctrl-C arrived (a pending SIGINT, or a KeyboardInterrupt raised by the callback): the loop
// then stops and returns what it has, so that the run can be resumed; any other exception propagates.
template <class Done>
std::function<bool(Done)> progress_hook(py::object progress) {
  return [progress = std::move(progress)](Done done) -> bool {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) {
      if (!PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) throw py::error_already_set();
      PyErr_Clear();
      return true;
    }
    if (!progress.is_none()) {
      try {
        progress(done);
      } catch (py::error_already_set& e) {
        if (!e.matches(PyExc_KeyboardInterrupt)) throw;
        return true;
      }
    }
    return false;
  };
}

}  // namespace reluflow
