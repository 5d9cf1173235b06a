// Hessian-vector products of the per-node loss w |N(x) - y|^2 of one network (SPEC §8), written once
// for host and device (RF_HD); the loops over nodes, networks and direction blocks live elsewhere
// (cpp/src/cpu/hvp_cpu.cpp).
//
// The Hessian is that of the weighted sum with the activation pattern at theta held fixed: relu'' = 0
// and relu'(z) = 1 iff z > 0 (relu'(0) = 0), what autodiff of the sampled risk gives. It is computed as
// forward-mode differentiation of the backward pass (the R-operator), as the numpy reference
// backends/reference.py::_grad_hvp_chunk does:
//   forward tangent   dz_k = dW_k a_{k-1} + W_k da_{k-1} + db_k,   da_k = relu'(z_k) dz_k   (da_0 = 0)
//   gradient          delta_L = 2 w (N - y),   delta_{k-1} = relu'(z_{k-1}) W_k^T delta_k
//   its tangent       ddelta_L = 2 w dz_L,
//                     ddelta_{k-1} = relu'(z_{k-1}) (W_k^T ddelta_k + dW_k^T delta_k)
//   H V, layer k      dW_k += ddelta_k a_{k-1}^T + delta_k da_{k-1}^T,   db_k += ddelta_k
// where (dW_k, db_k) are the components of a direction v. One call handles B directions at once: the
// direction index is the innermost (contiguous) one of every tangent array, so that the loops over it
// are unit-stride (SIMD lanes on the CPU).
#pragma once
#include <cstdint>

#include "layout.h"
#include "net.h"
#include "rf_hd.h"

namespace reluflow {
namespace hvp {

// Scratch of node_hvp, in elements of T, for B directions: z and delta (A values each, A the number of
// pre-activations of a node, net::num_activations), dz (A * B), dd (2 * max_width * B).
RF_HD int64_t scratch_size(const Layout& lay, int B) {
  const int64_t A = net::num_activations(lay);
  return 2 * A + A * B + 2 * static_cast<int64_t>(net::max_width(lay)) * B;
}

// Flag scratch of node_hvp (bytes): which tangent rows (dz: A, dd: 2 * max_width) are nonzero.
RF_HD int64_t flag_size(const Layout& lay) {
  return net::num_activations(lay) + 2 * static_cast<int64_t>(net::max_width(lay));
}

// Whether row q of the directions may be nonzero (node_hvp's vnz).
RF_HD bool row_nonzero(const uint8_t* vnz, int64_t q) {
  return vnz == nullptr || vnz[q] != 0;
}

// One node x (l_0 values), target value y (l_L values), weight w, through one network theta (P values):
// adds to Ht the Hessian of w |N(x) - y|^2 applied to B directions, and (when grad != nullptr) its
// gradient to grad (P values); returns the node's risk w |N(x) - y|^2.
//   Vt: the directions, parameter-major: component q of direction b at Vt[q * ldv + b] (q < P, b < B);
//   Ht: the products in the same layout, Ht[q * ldh + b] += (H v_b)_q.
//   vnz: nullptr, or P flags: vnz[q] = 0 says that row q of Vt is zero for every direction of the
//     block. Rows known to be zero, and the tangent rows that only they feed, are skipped (a block of
//     unit directions, the Hessian's, touches few rows); skipping adds no nonzero term, so the values
//     are those of the dense computation (at most the sign of a zero result differs).
//   zero: nullptr or the hidden pre-activations forced to exactly 0 (net::forward_node's flags; the
//     1-D quadrature of degenerate nets): inactive there, so their tangents do not propagate.
//   scratch: scratch_size(lay, B) values of T; flags: flag_size(lay) bytes.
// The sums run in a fixed order (layers, then outputs, then inputs), so a direction's products have
// the same values for any B and any position of the direction in its block.
template <class T>
RF_HD double node_hvp(const Layout& lay, const T* theta, const T* x, const double* y, double w,
                      const uint8_t* zero, int B, const T* Vt, int64_t ldv, const uint8_t* vnz, T* Ht,
                      int64_t ldh, T* grad, T* scratch, uint8_t* flags) {
  const int L = lay.num_layers;
  const int64_t A = net::num_activations(lay);
  const int64_t mw = net::max_width(lay);
  T* z = scratch;
  T* delta = z + A;
  T* dz = delta + A;
  T* dd_cur = dz + A * B;
  T* dd_nxt = dd_cur + mw * B;
  uint8_t* dz_nz = flags;  // dz row nonzero (for some direction of the block)
  uint8_t* dd_cur_nz = flags + A;
  uint8_t* dd_nxt_nz = dd_cur_nz + mw;
  int64_t off[kMaxLayers + 1];  // offset of layer k's outputs z_{k+1} in z (and delta, dz/B): off[k]
  off[0] = 0;
  for (int k = 0; k < L; ++k) off[k + 1] = off[k] + lay.widths[k + 1];

  // forward (net.h) and the loss; delta of the output layer = 2 w (N - y)
  net::forward_node(lay, theta, x, z, zero);
  const double risk = net::node_loss(lay.widths[L], z + off[L - 1], y, w, delta + off[L - 1]);

  // the gradient's backward pass, every layer's delta kept (the tangent pass reads them)
  for (int k = L - 1; k >= 0; --k) {
    const int ni = lay.widths[k], no = lay.widths[k + 1];
    const T* W = theta + lay.w_offset[k];
    const T* dk = delta + off[k];
    if (grad != nullptr) {
      T* gW = grad + lay.w_offset[k];
      T* gb = grad + lay.b_offset[k];
      for (int o = 0; o < no; ++o) {
        gb[o] += dk[o];
        for (int i = 0; i < ni; ++i) {
          const T a = k == 0 ? x[i] : net::relu(z[off[k - 1] + i]);
          gW[static_cast<int64_t>(o) * ni + i] += dk[o] * a;
        }
      }
    }
    if (k > 0) {
      for (int i = 0; i < ni; ++i) {
        T s = T(0);
        for (int o = 0; o < no; ++o) s += dk[o] * W[static_cast<int64_t>(o) * ni + i];
        delta[off[k - 1] + i] = net::active(z[off[k - 1] + i]) ? s : T(0);
      }
    }
  }

  // forward tangent: dz of every layer (a row flagged zero is not written); a hidden tangent is read
  // only where its neuron is active (a_i = 0 and da_i = 0 otherwise)
  for (int k = 0; k < L; ++k) {
    const int ni = lay.widths[k], no = lay.widths[k + 1];
    const T* W = theta + lay.w_offset[k];
    for (int o = 0; o < no; ++o) {
      T* dzo = dz + (off[k] + o) * B;
      bool nz = row_nonzero(vnz, lay.b_offset[k] + o);
      if (nz) {
        const T* vb = Vt + (lay.b_offset[k] + o) * ldv;
        for (int b = 0; b < B; ++b) dzo[b] = vb[b];
      }
      for (int i = 0; i < ni; ++i) {
        const int64_t q = lay.w_offset[k] + static_cast<int64_t>(o) * ni + i;
        const bool v_nz = row_nonzero(vnz, q);
        const bool t_nz = k > 0 && net::active(z[off[k - 1] + i]) && dz_nz[off[k - 1] + i];
        if (k > 0 && !net::active(z[off[k - 1] + i])) continue;
        if (!v_nz && !t_nz) continue;
        if (!nz) {
          for (int b = 0; b < B; ++b) dzo[b] = T(0);
          nz = true;
        }
        const T a = k == 0 ? x[i] : z[off[k - 1] + i];
        const T* vw = Vt + q * ldv;
        if (t_nz) {
          const T wi = W[static_cast<int64_t>(o) * ni + i];
          const T* dzi = dz + (off[k - 1] + i) * B;
          if (v_nz) {
            for (int b = 0; b < B; ++b) dzo[b] += vw[b] * a + wi * dzi[b];
          } else {
            for (int b = 0; b < B; ++b) dzo[b] += wi * dzi[b];
          }
        } else {
          for (int b = 0; b < B; ++b) dzo[b] += vw[b] * a;
        }
      }
      dz_nz[off[k] + o] = nz ? 1 : 0;
    }
  }

  // tangent of the backward pass, accumulated into Ht
  {
    const T two_w = static_cast<T>(2.0 * w);
    const int out = lay.widths[L];
    for (int o = 0; o < out; ++o) {
      dd_cur_nz[o] = dz_nz[off[L - 1] + o];
      if (!dd_cur_nz[o]) continue;
      const T* dzo = dz + (off[L - 1] + o) * B;
      T* ddo = dd_cur + static_cast<int64_t>(o) * B;
      for (int b = 0; b < B; ++b) ddo[b] = two_w * dzo[b];
    }
  }
  for (int k = L - 1; k >= 0; --k) {
    const int ni = lay.widths[k], no = lay.widths[k + 1];
    const T* W = theta + lay.w_offset[k];
    const T* dk = delta + off[k];
    for (int o = 0; o < no; ++o) {
      const bool o_nz = dd_cur_nz[o] != 0;
      const T* ddo = dd_cur + static_cast<int64_t>(o) * B;
      if (o_nz) {
        T* hb = Ht + (lay.b_offset[k] + o) * ldh;
        for (int b = 0; b < B; ++b) hb[b] += ddo[b];
      }
      for (int i = 0; i < ni; ++i) {
        T* hw = Ht + (lay.w_offset[k] + static_cast<int64_t>(o) * ni + i) * ldh;
        if (k == 0) {
          if (!o_nz) continue;
          const T a = x[i];
          for (int b = 0; b < B; ++b) hw[b] += ddo[b] * a;
        } else if (net::active(z[off[k - 1] + i])) {
          const T a = z[off[k - 1] + i];
          const T d = dk[o];
          const T* dzi = dz + (off[k - 1] + i) * B;
          const bool i_nz = dz_nz[off[k - 1] + i] != 0;
          if (o_nz && i_nz) {
            for (int b = 0; b < B; ++b) hw[b] += ddo[b] * a + d * dzi[b];
          } else if (o_nz) {
            for (int b = 0; b < B; ++b) hw[b] += ddo[b] * a;
          } else if (i_nz) {
            for (int b = 0; b < B; ++b) hw[b] += d * dzi[b];
          }
        }
      }
    }
    if (k > 0) {
      for (int i = 0; i < ni; ++i) {
        bool nz = false;
        if (net::active(z[off[k - 1] + i])) {  // relu'(z) = 0: no tangent passes
          T* ddn = dd_nxt + static_cast<int64_t>(i) * B;
          for (int o = 0; o < no; ++o) {
            const int64_t q = lay.w_offset[k] + static_cast<int64_t>(o) * ni + i;
            const bool o_nz = dd_cur_nz[o] != 0, v_nz = row_nonzero(vnz, q);
            if (!o_nz && !v_nz) continue;
            if (!nz) {
              for (int b = 0; b < B; ++b) ddn[b] = T(0);
              nz = true;
            }
            const T wi = W[static_cast<int64_t>(o) * ni + i];
            const T d = dk[o];
            const T* ddo = dd_cur + static_cast<int64_t>(o) * B;
            const T* vw = Vt + q * ldv;
            if (o_nz && v_nz) {
              for (int b = 0; b < B; ++b) ddn[b] += wi * ddo[b] + d * vw[b];
            } else if (o_nz) {
              for (int b = 0; b < B; ++b) ddn[b] += wi * ddo[b];
            } else {
              for (int b = 0; b < B; ++b) ddn[b] += d * vw[b];
            }
          }
        }
        dd_nxt_nz[i] = nz ? 1 : 0;
      }
      T* t = dd_cur;
      dd_cur = dd_nxt;
      dd_nxt = t;
      uint8_t* tf = dd_cur_nz;
      dd_cur_nz = dd_nxt_nz;
      dd_nxt_nz = tf;
    }
  }
  return risk;
}

// Adds sum_i c_i (u_i . v) u_i to hv for one direction v (P values): the rank-one Hessian terms of the
// kinks that move with theta in the exact 1-D quadrature (python/reluflow/quadrature.py,
// kink_hessian_terms). The m vectors u_i are sparse, given by their nonzero entries: kink i has
// entries e in [start[i], start[i + 1]), value val[e] at parameter idx[e]. Kinks in order, entries in
// order: a fixed summation order.
template <class T>
RF_HD void add_kink_terms(int64_t m, const double* c, const int64_t* start, const int64_t* idx, const double* val,
                          const T* v, T* hv) {
  for (int64_t i = 0; i < m; ++i) {
    T s = T(0);
    for (int64_t e = start[i]; e < start[i + 1]; ++e) s += static_cast<T>(val[e]) * v[idx[e]];
    s *= static_cast<T>(c[i]);
    for (int64_t e = start[i]; e < start[i + 1]; ++e) hv[idx[e]] += s * static_cast<T>(val[e]);
  }
}

}  // namespace hvp
}  // namespace reluflow
