// reluflow._cuda: the CUDA extension, built only where nvcc is found. For now it exposes the
// device count, the Philox generator and the Monte-Carlo sampler run as kernels, from the same
// RF_HD headers as the CPU path (philox.h, dists.h), so that the GPU draws the CPU's samples bitwise
// (--fmad=false, as -ffp-contract=off on the host).
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "bind_util.h"
#include "reluflow/dists.h"
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

// mc_nodes_cpu's loop body (cpp/src/sampling_cpu.cpp), one thread per value.
__global__ void mc_nodes_kernel(uint64_t seed, uint32_t step, int64_t n, reluflow::InputDist dist, double* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int d = dist.dim;
  if (i >= n * d) return;
  const int64_t j = i / d;
  const int k = static_cast<int>(i % d);
  const double u = reluflow::philox_uniform_at(seed, reluflow::kStreamMonteCarlo, step, static_cast<uint32_t>(j),
                                               static_cast<uint32_t>(k));
  out[i] = reluflow::input_dist_sample(dist, k, u);
}

// A device copy of a host array, freed on scope exit.
struct DeviceArray {
  double* ptr = nullptr;
  DeviceArray(const double* host, int64_t n) {
    if (n <= 0) return;
    check(cudaMalloc(&ptr, n * sizeof(double)), "cudaMalloc");
    check(cudaMemcpy(ptr, host, n * sizeof(double), cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  ~DeviceArray() {
    if (ptr) cudaFree(ptr);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
};

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
  m.def(
      "mc_nodes",
      [](uint64_t seed, uint32_t step, int64_t n, const std::string& kind, py::object low, py::object high,
         py::object breaks, py::object anti, py::object cum) {
        if (n < 0 || n > (int64_t(1) << 32))
          throw std::invalid_argument("n: expected a number of samples in [0, 2**32]");
        reluflow::DistArgs args = reluflow::parse_dist(kind, low, high, breaks, anti, cum);
        reluflow::InputDist dist = args.dist;  // host view; its arrays are copied to the device below
        const int d = dist.dim;
        py::array_t<double> out({n, static_cast<int64_t>(d)});
        const int64_t total = n * d;
        if (total == 0) return out;
        DeviceArray a(args.a ? args.a.data() : nullptr, args.a ? args.a.size() : 0);
        DeviceArray b(args.b ? args.b.data() : nullptr, args.b ? args.b.size() : 0);
        DeviceArray c(args.c ? args.c.data() : nullptr, args.c ? args.c.size() : 0);
        if (dist.kind == reluflow::kDistUniform) {
          dist.box.low = a.ptr;
          dist.box.high = b.ptr;
        } else {
          dist.poly.breaks = a.ptr;
          dist.poly.anti = b.ptr;
          dist.poly.cum = c.ptr;
        }
        double* dev = nullptr;
        check(cudaMalloc(&dev, total * sizeof(double)), "cudaMalloc");
        const int threads = 256;
        const int64_t blocks = (total + threads - 1) / threads;
        mc_nodes_kernel<<<static_cast<unsigned>(blocks), threads>>>(seed, step, n, dist, dev);
        check(cudaGetLastError(), "mc_nodes_kernel");
        check(cudaMemcpy(out.mutable_data(), dev, total * sizeof(double), cudaMemcpyDeviceToHost), "cudaMemcpy");
        cudaFree(dev);
        return out;
      },
      py::arg("seed"), py::arg("step"), py::arg("n"), py::arg("kind"), py::arg("low") = py::none(),
      py::arg("high") = py::none(), py::arg("breaks") = py::none(), py::arg("anti") = py::none(),
      py::arg("cum") = py::none(),
      "Monte-Carlo nodes (n, d) of step on the GPU, bitwise those of reluflow._core.mc_nodes (same "
      "arguments).");
}
