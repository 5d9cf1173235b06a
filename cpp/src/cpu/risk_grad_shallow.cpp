// The SIMD kernel of shallow nets [d, H, out] (d <= 8, out <= 3): the hot case.
//
// Per tile of nodes, two passes over the hidden neurons, neurons in the vector lanes:
//  pass 1: S nodes held in registers; z = W_i x_j + b_i, mask m_ij = [z > 0] (stored as bits, one tile
//          x H), N_j = sum_i v_i [m_ij] z_ij + c accumulated per node in vector accumulators, reduced
//          horizontally at the end; residual, risk, g_j = 2 w_j (N_j - y_j) (net::node_loss).
//  pass 2: for a block of NB neuron vectors, accumulators in registers over the whole tile:
//          U[o][c]_i = sum_j [m_ij] g_jo x_jc,  U[o][d]_i = sum_j [m_ij] g_jo  (masked adds only);
//          added into float64 partial sums per tile. The gradient follows from U once per network
//          (net::shallow_neuron_grad): dW_i = sum_o v_oi U[o][:d], db_i = sum_o v_oi U[o][d],
//          dv_oi = W_i . U[o][:d] + b_i U[o][d].
#include <algorithm>
#include <stdexcept>

#include "reluflow/net.h"
#include "reluflow/simd.h"
#include "cpu/risk_grad_cpu.h"

// Compiled once per instruction set (RELUFLOW_SIMD_ISA from CMake): everything below the includes
// is in the ISA's namespace and instruction set (see simd.h, "ISA translation units").
RELUFLOW_SIMD_BEGIN
namespace reluflow {
namespace detail {
namespace RELUFLOW_ISA_NS {
namespace {

template <class T, int D, int O>
class ShallowKernel final : public TileKernel {
  using V = simd::Simd<T>;
  using reg = typename V::reg;
  using mask = typename V::mask;
  using bits = typename V::bits;
  static constexpr int W = V::W;
  static constexpr int S = O == 1 ? 8 : (O == 2 ? 4 : 2);  // nodes per register group in pass 1
  static constexpr int C = O * (D + 1);                     // moments per neuron
  static constexpr int NB = C >= 18 ? 1 : (18 / C > 8 ? 8 : 18 / C);  // neuron vectors per pass-2 block

 public:
  explicit ShallowKernel(const RGProblem& p) : p_(p) {
    H_ = p.lay.widths[1];
    Hpad_ = round_up(H_, W);
    nv_ = Hpad_ / W;
    tile = p.tile > 0 ? p.tile : 256;
    tpad_ = round_up(tile, S);
    partial_size = 1 + O + static_cast<int64_t>(C) * Hpad_;
  }

  struct Ws : Workspace {
    int64_t k = -1;      // network whose parameters are packed
    avec<T> Wc, B, Vo;   // W^T (D x Hpad), b (Hpad), v (O x Hpad), zero padded
    T c[O];
    avec<T> xs, G, nout;  // tile: x (tpad x D), g x moments (tpad x C), N (tpad x O)
    avec<bits> mask;      // tile: mask bits (nv x tpad)
  };

  std::unique_ptr<Workspace> workspace() const override {
    auto ws = std::make_unique<Ws>();
    ws->Wc.assign(static_cast<size_t>(D * Hpad_), T(0));
    ws->B.assign(static_cast<size_t>(Hpad_), T(0));
    ws->Vo.assign(static_cast<size_t>(O * Hpad_), T(0));
    ws->xs.assign(static_cast<size_t>(tpad_ * D), T(0));
    ws->G.assign(static_cast<size_t>(tpad_ * C), T(0));
    ws->nout.assign(static_cast<size_t>(tpad_ * O), T(0));
    ws->mask.assign(static_cast<size_t>(nv_ * tpad_), bits(0));
    return ws;
  }

  void run(Workspace& wsb, int64_t k, int64_t j0, int64_t j1, bool want_grad, double* partial) const override {
    Ws& ws = static_cast<Ws&>(wsb);
    pack(ws, k);
    double* U = partial + 1 + O;
    for (int64_t t0 = j0; t0 < j1; t0 += tile) {
      const int n = static_cast<int>(std::min<int64_t>(tile, j1 - t0));
      const int npad = static_cast<int>(round_up(n, S));
      load_tile(ws, t0, n, npad);
      if (want_grad)
        pass1<true>(ws, npad);
      else
        pass1<false>(ws, npad);
      // residual, risk, g_j and the broadcast values g_jo x_jc of pass 2
      double risk = 0.0, dc[O] = {0.0};
      for (int j = 0; j < n; ++j) {
        double nd[O], g[O];
        for (int o = 0; o < O; ++o) nd[o] = static_cast<double>(ws.nout[j * O + o]);
        risk += net::node_loss(O, nd, p_.y + (t0 + j) * O, p_.w[t0 + j], g);
        if (!want_grad) continue;
        T* Gj = ws.G.data() + static_cast<int64_t>(j) * C;
        for (int o = 0; o < O; ++o) {
          dc[o] += g[o];
          for (int c = 0; c < D; ++c) Gj[o * (D + 1) + c] = static_cast<T>(g[o] * static_cast<double>(ws.xs[j * D + c]));
          Gj[o * (D + 1) + D] = static_cast<T>(g[o]);
        }
      }
      partial[0] += risk;
      if (!want_grad) continue;
      for (int o = 0; o < O; ++o) partial[1 + o] += dc[o];
      int v = 0;
      for (; v + NB <= nv_; v += NB) pass2_block<NB>(ws, v, n, U);
      for (; v < nv_; ++v) pass2_block<1>(ws, v, n, U);
    }
  }

  void finalize(int64_t k, const double* partial, double* grad) const override {
    const Layout& lay = p_.lay;
    const T* th = static_cast<const T*>(p_.theta) + k * lay.num_params;
    const double* U = partial + 1 + O;
    const int64_t w0 = lay.w_offset[0], b0 = lay.b_offset[0], w1 = lay.w_offset[1], b1 = lay.b_offset[1];
    for (int64_t i = 0; i < H_; ++i) {
      double wi[D], vi[O], dv[O];
      for (int c = 0; c < D; ++c) wi[c] = static_cast<double>(th[w0 + i * D + c]);
      for (int o = 0; o < O; ++o) vi[o] = static_cast<double>(th[w1 + o * H_ + i]);
      net::shallow_neuron_grad<double>(D, O, wi, static_cast<double>(th[b0 + i]), vi, 1, U + i,
                                       static_cast<int64_t>(D + 1) * Hpad_, Hpad_, grad + w0 + i * D,
                                       grad + b0 + i, dv);
      for (int o = 0; o < O; ++o) grad[w1 + o * H_ + i] = dv[o];
    }
    for (int o = 0; o < O; ++o) grad[b1 + o] = partial[1 + o];
  }

  void realize(Workspace& wsb, int64_t k, int64_t j0, int64_t j1, double* out) const override {
    Ws& ws = static_cast<Ws&>(wsb);
    pack(ws, k);
    for (int64_t t0 = j0; t0 < j1; t0 += tile) {
      const int n = static_cast<int>(std::min<int64_t>(tile, j1 - t0));
      const int npad = static_cast<int>(round_up(n, S));
      load_tile(ws, t0, n, npad);
      pass1<false>(ws, npad);
      for (int j = 0; j < n; ++j)
        for (int o = 0; o < O; ++o) out[(t0 + j) * O + o] = static_cast<double>(ws.nout[j * O + o]);
    }
  }

 private:
  // The parameters of network k in SIMD-friendly order (padding lanes stay zero: z = 0, inactive).
  void pack(Ws& ws, int64_t k) const {
    if (ws.k == k) return;
    const Layout& lay = p_.lay;
    const T* th = static_cast<const T*>(p_.theta) + k * lay.num_params;
    const int64_t w0 = lay.w_offset[0], b0 = lay.b_offset[0], w1 = lay.w_offset[1], b1 = lay.b_offset[1];
    for (int64_t i = 0; i < H_; ++i) {
      for (int c = 0; c < D; ++c) ws.Wc[c * Hpad_ + i] = th[w0 + i * D + c];
      ws.B[i] = th[b0 + i];
      for (int o = 0; o < O; ++o) ws.Vo[o * Hpad_ + i] = th[w1 + o * H_ + i];
    }
    for (int o = 0; o < O; ++o) ws.c[o] = th[b1 + o];
    ws.k = k;
  }

  void load_tile(Ws& ws, int64_t t0, int n, int npad) const {
    const double* x = p_.x + t0 * D;
    for (int j = 0; j < n * D; ++j) ws.xs[j] = static_cast<T>(x[j]);
    for (int j = n * D; j < npad * D; ++j) ws.xs[j] = T(0);
  }

  // Forward of the tile: masks (if kMask) and outputs N_j of nodes [0, npad).
  template <bool kMask>
  void pass1(Ws& ws, int npad) const {
    const T* Wc = ws.Wc.data();
    const T* B = ws.B.data();
    const T* Vo = ws.Vo.data();
    const T* xs = ws.xs.data();
    bits* mk = ws.mask.data();
    const reg zero = V::zero();
    // locals, not members: the mask store is an asm statement, after which members would be reloaded
    const int64_t nv = nv_, tpad = tpad_, Hpad = Hpad_;
    for (int s0 = 0; s0 < npad; s0 += S) {
      reg acc[S][O];
      for (int s = 0; s < S; ++s)
        for (int o = 0; o < O; ++o) acc[s][o] = V::zero();
      reg xb[S][D];
      for (int s = 0; s < S; ++s)
        for (int c = 0; c < D; ++c) xb[s][c] = V::set1(xs[(s0 + s) * D + c]);
      bits* mv = mk + s0;
      for (int64_t v = 0; v < nv; ++v, mv += tpad) {
        reg wv[D], vv[O];
        for (int c = 0; c < D; ++c) wv[c] = V::load(Wc + c * Hpad + v * W);
        const reg bv = V::load(B + v * W);
        for (int o = 0; o < O; ++o) vv[o] = V::load(Vo + o * Hpad + v * W);
        for (int s = 0; s < S; ++s) {
          reg z = bv;
          for (int c = 0; c < D; ++c) z = V::fma(wv[c], xb[s][c], z);
          const mask m = V::cmp_gt(z, zero);
          if (kMask) V::store_bits(mv + s, m);
          for (int o = 0; o < O; ++o) acc[s][o] = V::mask_fma(acc[s][o], m, vv[o], z);
        }
      }
      for (int s = 0; s < S; ++s)
        for (int o = 0; o < O; ++o) ws.nout[(s0 + s) * O + o] = V::hsum(acc[s][o]) + ws.c[o];
    }
  }

  // Moments U of neuron vectors [v0, v0 + NBk) over the first n nodes of the tile, added into U.
  // Not inlined: the mask loads (V::load_bits) must stay after pass 1's mask stores.
  template <int NBk>
  __attribute__((noinline)) void pass2_block(const Ws& ws, int64_t v0, int n, double* U) const {
    asm volatile("" ::: "memory");  // a compiler barrier (outside the loop): the masks are in memory
    reg acc[NBk][C];
    for (int b = 0; b < NBk; ++b)
      for (int q = 0; q < C; ++q) acc[b][q] = V::zero();
    const bits* mrow[NBk];
    for (int b = 0; b < NBk; ++b) mrow[b] = ws.mask.data() + (v0 + b) * tpad_;
    const T* G = ws.G.data();
    for (int j = 0; j < n; ++j) {
      reg gb[C];
      for (int q = 0; q < C; ++q) gb[q] = V::set1(G[j * C + q]);
      for (int b = 0; b < NBk; ++b) {
        const mask m = V::load_bits(mrow[b] + j);
        for (int q = 0; q < C; ++q) acc[b][q] = V::mask_add(acc[b][q], m, gb[q]);
      }
    }
    for (int b = 0; b < NBk; ++b)
      for (int q = 0; q < C; ++q) V::acc_to_double(U + q * Hpad_ + (v0 + b) * W, acc[b][q]);
  }

  RGProblem p_;
  int64_t H_ = 0, Hpad_ = 0, nv_ = 0, tpad_ = 0;
};

template <class T, int D>
std::unique_ptr<TileKernel> by_out(const RGProblem& p) {
  switch (p.lay.widths[2]) {
    case 1:
      return std::make_unique<ShallowKernel<T, D, 1>>(p);
    case 2:
      return std::make_unique<ShallowKernel<T, D, 2>>(p);
    case 3:
      return std::make_unique<ShallowKernel<T, D, 3>>(p);
    default:
      break;
  }
  throw std::invalid_argument("kernel: 'shallow' needs widths [d, H, out] with d <= 8 and out <= 3");
}

}  // namespace

template <class T>
std::unique_ptr<TileKernel> make_shallow_kernel(const RGProblem& p) {
  if (!shallow_kernel_supported(p.lay))
    throw std::invalid_argument("kernel: 'shallow' needs widths [d, H, out] with d <= 8 and out <= 3");
  switch (p.lay.widths[0]) {
    case 1: return by_out<T, 1>(p);
    case 2: return by_out<T, 2>(p);
    case 3: return by_out<T, 3>(p);
    case 4: return by_out<T, 4>(p);
    case 5: return by_out<T, 5>(p);
    case 6: return by_out<T, 6>(p);
    case 7: return by_out<T, 7>(p);
    default: return by_out<T, 8>(p);
  }
}

template std::unique_ptr<TileKernel> make_shallow_kernel<float>(const RGProblem&);
template std::unique_ptr<TileKernel> make_shallow_kernel<double>(const RGProblem&);

}  // namespace RELUFLOW_ISA_NS
}  // namespace detail
}  // namespace reluflow
RELUFLOW_SIMD_END
