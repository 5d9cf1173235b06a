// The samplers on the GPU: the Philox generator and the Monte-Carlo sampler as kernels, from the same
// RF_HD headers as the CPU path (philox.h, dists.h), so that the GPU draws the CPU's samples bitwise
// (--fmad=false, as -ffp-contract=off on the host). Kernels and their launchers; no Python here.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "launchers.h"
#include "stream_buffer.cuh"
#include "reluflow/dists.h"
#include "reluflow/philox.h"

namespace reluflow::cuda {
namespace {

__global__ void philox_uniforms_kernel(uint64_t seed, uint32_t stream, uint32_t step, uint32_t first,
                                       int64_t n, int d, double* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n * d) return;
  const int64_t j = i / d;
  const int k = static_cast<int>(i % d);
  out[i] = philox_uniform_at(seed, stream, step, static_cast<uint32_t>(first + j), static_cast<uint32_t>(k));
}

// mc_nodes_cpu's loop body (cpp/src/cpu/sampling_cpu.cpp), one thread per value.
__global__ void mc_nodes_kernel(uint64_t seed, uint32_t step, int64_t n, InputDist dist, double* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int d = dist.dim;
  if (i >= n * d) return;
  const int64_t j = i / d;
  const int k = static_cast<int>(i % d);
  const double u = philox_uniform_at(seed, kStreamMonteCarlo, step, static_cast<uint32_t>(j), static_cast<uint32_t>(k));
  out[i] = input_dist_sample(dist, k, u);
}

// mc_nodes_cpu's loop body for the Gaussian, whose coordinates mix: one thread per node.
__global__ void mc_nodes_gaussian_kernel(uint64_t seed, uint32_t step, int64_t n, InputDist dist, double* out) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int d = dist.dim;
  if (j >= n) return;
  double* x = out + j * d;
  for (int k = 0; k < d; ++k)
    x[k] = philox_uniform_at(seed, kStreamMonteCarlo, step, static_cast<uint32_t>(j), static_cast<uint32_t>(k));
  input_dist_node(dist, x, x);
}

// Device memory of n doubles, freed on scope exit; optionally a copy of a host array.
struct DeviceBuffer {
  double* ptr = nullptr;
  explicit DeviceBuffer(int64_t n, const double* host = nullptr) {
    if (n <= 0) return;
    check(cudaMalloc(&ptr, n * sizeof(double)), "cudaMalloc");
    if (host) to_device(ptr, host, n * sizeof(double));
  }
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void to_host(double* host, int64_t n) const {
    check(cudaMemcpy(host, ptr, n * sizeof(double), cudaMemcpyDeviceToHost), "cudaMemcpy");
  }
};

constexpr int kThreads = 256;

unsigned blocks_for(int64_t total) { return static_cast<unsigned>((total + kThreads - 1) / kThreads); }

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

void philox_uniforms(uint64_t seed, uint32_t stream, uint32_t step, uint32_t first, int64_t n, int d, double* out) {
  if (n < 0 || d < 1) throw std::invalid_argument("n, d: expected n >= 0 and d >= 1");
  const int64_t total = n * d;
  if (total == 0) return;
  DeviceBuffer dev(total);
  philox_uniforms_kernel<<<blocks_for(total), kThreads>>>(seed, stream, step, first, n, d, dev.ptr);
  check(cudaGetLastError(), "philox_uniforms_kernel");
  dev.to_host(out, total);
}

DeviceInputDist::DeviceInputDist(const InputDist& host, const int64_t* sizes) : dist_(host) {
  const bool box = host.kind == kDistUniform, gauss = host.kind == kDistGaussian;
  const double* src[3] = {box ? host.box.low : gauss ? host.gauss.mean : host.poly.breaks,
                          box ? host.box.high : gauss ? host.gauss.chol : host.poly.anti,
                          box || gauss ? nullptr : host.poly.cum};
  for (int q = 0; q < 3; ++q) {
    if (!src[q] || sizes[q] <= 0) continue;
    check(cudaMalloc(&buf_[q], sizes[q] * sizeof(double)), "cudaMalloc");
    to_device(buf_[q], src[q], sizes[q] * sizeof(double));
  }
  if (box) {
    dist_.box.low = buf_[0];
    dist_.box.high = buf_[1];
  } else if (gauss) {
    dist_.gauss.mean = buf_[0];
    dist_.gauss.chol = buf_[1];
  } else {
    dist_.poly.breaks = buf_[0];
    dist_.poly.anti = buf_[1];
    dist_.poly.cum = buf_[2];
  }
}

DeviceInputDist::~DeviceInputDist() {
  for (double* b : buf_)
    if (b) cudaFree(b);
}

void mc_nodes_device(uint64_t seed, uint32_t step, int64_t n, const InputDist& dist, double* out, uintptr_t stream) {
  const int64_t total = n * dist.dim;
  if (total == 0) return;
  const auto st = reinterpret_cast<cudaStream_t>(stream);
  if (dist.kind == kDistGaussian) {   // coordinates mix (x = mean + L z): one thread per node
    mc_nodes_gaussian_kernel<<<blocks_for(n), kThreads, 0, st>>>(seed, step, n, dist, out);
    check(cudaGetLastError(), "mc_nodes_gaussian_kernel");
  } else {
    mc_nodes_kernel<<<blocks_for(total), kThreads, 0, st>>>(seed, step, n, dist, out);
    check(cudaGetLastError(), "mc_nodes_kernel");
  }
}

void mc_nodes(uint64_t seed, uint32_t step, int64_t n, const InputDist& dist_host, const int64_t* sizes, double* out) {
  if (n < 0 || n > (int64_t(1) << 32)) throw std::invalid_argument("n: expected a number of samples in [0, 2**32]");
  const int64_t total = n * dist_host.dim;
  if (total == 0) return;
  DeviceInputDist dist(dist_host, sizes);  // the same description, pointing at device copies of its arrays
  DeviceBuffer dev(total);
  mc_nodes_device(seed, step, n, dist.dist(), dev.ptr, 0);
  dev.to_host(out, total);
}

}  // namespace reluflow::cuda
