// reluflow._cuda: the CUDA extension, built only where nvcc is found. For now it exposes the
// device count and the Philox generator run as a kernel, from the same header as the CPU path.
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "reluflow/philox.h"

namespace py = pybind11;

namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

__global__ void philox_uniforms_kernel(uint64_t seed, uint32_t stream, uint32_t step, uint32_t first,
                                       int64_t n, int d, double* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n * d) return;
  const int64_t j = i / d;
  const int k = static_cast<int>(i % d);
  out[i] = reluflow::philox_uniform_at(seed, stream, step, static_cast<uint32_t>(first + j),
                                       static_cast<uint32_t>(k));
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "reluflow CUDA kernels";
  m.def("device_count", &device_count, "Number of CUDA devices visible (0 when no driver/GPU).");
  m.def(
      "philox_uniforms",
      [](uint64_t seed, uint32_t stream, uint32_t step, uint32_t first, int64_t n, int d) {
        if (n < 0 || d < 1) throw std::invalid_argument("n, d: expected n >= 0 and d >= 1");
        py::array_t<double> out({n, static_cast<int64_t>(d)});
        const int64_t total = n * d;
        if (total == 0) return out;
        double* dev = nullptr;
        check(cudaMalloc(&dev, total * sizeof(double)), "cudaMalloc");
        const int threads = 256;
        const int64_t blocks = (total + threads - 1) / threads;
        philox_uniforms_kernel<<<static_cast<unsigned>(blocks), threads>>>(seed, stream, step, first, n, d, dev);
        check(cudaGetLastError(), "philox_uniforms_kernel");
        check(cudaMemcpy(out.mutable_data(), dev, total * sizeof(double), cudaMemcpyDeviceToHost), "cudaMemcpy");
        cudaFree(dev);
        return out;
      },
      py::arg("seed"), py::arg("stream"), py::arg("step"), py::arg("first"), py::arg("n"), py::arg("d"));
}
