// What the one-call launchers (risk_grad.cu, sweep_points.cu) share: the error check, stream-ordered
// scratch and the check of a grid's size.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace reluflow::cuda {

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// Stream-ordered scratch (cudaMallocAsync / cudaFreeAsync on the caller's stream): freed when the
// kernels queued before the free are done, with no synchronization of the host.
struct StreamBuffer {
  void* ptr = nullptr;
  cudaStream_t stream;
  StreamBuffer(size_t bytes, cudaStream_t s) : stream(s) {
    if (bytes) check(cudaMallocAsync(&ptr, bytes, s), "cudaMallocAsync");
  }
  ~StreamBuffer() {
    if (ptr) cudaFreeAsync(ptr, stream);
  }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  template <class U>
  U* as() const {
    return static_cast<U*>(ptr);
  }
};

// A host array of n values (doubles, offsets) copied to stream-ordered device memory (null for null /
// empty). From pageable memory: the host array has been read when cudaMemcpyAsync returns.
struct DeviceCopy : StreamBuffer {
  template <class U>
  DeviceCopy(const U* host, int64_t n, cudaStream_t s) : StreamBuffer(host && n > 0 ? size_t(n) * sizeof(U) : 0, s) {
    if (ptr) check(cudaMemcpyAsync(ptr, host, size_t(n) * sizeof(U), cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
  }
};

// Host -> device, complete when it returns. cudaMemcpy from pageable memory may return once the data is
// staged, before the DMA lands, and the kernels that read it run on the caller's stream, which need not
// wait for the legacy default stream's copy (a non-blocking CuPy or PyTorch stream does not): hence the
// synchronization of the legacy stream. For set-up copies (once per run, or at a block boundary).
inline void to_device(void* dev, const void* host, size_t bytes) {
  if (bytes == 0) return;
  check(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
  check(cudaStreamSynchronize(cudaStreamLegacy), "cudaStreamSynchronize");
}

// A grid dimension of n blocks, checked.
inline unsigned grid_dim(int64_t n, const char* what) {
  if (n < 1 || n > 0x7fffffff) throw std::invalid_argument(std::string(what) + ": grid too large");
  return static_cast<unsigned>(n);
}

}  // namespace reluflow::cuda
