// The blocked SIMD kernel for any depth (and for shallow nets the specialized kernel does not cover).
//
// Per tile of n nodes, activations are stored node-major (n x l_k, rows padded to the vector width,
// padding columns zero) and every product is a register-blocked "C = A(bcast) x B(rows)" product:
//   forward   Z_k  (n x l_k)     = A_{k-1} (n x l_{k-1}) W_k^T + b_k,  A_k = relu(Z_k) (k < L)
//   output    D_L  (n x l_L)     = 2 w_j (Z_L - y_j)                   (net::node_loss)
//   gradient  dW_k (l_k x l_{k-1}) += D_k^T A_{k-1},  db_k += column sums of D_k
//   backprop  D_{k-1} (n x l_{k-1}) = (D_k W_k) o [A_{k-1} > 0]        ([a > 0] = [z > 0] for a = relu z)
// dW_k and db_k are summed over the tile in the compute dtype and added into the float64 partials.
#include <algorithm>
#include <vector>

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

template <class T>
struct Blk {
  using V = simd::Simd<T>;
  static constexpr int W = V::W;
  static constexpr int MR = V::kRegs >= 32 ? 6 : 4;  // rows of the register block
  static constexpr int NR = V::kRegs >= 32 ? 4 : 2;  // vectors of the register block
};

// ---- epilogues: how a register block is initialized and stored ------------------------------------
template <class T, bool kRelu>
struct EpiForward {  // C = relu?(acc), acc initialized with the bias
  using V = simd::Simd<T>;
  const T* bias;
  T* C;
  int64_t ldc;
  typename V::reg init(int64_t, int64_t n) const { return V::load(bias + n); }
  void store(int64_t m, int64_t n, typename V::reg a) const {
    V::store(C + m * ldc + n, kRelu ? V::max(a, V::zero()) : a);
  }
};

template <class T>
struct EpiBackprop {  // C = acc o [A_prev > 0]
  using V = simd::Simd<T>;
  T* C;
  int64_t ldc;
  const T* Ap;
  int64_t lda;
  typename V::reg init(int64_t, int64_t) const { return V::zero(); }
  void store(int64_t m, int64_t n, typename V::reg a) const {
    V::store(C + m * ldc + n, V::select(V::cmp_gt(V::load(Ap + m * lda + n), V::zero()), a));
  }
};

template <class T>
struct EpiGradW {  // G[m][n] += acc for the real columns n < ncols (float64)
  using V = simd::Simd<T>;
  double* G;
  int64_t ncols;
  typename V::reg init(int64_t, int64_t) const { return V::zero(); }
  void store(int64_t m, int64_t n, typename V::reg a) const {
    if (n < ncols) V::acc_to_double(G + m * ncols + n, a, static_cast<int>(std::min<int64_t>(V::W, ncols - n)));
  }
};

// One register block: rows [m0, m0+MRk) x vectors [n0, n0 + NRk W):
//   acc = init; acc[r][v] += sum_k A[(m0+r) sam + k sak] * B[k ldb + n0 + v W]; store.
template <class T, int MRk, int NRk, class Epi>
inline void micro(int64_t kc, const T* A, int64_t sam, int64_t sak, const T* B, int64_t ldb, int64_t m0,
                  int64_t n0, const Epi& epi) {
  using V = simd::Simd<T>;
  constexpr int W = V::W;
  typename V::reg acc[MRk][NRk];
  for (int r = 0; r < MRk; ++r)
    for (int v = 0; v < NRk; ++v) acc[r][v] = epi.init(m0 + r, n0 + v * W);
  const T* a0 = A + m0 * sam;
  for (int64_t k = 0; k < kc; ++k) {
    const T* b = B + k * ldb + n0;
    typename V::reg bv[NRk];
    for (int v = 0; v < NRk; ++v) bv[v] = V::load(b + v * W);
    const T* ak = a0 + k * sak;
    for (int r = 0; r < MRk; ++r) {
      const typename V::reg a = V::set1(ak[r * sam]);
      for (int v = 0; v < NRk; ++v) acc[r][v] = V::fma(a, bv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < MRk; ++r)
    for (int v = 0; v < NRk; ++v) epi.store(m0 + r, n0 + v * W, acc[r][v]);
}

template <class T, int NRk, class Epi>
inline void gemm_rows(int64_t M, int64_t kc, const T* A, int64_t sam, int64_t sak, const T* B, int64_t ldb,
                      int64_t n0, const Epi& epi) {
  constexpr int MR = Blk<T>::MR;
  int64_t m0 = 0;
  for (; m0 + MR <= M; m0 += MR) micro<T, MR, NRk>(kc, A, sam, sak, B, ldb, m0, n0, epi);
  switch (M - m0) {
    case 1: micro<T, 1, NRk>(kc, A, sam, sak, B, ldb, m0, n0, epi); break;
    case 2: micro<T, 2, NRk>(kc, A, sam, sak, B, ldb, m0, n0, epi); break;
    case 3: micro<T, 3, NRk>(kc, A, sam, sak, B, ldb, m0, n0, epi); break;
    case 4: if constexpr (MR > 4) micro<T, 4, NRk>(kc, A, sam, sak, B, ldb, m0, n0, epi); break;
    case 5: if constexpr (MR > 5) micro<T, 5, NRk>(kc, A, sam, sak, B, ldb, m0, n0, epi); break;
    default: break;
  }
}

// C (M x Nc, Nc a multiple of W) from A (M x kc, strides sam, sak; broadcast) and B (kc x Nc, ldb).
template <class T, class Epi>
void gemm(int64_t M, int64_t Nc, int64_t kc, const T* A, int64_t sam, int64_t sak, const T* B, int64_t ldb,
          const Epi& epi) {
  constexpr int W = Blk<T>::W, NR = Blk<T>::NR;
  int64_t n0 = 0;
  for (; n0 + NR * W <= Nc; n0 += NR * W) gemm_rows<T, NR>(M, kc, A, sam, sak, B, ldb, n0, epi);
  for (; n0 < Nc; n0 += W) gemm_rows<T, 1>(M, kc, A, sam, sak, B, ldb, n0, epi);
}

template <class T>
class DeepKernel final : public TileKernel {
  using V = simd::Simd<T>;
  static constexpr int W = V::W;

 public:
  explicit DeepKernel(const RGProblem& p) : p_(p) {
    const Layout& lay = p.lay;
    L_ = lay.num_layers;
    int64_t row = 0;
    for (int k = 0; k <= L_; ++k) {
      pw_[k] = round_up(lay.widths[k], W);
      pmax_ = std::max(pmax_, pw_[k]);
      row += pw_[k];
    }
    row += 2 * pmax_;
    // tile: activations of a tile within ~1 MiB (L2), 16..256 nodes
    int64_t t = 256;
    while (t > 16 && t * row * static_cast<int64_t>(sizeof(T)) > (1 << 20)) t /= 2;
    // no larger than the nodes need (one tile either way): the per-call workspace is zeroed, and the
    // 1-D quadrature calls this kernel per network with ~10^2 nodes (a function of N and widths only)
    while (t > 16 && t / 2 >= p.N) t /= 2;
    tile = p.tile > 0 ? p.tile : static_cast<int>(t);
    partial_size = 1 + lay.num_params;
  }

  struct Ws : Workspace {
    int64_t k = -1;
    std::vector<avec<T>> Wt, Wr, b;  // per layer: W^T (l_{k-1} x pad l_k), W (l_k x pad l_{k-1}), b (pad l_k)
    std::vector<avec<T>> A;          // per layer 0..L: tile x pad l_k (A_0 = x, A_L = Z_L)
    avec<T> D0, D1;                  // deltas: tile x pmax
  };

  std::unique_ptr<Workspace> workspace() const override {
    auto ws = std::make_unique<Ws>();
    const Layout& lay = p_.lay;
    ws->Wt.resize(L_);
    ws->Wr.resize(L_);
    ws->b.resize(L_);
    for (int k = 0; k < L_; ++k) {
      ws->Wt[k].assign(static_cast<size_t>(lay.widths[k] * pw_[k + 1]), T(0));
      ws->Wr[k].assign(static_cast<size_t>(lay.widths[k + 1] * pw_[k]), T(0));
      ws->b[k].assign(static_cast<size_t>(pw_[k + 1]), T(0));
    }
    ws->A.resize(L_ + 1);
    for (int k = 0; k <= L_; ++k) ws->A[k].assign(static_cast<size_t>(tile * pw_[k]), T(0));
    ws->D0.assign(static_cast<size_t>(tile * pmax_), T(0));
    ws->D1.assign(static_cast<size_t>(tile * pmax_), T(0));
    return ws;
  }

  void run(Workspace& wsb, int64_t k, int64_t j0, int64_t j1, bool want_grad, double* partial) const override {
    Ws& ws = static_cast<Ws&>(wsb);
    pack(ws, k);
    const Layout& lay = p_.lay;
    const int out = lay.widths[L_];
    for (int64_t t0 = j0; t0 < j1; t0 += tile) {
      const int64_t n = std::min<int64_t>(tile, j1 - t0);
      forward(ws, t0, n);
      // output layer: risk and D_L = 2 w (Z_L - y)
      const T* Z = ws.A[L_].data();
      T* Dc = ws.D0.data();
      const int64_t ldd_out = pw_[L_];
      double risk = 0.0;
      for (int64_t j = 0; j < n; ++j) {
        double nd[kMaxOut], g[kMaxOut];
        double risk_j = 0.0;
        for (int o0 = 0; o0 < out; o0 += kMaxOut) {  // in blocks, for any output width
          const int oc = std::min(kMaxOut, out - o0);
          for (int o = 0; o < oc; ++o) nd[o] = static_cast<double>(Z[j * ldd_out + o0 + o]);
          risk_j += net::node_loss(oc, nd, p_.y + (t0 + j) * out + o0, p_.w[t0 + j], g);
          for (int o = 0; o < oc; ++o) Dc[j * ldd_out + o0 + o] = static_cast<T>(g[o]);
        }
        for (int64_t o = out; o < ldd_out; ++o) Dc[j * ldd_out + o] = T(0);
        risk += risk_j;
      }
      partial[0] += risk;
      if (!want_grad) continue;
      double* grad = partial + 1;
      T* Dn = ws.D1.data();
      for (int kk = L_ - 1; kk >= 0; --kk) {
        const int64_t ni = lay.widths[kk], no = lay.widths[kk + 1];
        const int64_t ldd = pw_[kk + 1], lda = pw_[kk];
        const T* Ap = ws.A[kk].data();
        // dW_k += D_k^T A_{k-1}: rows o (A(o, j) = D[j ldd + o]), columns of A_{k-1}
        gemm<T>(no, pw_[kk], n, Dc, 1, ldd, Ap, lda, EpiGradW<T>{grad + lay.w_offset[kk], ni});
        // db_k += column sums of D_k
        double* gb = grad + lay.b_offset[kk];
        for (int64_t v = 0; v < ldd; v += W) {
          typename V::reg s = V::zero();
          for (int64_t j = 0; j < n; ++j) s = V::add(s, V::load(Dc + j * ldd + v));
          V::acc_to_double(gb + v, s, static_cast<int>(std::min<int64_t>(W, no - v)));
        }
        if (kk > 0) {
          // D_{k-1} = (D_k W_k) o [A_{k-1} > 0]
          gemm<T>(n, lda, no, Dc, ldd, 1, ws.Wr[kk].data(), lda, EpiBackprop<T>{Dn, lda, Ap, lda});
          std::swap(Dc, Dn);
        }
      }
    }
  }

  void finalize(int64_t, const double* partial, double* grad) const override {
    std::copy(partial + 1, partial + 1 + p_.lay.num_params, grad);
  }

  void realize(Workspace& wsb, int64_t k, int64_t j0, int64_t j1, double* out_k) const override {
    Ws& ws = static_cast<Ws&>(wsb);
    pack(ws, k);
    const int out = p_.lay.widths[L_];
    for (int64_t t0 = j0; t0 < j1; t0 += tile) {
      const int64_t n = std::min<int64_t>(tile, j1 - t0);
      forward(ws, t0, n);
      const T* Z = ws.A[L_].data();
      for (int64_t j = 0; j < n; ++j)
        for (int o = 0; o < out; ++o) out_k[(t0 + j) * out + o] = static_cast<double>(Z[j * pw_[L_] + o]);
    }
  }

 private:
  static constexpr int kMaxOut = 16;

  void pack(Ws& ws, int64_t k) const {
    if (ws.k == k) return;
    const Layout& lay = p_.lay;
    const T* th = static_cast<const T*>(p_.theta) + k * lay.num_params;
    for (int kk = 0; kk < L_; ++kk) {
      const int64_t ni = lay.widths[kk], no = lay.widths[kk + 1];
      const T* Wk = th + lay.w_offset[kk];
      T* Wt = ws.Wt[kk].data();
      T* Wr = ws.Wr[kk].data();
      for (int64_t o = 0; o < no; ++o)
        for (int64_t i = 0; i < ni; ++i) {
          Wt[i * pw_[kk + 1] + o] = Wk[o * ni + i];
          Wr[o * pw_[kk] + i] = Wk[o * ni + i];
        }
      std::copy(th + lay.b_offset[kk], th + lay.b_offset[kk] + no, ws.b[kk].data());
    }
    ws.k = k;
  }

  // A_0 = x of nodes [t0, t0+n), then Z_k / A_k for every layer.
  void forward(Ws& ws, int64_t t0, int64_t n) const {
    const Layout& lay = p_.lay;
    const int d = lay.widths[0];
    T* X = ws.A[0].data();
    for (int64_t j = 0; j < n; ++j)
      for (int c = 0; c < d; ++c) X[j * pw_[0] + c] = static_cast<T>(p_.x[(t0 + j) * d + c]);
    for (int kk = 0; kk < L_; ++kk) {
      const T* Ap = ws.A[kk].data();
      T* Z = ws.A[kk + 1].data();
      const int64_t ni = lay.widths[kk], ldo = pw_[kk + 1];
      if (kk + 1 < L_)
        gemm<T>(n, ldo, ni, Ap, pw_[kk], 1, ws.Wt[kk].data(), ldo, EpiForward<T, true>{ws.b[kk].data(), Z, ldo});
      else
        gemm<T>(n, ldo, ni, Ap, pw_[kk], 1, ws.Wt[kk].data(), ldo, EpiForward<T, false>{ws.b[kk].data(), Z, ldo});
    }
  }

  RGProblem p_;
  int L_ = 0;
  int64_t pw_[kMaxLayers + 1] = {0};
  int64_t pmax_ = 0;
};

}  // namespace

template <class T>
std::unique_ptr<TileKernel> make_deep_kernel(const RGProblem& p) {
  return std::make_unique<DeepKernel<T>>(p);
}

template std::unique_ptr<TileKernel> make_deep_kernel<float>(const RGProblem&);
template std::unique_ptr<TileKernel> make_deep_kernel<double>(const RGProblem&);

}  // namespace RELUFLOW_ISA_NS
}  // namespace detail
}  // namespace reluflow
RELUFLOW_SIMD_END
