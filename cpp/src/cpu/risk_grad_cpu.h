// Fused CPU risk and generalized gradient: the driver (risk_grad_cpu.cpp) and the tile kernels
// (risk_grad_shallow.cpp: SIMD [d, H, out]; risk_grad_deep.cpp: blocked SIMD for any depth;
// risk_grad_cpu.cpp: the scalar per-node path of net.h).
//
// Parallel structure (deterministic): the N nodes are cut into tiles of `tile` nodes; the tiles of one
// network are grouped into chunks of consecutive tiles, the grouping depending only on (N, K, tile),
// never on the thread count. OpenMP runs over (network, chunk) work items; each item runs its tiles in
// order (one fused pass per tile: forward, residual, backward, accumulation in the compute dtype over
// the tile, then added into float64 partial sums of the chunk). The chunk partials of a network are
// then summed in chunk order. The results are bitwise the same for any number of threads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "reluflow/layout.h"

namespace reluflow {

enum class RGKernel { Auto, Shallow, Deep, Scalar };

struct RGProblem {
  Layout lay;
  int64_t K = 0;              // networks
  int64_t N = 0;              // nodes
  bool f32 = false;           // theta is float32 (compute in float32 inside a tile)
  const void* theta = nullptr;  // (K, P) float or double, C order
  const double* x = nullptr;  // (N, d)
  const double* w = nullptr;  // (N,)    (risk_and_grad only)
  const double* y = nullptr;  // (N, out) (risk_and_grad only)
  // (N, l_1 + ... + l_{L-1}) or nullptr: hidden pre-activations set to exactly 0 at each node
  // (net::forward_node's zero; the 1-D quadrature of degenerate nets). Only the scalar kernel takes it.
  const uint8_t* zero = nullptr;
  int tile = 0;               // nodes per tile; 0: the kernel's default
  RGKernel kernel = RGKernel::Auto;
};

// risk (K,) and, when grad != nullptr, grad (K, P), both float64. The GIL must be released by the caller.
void risk_and_grad_cpu(const RGProblem& p, double* risk, double* grad);
// out (K, N, out) float64.
void realization_cpu(const RGProblem& p, double* out);
// Whether the specialized SIMD shallow kernel handles this architecture ([d, H, out], d <= 8, out <= 3).
bool shallow_kernel_supported(const Layout& lay);
// Which kernel `kernel` resolves to for this problem: "shallow", "deep" or "scalar".
std::string resolve_kernel_name(const RGProblem& p);

namespace detail {

// 64-byte aligned storage for the SIMD tile buffers.
template <class T>
struct AlignedAlloc {
  using value_type = T;
  AlignedAlloc() = default;
  template <class U>
  AlignedAlloc(const AlignedAlloc<U>&) {}
  T* allocate(size_t n) {
    void* ptr = nullptr;
    if (posix_memalign(&ptr, 64, n ? n * sizeof(T) : 64) != 0) throw std::bad_alloc();
    return static_cast<T*>(ptr);
  }
  void deallocate(T* ptr, size_t) { std::free(ptr); }
  template <class U>
  bool operator==(const AlignedAlloc<U>&) const { return true; }
  template <class U>
  bool operator!=(const AlignedAlloc<U>&) const { return false; }
};
template <class T>
using avec = std::vector<T, AlignedAlloc<T>>;

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Per-thread scratch of a tile kernel (tile buffers, the packed parameters of one network).
struct Workspace {
  virtual ~Workspace() = default;
};

// One way of computing a tile; the driver owns the parallel loop and the reduction.
class TileKernel {
 public:
  virtual ~TileKernel() = default;
  int tile = 256;              // nodes per tile
  int64_t partial_size = 1;    // doubles per chunk partial: [0] = risk, then kernel-specific sums
  virtual std::unique_ptr<Workspace> workspace() const = 0;
  // Nodes [j0, j1) of network k, tile by tile: adds the risk into partial[0] and, with want_grad,
  // the kernel's sums into partial[1 .. partial_size).
  virtual void run(Workspace& ws, int64_t k, int64_t j0, int64_t j1, bool want_grad, double* partial) const = 0;
  // The gradient (P values) of network k from its reduced partial sums.
  virtual void finalize(int64_t k, const double* partial, double* grad) const = 0;
  // N(x_j) for nodes [j0, j1) of network k into out (rows j0..j1-1 of the (N, out) slice of network k).
  virtual void realize(Workspace& ws, int64_t k, int64_t j0, int64_t j1, double* out) const = 0;
};

// The SIMD kernels, compiled once per instruction set (risk_grad_shallow.cpp, risk_grad_deep.cpp with
// RELUFLOW_SIMD_ISA set by CMake; simd_dispatch.h says which ones this build has and which one runs).
#define RELUFLOW_DECLARE_SIMD_KERNELS(ns)                                \
  namespace ns {                                                         \
  template <class T>                                                     \
  std::unique_ptr<TileKernel> make_shallow_kernel(const RGProblem& p);   \
  template <class T>                                                     \
  std::unique_ptr<TileKernel> make_deep_kernel(const RGProblem& p);      \
  }
RELUFLOW_DECLARE_SIMD_KERNELS(isa_scalar)
RELUFLOW_DECLARE_SIMD_KERNELS(isa_avx2)
RELUFLOW_DECLARE_SIMD_KERNELS(isa_avx512)
#undef RELUFLOW_DECLARE_SIMD_KERNELS

}  // namespace detail
}  // namespace reluflow
