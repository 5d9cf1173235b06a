// Driver of the fused CPU risk/gradient (work items, fixed-order reduction) and the scalar per-node
// kernel built on net.h. See risk_grad_cpu.h for the parallel structure.
#include "cpu/risk_grad_cpu.h"

#include <algorithm>
#include <exception>
#include <stdexcept>
#include <vector>

#include "cpu/parallel_policy.h"
#include "cpu/simd_dispatch.h"
#include "reluflow/net.h"
#ifdef RELUFLOW_OPENMP
#include <omp.h>
#endif

namespace reluflow {
namespace detail {
namespace {

// ---- the scalar path: one node at a time through net.h --------------------------------------------
template <class T>
class ScalarKernel final : public TileKernel {
 public:
  explicit ScalarKernel(const RGProblem& p) : p_(p) {
    tile = p.tile > 0 ? p.tile : 64;
    partial_size = 1 + p.lay.num_params;
    hidden_ = net::num_activations(p.lay) - p.lay.widths[p.lay.num_layers];
  }

  // The zero flags of node j (RGProblem::zero), or nullptr.
  const uint8_t* zero_of(int64_t j) const { return p_.zero != nullptr ? p_.zero + j * hidden_ : nullptr; }

  struct Ws : Workspace {
    std::vector<T> z, da, db, grad, x;
  };

  std::unique_ptr<Workspace> workspace() const override {
    auto ws = std::make_unique<Ws>();
    const Layout& lay = p_.lay;
    ws->z.resize(static_cast<size_t>(net::num_activations(lay)));
    ws->da.resize(net::max_width(lay));
    ws->db.resize(net::max_width(lay));
    ws->grad.resize(static_cast<size_t>(lay.num_params));
    ws->x.resize(lay.widths[0]);
    return ws;
  }

  void run(Workspace& wsb, int64_t k, int64_t j0, int64_t j1, bool want_grad, double* partial) const override {
    Ws& ws = static_cast<Ws&>(wsb);
    const Layout& lay = p_.lay;
    const int d = lay.widths[0], out = lay.widths[lay.num_layers];
    const int64_t P = lay.num_params;
    const T* th = static_cast<const T*>(p_.theta) + k * P;
    const T* n_out = ws.z.data() + (ws.z.size() - out);
    T g[kMaxOut];
    std::vector<T> gbuf;
    T* gp = g;
    if (out > kMaxOut) {
      gbuf.resize(out);
      gp = gbuf.data();
    }
    for (int64_t t0 = j0; t0 < j1; t0 += tile) {
      const int64_t t1 = std::min(j1, t0 + tile);
      double risk = 0.0;
      if (want_grad) std::fill(ws.grad.begin(), ws.grad.end(), T(0));
      for (int64_t j = t0; j < t1; ++j) {
        for (int c = 0; c < d; ++c) ws.x[c] = static_cast<T>(p_.x[j * d + c]);
        net::forward_node(lay, th, ws.x.data(), ws.z.data(), zero_of(j));
        risk += net::node_loss(out, n_out, p_.y + j * out, p_.w[j], gp);
        if (want_grad)
          net::backward_node(lay, th, ws.x.data(), ws.z.data(), gp, ws.da.data(), ws.db.data(), ws.grad.data());
      }
      partial[0] += risk;
      if (want_grad)
        for (int64_t q = 0; q < P; ++q) partial[1 + q] += static_cast<double>(ws.grad[q]);
    }
  }

  void finalize(int64_t, const double* partial, double* grad) const override {
    std::copy(partial + 1, partial + 1 + p_.lay.num_params, grad);
  }

  void realize(Workspace& wsb, int64_t k, int64_t j0, int64_t j1, double* out_k) const override {
    Ws& ws = static_cast<Ws&>(wsb);
    const Layout& lay = p_.lay;
    const int d = lay.widths[0], out = lay.widths[lay.num_layers];
    const T* th = static_cast<const T*>(p_.theta) + k * lay.num_params;
    const T* n_out = ws.z.data() + (ws.z.size() - out);
    for (int64_t j = j0; j < j1; ++j) {
      for (int c = 0; c < d; ++c) ws.x[c] = static_cast<T>(p_.x[j * d + c]);
      net::forward_node(lay, th, ws.x.data(), ws.z.data(), zero_of(j));
      for (int o = 0; o < out; ++o) out_k[j * out + o] = static_cast<double>(n_out[o]);
    }
  }

 private:
  static constexpr int kMaxOut = 16;
  RGProblem p_;
  int64_t hidden_ = 0;
};

RGKernel resolve(const RGProblem& p) {
  if (p.kernel != RGKernel::Auto) return p.kernel;
  if (p.zero != nullptr) return RGKernel::Scalar;  // rare (degenerate nets): the per-node path takes the flags
  return shallow_kernel_supported(p.lay) ? RGKernel::Shallow : RGKernel::Deep;
}

// The SIMD kernels of one instruction set (the dispatch point: once per call, here; the inner loops
// are the kernel's own, compiled for that instruction set).
template <class T>
struct SimdKernels {
  std::unique_ptr<TileKernel> (*shallow)(const RGProblem&);
  std::unique_ptr<TileKernel> (*deep)(const RGProblem&);
};

template <class T>
SimdKernels<T> simd_kernels(SimdPath path) {
  switch (path) {
#ifdef RELUFLOW_HAVE_ISA_AVX512
    case SimdPath::Avx512:
      return {&isa_avx512::make_shallow_kernel<T>, &isa_avx512::make_deep_kernel<T>};
#endif
#ifdef RELUFLOW_HAVE_ISA_AVX2
    case SimdPath::Avx2:
      return {&isa_avx2::make_shallow_kernel<T>, &isa_avx2::make_deep_kernel<T>};
#endif
    default:  // set_simd_path accepts compiled paths only
      return {&isa_scalar::make_shallow_kernel<T>, &isa_scalar::make_deep_kernel<T>};
  }
}

template <class T>
std::unique_ptr<TileKernel> make_kernel_t(const RGProblem& p) {
  switch (resolve(p)) {
    case RGKernel::Shallow:
      return simd_kernels<T>(active_simd_path()).shallow(p);
    case RGKernel::Deep:
      return simd_kernels<T>(active_simd_path()).deep(p);
    default:
      return std::make_unique<ScalarKernel<T>>(p);
  }
}

std::unique_ptr<TileKernel> make_kernel(const RGProblem& p) {
  return p.f32 ? make_kernel_t<float>(p) : make_kernel_t<double>(p);
}

// Work items are (network, chunk). A network's chunking depends on (N, tile, partial size) only, never
// on the number of networks K or of threads: the chunk partials are summed in a fixed order, so this
// makes a network's bits the same alone or in any batch (SPEC §7). At most kChunksPerNetwork chunks
// of at least kMinTilesPerChunk tiles (enough items for many threads even at K = 1 when N is large);
// the partials of a block of networks are kept under
// kMaxPartialBytes, and the networks are processed block after block.
constexpr int64_t kChunksPerNetwork = 16;
// A chunk holds at least this many tiles (8192 nodes on the shallow kernel): every chunk pays for its
// partial and for packing its network's parameters, which must stay small next to its nodes' work
// (4 tiles per chunk cost case C of bench_risk_grad 14% in float32; 32 tiles: A-D as before). The price of
// K-independence: one network of N <= 32 tiles runs on one thread.
constexpr int64_t kMinTilesPerChunk = 32;
// A network's chunk partials together stay under this (a deep net's partial is ~P doubles).
constexpr int64_t kMaxPartialBytesPerNetwork = int64_t(8) << 20;
// The partials of one block of networks: enough networks per block that every thread has items
// (7 chunks of one network on 2 threads left one idle an eighth of the time: case F 8% slower).
constexpr int64_t kMaxPartialBytes = int64_t(64) << 20;

struct Chunking {
  int64_t ntiles = 0, nchunks = 0, tiles_per_chunk = 1;
  int64_t block = 1;  // networks per block (memory of the partials only: no effect on any result)
};

Chunking make_chunking(int64_t N, int64_t K, int tile, int64_t psize) {
  Chunking c;
  c.ntiles = (N + tile - 1) / tile;
  if (c.ntiles == 0) return c;
  const int64_t bytes_per_chunk = psize * int64_t(sizeof(double));
  const int64_t want =
      std::max<int64_t>(1, std::min(kChunksPerNetwork, kMaxPartialBytesPerNetwork / bytes_per_chunk));
  const int64_t nch = std::min((c.ntiles + kMinTilesPerChunk - 1) / kMinTilesPerChunk, want);
  c.tiles_per_chunk = (c.ntiles + nch - 1) / nch;
  c.nchunks = (c.ntiles + c.tiles_per_chunk - 1) / c.tiles_per_chunk;
  c.block = std::max<int64_t>(1, std::min(K, kMaxPartialBytes / (c.nchunks * bytes_per_chunk)));
  return c;
}

// Runs body(ws, item) for items [0, n) in parallel (when `parallel`), one workspace per thread;
// rethrows the first error.
template <class Body>
void parallel_items(const TileKernel& kern, int64_t n, bool parallel, Body body) {
  std::exception_ptr err = nullptr;
#pragma omp parallel if (parallel && n > 1)
  {
    std::unique_ptr<Workspace> ws;
    try {
      ws = kern.workspace();
    } catch (...) {
#pragma omp critical(reluflow_rg_err)
      if (!err) err = std::current_exception();
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < n; ++it) {
      if (!ws) continue;
      try {
        body(*ws, it);
      } catch (...) {
#pragma omp critical(reluflow_rg_err)
        if (!err) err = std::current_exception();
      }
    }
  }
  if (err) std::rethrow_exception(err);
}

}  // namespace
}  // namespace detail

bool shallow_kernel_supported(const Layout& lay) {
  return lay.num_layers == 2 && lay.widths[0] >= 1 && lay.widths[0] <= 8 && lay.widths[2] >= 1 &&
         lay.widths[2] <= 3;
}

std::string resolve_kernel_name(const RGProblem& p) {
  switch (detail::resolve(p)) {
    case RGKernel::Shallow:
      return "shallow";
    case RGKernel::Deep:
      return "deep";
    default:
      return "scalar";
  }
}

void risk_and_grad_cpu(const RGProblem& p, double* risk, double* grad) {
  using namespace detail;
  const bool want_grad = grad != nullptr;
  const int64_t K = p.K, P = p.lay.num_params;
  std::fill(risk, risk + K, 0.0);
  if (want_grad) std::fill(grad, grad + K * P, 0.0);
  if (K == 0) return;
  auto kern = make_kernel(p);
  // the same chunks with or without the gradient, so that the risk is bitwise the same either way
  const Chunking ch = make_chunking(p.N, K, kern->tile, kern->partial_size);
  const int64_t psize = want_grad ? kern->partial_size : 1;
  if (ch.nchunks == 0) return;
  const int64_t tile = kern->tile;
  const bool parallel = K * p.N * p.lay.num_params >= kMinParallelWork;
  // The partials (at most kMaxPartialBytes) live as long as the calling thread: a fresh vector of tens
  // of MiB cost its page faults and a serial zero fill on every call (case F: 7 chunks x 8 networks x
  // 1 MiB, ~3% of the call); each item zeroes its own partial instead, on its thread, just before use.
  static thread_local std::vector<double> part_buf;
  part_buf.resize(static_cast<size_t>(std::min(K, ch.block) * ch.nchunks * psize));
  double* const part = part_buf.data();
  for (int64_t k0 = 0; k0 < K; k0 += ch.block) {
    const int64_t nk = std::min(ch.block, K - k0);
    parallel_items(*kern, nk * ch.nchunks, parallel, [&](Workspace& ws, int64_t it) {
      const int64_t k = it / ch.nchunks, c = it % ch.nchunks;
      const int64_t j0 = c * ch.tiles_per_chunk * tile;
      const int64_t j1 = std::min(p.N, (c + 1) * ch.tiles_per_chunk * tile);
      std::fill(part + it * psize, part + (it + 1) * psize, 0.0);
      kern->run(ws, k0 + k, j0, j1, want_grad, part + it * psize);
    });
    // Fixed-order reduction over the chunks of each network, then the kernel's finalization.
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t k = 0; k < nk; ++k) {
      double* p0 = part + k * ch.nchunks * psize;
      for (int64_t c = 1; c < ch.nchunks; ++c) {
        const double* pc = p0 + c * psize;
        for (int64_t q = 0; q < psize; ++q) p0[q] += pc[q];
      }
      risk[k0 + k] = p0[0];
      if (want_grad) kern->finalize(k0 + k, p0, grad + (k0 + k) * P);
    }
  }
}

void realization_cpu(const RGProblem& p, double* out) {
  using namespace detail;
  const int64_t K = p.K, N = p.N, o = p.lay.widths[p.lay.num_layers];
  if (K == 0 || N == 0) return;
  auto kern = make_kernel(p);
  const int64_t tile = kern->tile, ntiles = (N + tile - 1) / tile;
  parallel_items(*kern, K * ntiles, K * p.N * p.lay.num_params >= kMinParallelWork,
                 [&](Workspace& ws, int64_t it) {
    const int64_t k = it / ntiles, t = it % ntiles;
    kern->realize(ws, k, t * tile, std::min(N, (t + 1) * tile), out + k * N * o);
  });
}

}  // namespace reluflow
