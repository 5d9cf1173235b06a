// The per-node and per-neuron math of risk_and_grad, written once for host and device (RF_HD).
//
// SPEC §1-2: a_0 = x, z_k = W_k a_{k-1} + b_k, a_k = relu(z_k) for k < L, N(x) = z_L; the risk of a
// node is w |N(x) - y|^2 and its gradient is backpropagated with the generalized derivative
// relu'(z) = 1 iff z > 0 (compared with '>', so relu'(0) = 0).
//
// The loops over nodes, networks and tiles (OpenMP, SIMD blocking, CUDA grids) live elsewhere; the
// SIMD kernels in cpp/src/cpu/risk_grad_*.cpp evaluate exactly these formulas lane by lane.
#pragma once
#include <cstdint>

#include "layout.h"
#include "rf_hd.h"

namespace reluflow {
namespace net {

// relu'(z) of the generalized gradient: 1 iff z > 0.
template <class T>
RF_HD bool active(T z) {
  return z > T(0);
}

// relu(z) = z if z > 0 else 0 (never through max, so that the mask and the value agree).
template <class T>
RF_HD T relu(T z) {
  return z > T(0) ? z : T(0);
}

// Number of pre-activations of one node over all layers: sum_{k=1..L} l_k.
RF_HD int64_t num_activations(const Layout& lay) {
  int64_t s = 0;
  for (int k = 1; k <= lay.num_layers; ++k) s += lay.widths[k];
  return s;
}

// The widest layer (for the backpropagation buffers).
RF_HD int max_width(const Layout& lay) {
  int m = 0;
  for (int k = 0; k <= lay.num_layers; ++k) m = lay.widths[k] > m ? lay.widths[k] : m;
  return m;
}

// Forward pass of one node x (l_0 values) through one network theta (P values).
// z receives the pre-activations of every layer: layer k (1-based) at offset sum_{i<k} l_i (i >= 1);
// the output N(x) is the last l_L values. zero (optional, l_1 + ... + l_{L-1} flags at the same
// offsets): hidden pre-activations known to vanish identically around x (the 1-D quadrature of a
// degenerate net, kinks1d.h) are set to exactly 0, so that relu'(0) = 0 applies instead of the sign
// of a rounding error.
template <class T, class X>
RF_HD void forward_node(const Layout& lay, const T* theta, const X* x, T* z, const uint8_t* zero = nullptr) {
  int64_t in_off = 0, out_off = 0;
  for (int k = 0; k < lay.num_layers; ++k) {
    const int ni = lay.widths[k], no = lay.widths[k + 1];
    const T* W = theta + lay.w_offset[k];
    const T* b = theta + lay.b_offset[k];
    for (int o = 0; o < no; ++o) {
      T acc = T(0);
      for (int i = 0; i < ni; ++i) {
        const T a = k == 0 ? static_cast<T>(x[i]) : relu(z[in_off + i]);
        acc += W[static_cast<int64_t>(o) * ni + i] * a;
      }
      const bool vanish = zero != nullptr && k + 1 < lay.num_layers && zero[out_off + o] != 0;
      z[out_off + o] = vanish ? T(0) : acc + b[o];
    }
    if (k > 0) in_off += ni;
    out_off += no;
  }
}

// Pre-activation z_i = W_i x + b_i of one neuron of the first layer (w_i: its d weights): the
// operations of forward_node's first layer in its order (a zero, the products added in input order,
// then the bias), so that a kernel that cannot store a node's z (a GPU thread of a wide shallow net)
// gets the same bits as forward_node.
template <class T, class X>
RF_HD T hidden_preactivation(int d, const T* w_i, T b_i, const X* x) {
  T acc = T(0);
  for (int c = 0; c < d; ++c) acc += w_i[c] * static_cast<T>(x[c]);
  return acc + b_i;
}

// N(x) (out values) of a shallow net [d, H, out] without storing z (H values per node: too many for
// a GPU thread when H ~ 10^5): the operations of forward_node for L = 2 in its order (each output's
// sum over the neurons in neuron order, then its bias), hence forward_node's bits.
template <class T, class X>
RF_HD void shallow_forward_node(const Layout& lay, const T* theta, const X* x, T* n_out) {
  const int d = lay.widths[0], H = lay.widths[1], out = lay.widths[2];
  const T* W1 = theta + lay.w_offset[0];
  const T* b1 = theta + lay.b_offset[0];
  const T* V = theta + lay.w_offset[1];
  const T* c = theta + lay.b_offset[1];
  for (int o = 0; o < out; ++o) n_out[o] = T(0);
  for (int i = 0; i < H; ++i) {
    const T a = relu(hidden_preactivation(d, W1 + static_cast<int64_t>(i) * d, b1[i], x));
    for (int o = 0; o < out; ++o) n_out[o] += V[static_cast<int64_t>(o) * H + i] * a;
  }
  for (int o = 0; o < out; ++o) n_out[o] = n_out[o] + c[o];
}

// Risk of one node and the derivative of the risk with respect to the output:
// returns w |N - y|^2 (in double) and writes g_o = 2 w (N_o - y_o).
template <class T>
RF_HD double node_loss(int out, const T* n_out, const double* y, double w, T* g) {
  double risk = 0.0;
  for (int o = 0; o < out; ++o) {
    const double r = static_cast<double>(n_out[o]) - y[o];
    risk += w * (r * r);
    g[o] = static_cast<T>(2.0 * w * r);
  }
  return risk;
}

// Backward pass of one node: g = d risk / d N(x) (l_L values), z from forward_node; accumulates the
// gradient into grad (P values, layout of theta). da, db: scratch of max_width(lay) values each.
template <class T, class X, class A>
RF_HD void backward_node(const Layout& lay, const T* theta, const X* x, const T* z, const T* g, T* da,
                         T* db, A* grad) {
  const int L = lay.num_layers;
  int64_t off[kMaxLayers + 1];  // offset of z_k in z, k = 1..L at off[k-1]
  off[0] = 0;
  for (int k = 1; k < L; ++k) off[k] = off[k - 1] + lay.widths[k];
  T* delta = da;
  T* next = db;
  for (int o = 0; o < lay.widths[L]; ++o) delta[o] = g[o];
  for (int k = L - 1; k >= 0; --k) {
    const int ni = lay.widths[k], no = lay.widths[k + 1];
    const T* W = theta + lay.w_offset[k];
    A* gW = grad + lay.w_offset[k];
    A* gb = grad + lay.b_offset[k];
    for (int o = 0; o < no; ++o) {
      gb[o] += static_cast<A>(delta[o]);
      for (int i = 0; i < ni; ++i) {
        const T a = k == 0 ? static_cast<T>(x[i]) : relu(z[off[k - 1] + i]);
        gW[static_cast<int64_t>(o) * ni + i] += static_cast<A>(delta[o] * a);
      }
    }
    if (k > 0) {
      for (int i = 0; i < ni; ++i) {
        T s = T(0);
        for (int o = 0; o < no; ++o) s += delta[o] * W[static_cast<int64_t>(o) * ni + i];
        next[i] = active(z[off[k - 1] + i]) ? s : T(0);
      }
      T* t = delta;
      delta = next;
      next = t;
    }
  }
}

// Shallow nets [d, H, out]: the gradient of hidden neuron i from its moments over the nodes,
//   U[o][c] = sum_j g_jo [z_ij > 0] x_jc  (c < d),   U[o][d] = sum_j g_jo [z_ij > 0],
// with g_jo = 2 w_j (N_o(x_j) - y_jo):
//   dW_ic = sum_o v_oi U[o][c],   db_i = sum_o v_oi U[o][d],
//   dv_oi = sum_j g_jo a_ij = sum_c W_ic U[o][c] + b_i U[o][d]   (a_ij = [z_ij > 0] z_ij).
// U[o][c] is read at U[o * u_so + c * u_sc]; v_oi at v[o * v_s]; dv_oi written to dv[o * v_s].
template <class A>
RF_HD void shallow_neuron_grad(int d, int out, const A* w_i, A b_i, const A* v, int64_t v_s, const A* U,
                               int64_t u_so, int64_t u_sc, A* dW_i, A* db_i, A* dv) {
  for (int c = 0; c < d; ++c) {
    A s = A(0);
    for (int o = 0; o < out; ++o) s += v[o * v_s] * U[o * u_so + c * u_sc];
    dW_i[c] = s;
  }
  A t = A(0);
  for (int o = 0; o < out; ++o) t += v[o * v_s] * U[o * u_so + d * u_sc];
  *db_i = t;
  for (int o = 0; o < out; ++o) {
    A s = A(0);
    for (int c = 0; c < d; ++c) s += w_i[c] * U[o * u_so + c * u_sc];
    dv[o * v_s] = s + b_i * U[o * u_so + d * u_sc];
  }
}

}  // namespace net
}  // namespace reluflow
