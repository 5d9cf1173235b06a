// What the device loops (gd_loop.cu: gradient descent and the fixed-step flows; dopri5_loop.cu) share:
// error checks, owning device / pinned buffers, the block tree of the per-network kernels, the normalized
// flow's tangent projection, the problem's target arrays copied to the device once per run, the
// evaluation of the running networks only (RunningSet), and the sizing of the blocks of iterations
// between two host synchronizations.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "launchers.h"
#include "stream_buffer.cuh"
#include "reluflow/gd_step.h"
#include "reluflow/normalized_step.h"
#include "reluflow/risk_grad_grid.h"
#include "reluflow/running_rows.h"

namespace reluflow::cuda::loop {

using cuda::check;      // stream_buffer.cuh's
using cuda::to_device;

// A block's tree over its gd::kThreads threads' rows of `width` doubles in shared memory (fixed order).
__device__ __forceinline__ void block_tree(double* sh, int width) {
  __syncthreads();
  for (int s = gd::kThreads / 2; s > 0; s >>= 1) {
    grid::tree_step(sh, width, threadIdx.x, s);
    __syncthreads();
  }
}

struct DeviceMem {
  void* ptr = nullptr;
  explicit DeviceMem(size_t bytes) {
    if (bytes) check(cudaMalloc(&ptr, bytes), "cudaMalloc");
  }
  ~DeviceMem() {
    if (ptr) cudaFree(ptr);
  }
  DeviceMem(const DeviceMem&) = delete;
  DeviceMem& operator=(const DeviceMem&) = delete;
  template <class U>
  U* as() const {
    return static_cast<U*>(ptr);
  }
};

struct PinnedMem {
  void* ptr = nullptr;
  explicit PinnedMem(size_t bytes) {
    if (bytes) check(cudaMallocHost(&ptr, bytes), "cudaMallocHost");
  }
  ~PinnedMem() {
    if (ptr) cudaFreeHost(ptr);
  }
  PinnedMem(const PinnedMem&) = delete;
  PinnedMem& operator=(const PinnedMem&) = delete;
};

template <class U>
void upload(U* dev, const std::vector<U>& host) {
  to_device(dev, host.data(), host.size() * sizeof(U));
}

template <class U>
void download(U* host, const void* dev, int64_t n) {
  if (n > 0) check(cudaMemcpy(host, dev, size_t(n) * sizeof(U), cudaMemcpyDeviceToHost), "cudaMemcpy");
}

// A host array of n doubles copied to the device (null for null / empty).
struct DeviceArray : DeviceMem {
  DeviceArray(const double* host, int64_t n) : DeviceMem(host && n > 0 ? size_t(n) * 8 : 0) {
    if (ptr) to_device(ptr, host, size_t(n) * 8);
  }
};

inline size_t round8(size_t b) { return (b + 7) / 8 * 8; }

// The problem with its target / teacher arrays on the device, once per run (the dense kernels then
// make no copy per call). kernel_target: the target is evaluated in the kernel (no fixed y, or
// resampling).
struct DeviceProblem {
  DenseDevice p;
  DeviceArray A, b, br, co, tt;
  DeviceProblem(const DenseDevice& prob, bool kernel_target)
      : p(prob),
        A(is(prob, kernel_target, kTargetAffine) ? prob.target.A : nullptr, int64_t(prob.target.out) * prob.target.dim),
        b(is(prob, kernel_target, kTargetAffine) ? prob.target.b : nullptr, prob.target.out),
        br(is(prob, kernel_target, kTargetPiecewisePolynomial) ? prob.target.breaks : nullptr, prob.target.pieces + 1),
        co(is(prob, kernel_target, kTargetPiecewisePolynomial) ? prob.target.coeffs : nullptr,
           int64_t(prob.target.pieces) * prob.target.ncoef * prob.target.out),
        tt(kernel_target ? prob.teacher.theta : nullptr, prob.teacher.lay.num_params) {
    p.target.A = A.as<double>();
    p.target.b = b.as<double>();
    p.target.breaks = br.as<double>();
    p.target.coeffs = co.as<double>();
    p.teacher.theta = tt.as<double>();
    p.target_on_device = true;
  }

 private:
  static bool is(const DenseDevice& prob, bool kernel_target, int kind) {
    return kernel_target && !prob.teacher.theta && prob.target.kind == kind;
  }
};

// ---- the normalized flow's tangent projection (one thread per (network, hidden neuron)) -------------

constexpr int kProjectThreads = 128;

template <class T>
__global__ void __launch_bounds__(kProjectThreads) project_kernel(Layout lay, int64_t K, int64_t H, const T* theta,
                                                                  double* grad) {
  const int64_t n = K * H;
  for (int64_t e = int64_t(blockIdx.x) * kProjectThreads + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * kProjectThreads)
    nm::project_entry(lay, H, theta, grad, e);
}

// After a dense evaluation at theta (K, P): the raw float64 gradient (K, P) projected in place on the
// tangent space at theta (H hidden neurons per network; nothing when K H = 0).
template <class T>
void project(const Layout& lay, int64_t K, int64_t H, const T* theta, double* grad, cudaStream_t st) {
  if (K * H == 0) return;
  const unsigned blocks = static_cast<unsigned>(
      std::max<int64_t>(1, std::min<int64_t>((K * H + kProjectThreads - 1) / kProjectThreads, int64_t(1) << 20)));
  project_kernel<T><<<blocks, kProjectThreads, 0, st>>>(lay, K, H, theta, grad);
  check(cudaGetLastError(), "project_kernel");
}

// ---- the running networks only (reluflow/running_rows.h): gathered rows, results scattered back ------

constexpr int kRowThreads = 256;

inline unsigned row_blocks(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + kRowThreads - 1) / kRowThreads,
                                                                      int64_t(1) << 20)));
}

template <class T>
__global__ void __launch_bounds__(kRowThreads)
    gather_rows_kernel(const int64_t* evaluated, int64_t n, int64_t P, const T* rows, T* compact) {
  for (int64_t e = int64_t(blockIdx.x) * kRowThreads + threadIdx.x; e < n * P; e += int64_t(gridDim.x) * kRowThreads)
    rows::gather_entry(evaluated, P, rows, compact, e);
}

template <class T>
__global__ void __launch_bounds__(kRowThreads)
    scatter_rows_kernel(const int64_t* evaluated, int64_t n, int64_t P, const T* compact, T* rows) {
  for (int64_t e = int64_t(blockIdx.x) * kRowThreads + threadIdx.x; e < n * P; e += int64_t(gridDim.x) * kRowThreads)
    rows::scatter_entry(evaluated, P, compact, rows, e);
}

// The networks a device loop evaluates: all K, or, after a compaction at a block boundary
// (rows::compact_now), the running ones listed on the device. evaluate() runs the dense kernels of
// `prob` at theta rows (K, P) into risk (K,) and grad (K, P): directly, or on the listed rows gathered
// into a compact array, the results scattered back (the other rows keep stale values, which the loops
// do not read). The compact buffers are allocated at the first compaction (later ones are smaller).
template <class T>
class RunningSet {
 public:
  RunningSet(int64_t K, int64_t P) : K_(K), P_(P), n_(K), list_(size_t(K) * 8) {}

  // At a block boundary, with the stream idle: running (K,) host flags (nonzero: still running).
  // Returns whether the set shrank.
  bool update(const uint8_t* running) {
    std::vector<int64_t> list;  // the running networks only shrink (done / frozen flags never clear)
    for (int64_t k = 0; k < K_; ++k)
      if (running[k]) list.push_back(k);
    if (!rows::compact_now(int64_t(list.size()), n_)) return false;
    if (!rows_) {
      rows_ = std::make_unique<DeviceMem>(list.size() * size_t(P_) * sizeof(T));
      grad_ = std::make_unique<DeviceMem>(list.size() * size_t(P_) * 8);
      risk_ = std::make_unique<DeviceMem>(list.size() * 8);
    }
    upload(list_.as<int64_t>(), list);
    n_ = int64_t(list.size());
    return true;
  }

  void evaluate(DenseDevice prob, DensePath path, const T* theta, double* risk, double* grad, cudaStream_t st) {
    const uintptr_t stream = reinterpret_cast<uintptr_t>(st);
    prob.theta = theta;
    if (n_ == K_) {
      risk_and_grad_dense(prob, path, risk, grad, stream);
      return;
    }
    const int64_t* list = list_.as<int64_t>();
    gather_rows_kernel<T><<<row_blocks(n_ * P_), kRowThreads, 0, st>>>(list, n_, P_, theta, rows_->as<T>());
    check(cudaGetLastError(), "gather_rows_kernel");
    prob.theta = rows_->ptr;
    prob.K = n_;
    risk_and_grad_dense(prob, path, risk_->as<double>(), grad_->as<double>(), stream);
    scatter_rows_kernel<double><<<row_blocks(n_ * P_), kRowThreads, 0, st>>>(list, n_, P_, grad_->as<double>(), grad);
    check(cudaGetLastError(), "scatter_rows_kernel");
    scatter_rows_kernel<double><<<row_blocks(n_), kRowThreads, 0, st>>>(list, n_, 1, risk_->as<double>(), risk);
    check(cudaGetLastError(), "scatter_rows_kernel");
  }

 private:
  int64_t K_, P_, n_;
  DeviceMem list_;
  std::unique_ptr<DeviceMem> rows_, grad_, risk_;
};

constexpr double kBlockSeconds = 0.25;  // wall time between two looks of the host

// Iterations of the next block: about kBlockSeconds of work at the last block's pace, growing at most
// 4x at a time (the results never depend on where blocks end).
inline int64_t next_block(double seconds, int64_t iters) {
  const double scale = seconds > 0 ? std::min(4.0, kBlockSeconds / seconds) : 4.0;
  return std::max<int64_t>(1, static_cast<int64_t>(scale * double(iters)));
}

}  // namespace reluflow::cuda::loop
