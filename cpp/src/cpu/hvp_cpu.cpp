// The CPU loop of the Hessian-vector products (see hvp_cpu.h for the parallel structure); the math of
// one node is reluflow/hvp.h.
#include "cpu/hvp_cpu.h"

#include <algorithm>
#include <exception>
#include <vector>

#include "cpu/parallel_policy.h"
#include "reluflow/hvp.h"
#include "reluflow/net.h"

namespace reluflow {
namespace {

// Directions per block: between 8 and 64, fewer for large nets, so that the block's directions and
// products (2 x P x block doubles) stay within ~1 MiB (the L2 cache); more directions per block spread
// the per-row work (flags, loop set-up) over more lanes. Speed only: the values of a direction's
// products do not depend on its block.
int64_t dir_block(int64_t P) {
  return std::max<int64_t>(8, std::min<int64_t>(64, (int64_t(65536) / std::max<int64_t>(P, 1)) / 8 * 8));
}
// Node chunks: at least this many nodes per chunk, at most kMaxChunks chunks, and no more chunk results
// (each B x P + P + 1 doubles, past the first, which is the output) than kMaxPartialBytes holds: a
// function of N and of the size of one network's result only (never of K or the thread count).
constexpr int64_t kMinNodesPerChunk = 1024;
constexpr int64_t kMaxChunks = 16;
// The chunk results of a block of networks together stay under this (the grouping of the networks
// into blocks changes no result).
constexpr int64_t kMaxPartialBytes = int64_t(64) << 20;

struct Chunks {
  int64_t n = 0, size = 0;  // number of chunks, nodes per chunk
};

Chunks node_chunks(int64_t N, int64_t rec_bytes) {
  Chunks c;
  if (N == 0) return c;
  const int64_t by_memory = 1 + kMaxPartialBytes / std::max<int64_t>(rec_bytes, 1);
  c.n = std::min({kMaxChunks, by_memory, std::max<int64_t>(1, N / kMinNodesPerChunk)});
  c.size = (N + c.n - 1) / c.n;
  c.n = (N + c.size - 1) / c.size;
  return c;
}

// hv_kb += sum_i c_ki (u_ki . v_kb) u_ki, after the node sums: each network's u_ki by their nonzero
// entries (few: a first-layer kink moves only its neuron's parameters), then every direction.
void add_kink_terms(const HVPProblem& p, double* hv, bool parallel) {
  const int64_t K = p.K, B = p.B, M = p.M, P = p.lay.num_params;
#pragma omp parallel for schedule(dynamic, 1) if (parallel && K > 1)
  for (int64_t k = 0; k < K; ++k) {
    std::vector<int64_t> start(static_cast<size_t>(M + 1), 0), idx;
    std::vector<double> val;
    const double* U = p.kink_u + k * M * P;
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t q = 0; q < P; ++q)
        if (U[i * P + q] != 0.0) {
          idx.push_back(q);
          val.push_back(U[i * P + q]);
        }
      start[i + 1] = static_cast<int64_t>(idx.size());
    }
    for (int64_t b = 0; b < B; ++b)
      hvp::add_kink_terms(M, p.kink_c + k * M, start.data(), idx.data(), val.data(), p.V + (k * B + b) * P,
                          hv + (k * B + b) * P);
  }
}

}  // namespace

void risk_grad_hvp_cpu(const HVPProblem& p, double* risk, double* grad, double* hv) {
  const Layout& lay = p.lay;
  const int64_t K = p.K, N = p.N, B = p.B, P = lay.num_params;
  const int d = lay.widths[0], out = lay.widths[lay.num_layers];
  const int64_t hidden = net::num_activations(lay) - out;
  if (risk != nullptr) std::fill(risk, risk + K, 0.0);
  if (grad != nullptr) std::fill(grad, grad + K * P, 0.0);
  std::fill(hv, hv + K * B * P, 0.0);
  // one result record per (network, chunk): risk, grad (P), hv (B x P); chunk 0 writes the output
  const int64_t rec = 1 + P + B * P;
  const Chunks ch = node_chunks(N, rec * int64_t(sizeof(double)));
  if (K == 0 || ch.n == 0) return;
  const bool want_rg = risk != nullptr || grad != nullptr;
  const int64_t dblk = dir_block(P);
  const int64_t nblocks = std::max<int64_t>(1, (B + dblk - 1) / dblk);
  const int64_t extra = ch.n - 1;
  int64_t kblock = K;
  if (extra > 0) kblock = std::max<int64_t>(1, std::min(K, kMaxPartialBytes / (extra * rec * 8)));
  std::vector<double> part(static_cast<size_t>(extra > 0 ? std::min(K, kblock) * extra * rec : 0));
  const bool parallel = K * N * std::max<int64_t>(B, 1) * P >= kMinParallelHvp;

  for (int64_t k0 = 0; k0 < K; k0 += kblock) {
    const int64_t nk = std::min(kblock, K - k0);
    const int64_t items = nk * nblocks * ch.n;
    std::exception_ptr err = nullptr;
#pragma omp parallel if (parallel && items > 1)
    {
      std::vector<double> Vt, Ht, g, scratch;
      std::vector<uint8_t> vnz, flags;
      bool ready = false;  // this thread's buffers are allocated
      try {
        const int64_t bb = std::min(B, dblk);
        Vt.resize(static_cast<size_t>(P * bb));
        Ht.resize(static_cast<size_t>(P * bb));
        g.resize(static_cast<size_t>(P));
        scratch.resize(static_cast<size_t>(hvp::scratch_size(lay, static_cast<int>(std::max<int64_t>(bb, 1)))));
        vnz.resize(static_cast<size_t>(P));
        flags.resize(static_cast<size_t>(hvp::flag_size(lay)));
        ready = true;
      } catch (...) {
#pragma omp critical(reluflow_hvp_err)
        if (!err) err = std::current_exception();
      }
#pragma omp for schedule(dynamic, 1)
      for (int64_t it = 0; it < items; ++it) {
        if (!ready) continue;  // this thread's allocation failed (reported above)
        const int64_t kk = it / (nblocks * ch.n), rest = it % (nblocks * ch.n);
        const int64_t blk = rest / ch.n, c = rest % ch.n, k = k0 + kk;
        const int64_t b0 = blk * dblk, nb = std::max<int64_t>(0, std::min(B, b0 + dblk) - b0);
        const bool rg = want_rg && blk == 0;  // risk and gradient: once per (network, chunk)
        const double* th = p.theta + k * P;
        const double* Vk = p.V + k * B * P;
        for (int64_t b = 0; b < nb; ++b)
          for (int64_t q = 0; q < P; ++q) Vt[q * nb + b] = Vk[(b0 + b) * P + q];
        // the rows that are zero for the whole block (most, for the unit directions of a Hessian)
        for (int64_t q = 0; q < P; ++q) {
          uint8_t nz = 0;
          for (int64_t b = 0; b < nb; ++b) nz |= Vt[q * nb + b] != 0.0 ? 1 : 0;
          vnz[q] = nz;
        }
        std::fill(Ht.begin(), Ht.begin() + P * nb, 0.0);
        if (rg) std::fill(g.begin(), g.end(), 0.0);
        double r = 0.0;
        const int64_t j0 = c * ch.size, j1 = std::min(N, j0 + ch.size);
        for (int64_t j = j0; j < j1; ++j) {
          r += hvp::node_hvp(lay, th, p.x + j * d, p.y + j * out, p.w[j],
                             p.zero != nullptr ? p.zero + j * hidden : nullptr, static_cast<int>(nb), Vt.data(),
                             nb, vnz.data(), Ht.data(), nb, rg ? g.data() : nullptr, scratch.data(), flags.data());
        }
        // chunk 0 into the output, chunk c > 0 into its record; the records are added in chunk order below
        double* dst_r = c == 0 ? (risk != nullptr ? risk + k : nullptr) : part.data() + (kk * extra + c - 1) * rec;
        double* dst_g = c == 0 ? (grad != nullptr ? grad + k * P : nullptr) : part.data() + (kk * extra + c - 1) * rec + 1;
        double* dst_h = c == 0 ? hv + k * B * P : part.data() + (kk * extra + c - 1) * rec + 1 + P;
        if (rg && dst_r != nullptr) *dst_r = r;
        if (rg && dst_g != nullptr) std::copy(g.begin(), g.end(), dst_g);
        for (int64_t b = 0; b < nb; ++b)
          for (int64_t q = 0; q < P; ++q) dst_h[(b0 + b) * P + q] = Ht[q * nb + b];
      }
    }
    if (err) std::rethrow_exception(err);
    if (extra == 0) continue;
    // fixed-order reduction: output (chunk 0) + chunk 1 + chunk 2 + ...
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t kk = 0; kk < nk; ++kk) {
      const int64_t k = k0 + kk;
      for (int64_t c = 1; c < ch.n; ++c) {
        const double* rc = part.data() + (kk * extra + c - 1) * rec;
        if (risk != nullptr) risk[k] += rc[0];
        if (grad != nullptr)
          for (int64_t q = 0; q < P; ++q) grad[k * P + q] += rc[1 + q];
        for (int64_t q = 0; q < B * P; ++q) hv[k * B * P + q] += rc[1 + P + q];
      }
    }
  }
  if (p.M > 0) add_kink_terms(p, hv, parallel);
}

}  // namespace reluflow
