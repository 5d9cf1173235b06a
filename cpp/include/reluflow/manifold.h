// The normalized manifold of the seeds (SPEC §4): every hidden neuron's (w_i, b_i) on the unit sphere.
// Tangent projection of a gradient and the retraction, per network (RF_HD: the integrator loops on
// the host and, later, their CUDA kernels share them).
#pragma once
#include <math.h>
#include <stdint.h>

#include "layout.h"
#include "rf_hd.h"

namespace reluflow {

// Removes from g (P,) the component along hidden neuron i of layer k's (w_i, b_i) of theta (P,).
template <class V>
RF_HD void project_neuron(const Layout& lay, const V* theta, double* g, int k, int i) {
  const int li = lay.widths[k];
  const V* W = theta + lay.w_offset[k] + static_cast<int64_t>(i) * li;
  double* gW = g + lay.w_offset[k] + static_cast<int64_t>(i) * li;
  const double b = theta[lay.b_offset[k] + i];
  double& gb = g[lay.b_offset[k] + i];
  double radial = 0.0;
  for (int j = 0; j < li; ++j) radial += gW[j] * static_cast<double>(W[j]);
  radial += gb * b;
  for (int j = 0; j < li; ++j) gW[j] -= radial * static_cast<double>(W[j]);
  gb -= radial * b;
}

// Removes from g (P,) the component along every hidden neuron's (w_i, b_i) of theta (P,).
template <class V>
RF_HD void project_tangent(const Layout& lay, const V* theta, double* g) {
  for (int k = 0; k + 1 < lay.num_layers; ++k)
    for (int i = 0; i < lay.widths[k + 1]; ++i) project_neuron(lay, theta, g, k, i);
}

// Renormalizes hidden neuron i of layer k's (w_i, b_i) of theta (P,) to unit norm (zero stays zero).
template <class V>
RF_HD void retract_neuron(const Layout& lay, V* theta, int k, int i) {
  const int li = lay.widths[k];
  V* W = theta + lay.w_offset[k] + static_cast<int64_t>(i) * li;
  V& b = theta[lay.b_offset[k] + i];
  double s = static_cast<double>(b) * b;
  for (int j = 0; j < li; ++j) s += static_cast<double>(W[j]) * W[j];
  if (!(s > 0)) return;
  const double inv = 1.0 / sqrt(s);
  for (int j = 0; j < li; ++j) W[j] = static_cast<V>(W[j] * inv);
  b = static_cast<V>(b * inv);
}

// Renormalizes every hidden neuron's (w_i, b_i) of theta (P,) to unit norm (a zero neuron stays zero).
template <class V>
RF_HD void retract(const Layout& lay, V* theta) {
  for (int k = 0; k + 1 < lay.num_layers; ++k)
    for (int i = 0; i < lay.widths[k + 1]; ++i) retract_neuron(lay, theta, k, i);
}

// Hidden neurons of a network (every layer but the output), and neuron u's (layer, index): the
// device kernels run one thread per neuron.
RF_HD int64_t hidden_neurons(const Layout& lay) {
  int64_t n = 0;
  for (int k = 0; k + 1 < lay.num_layers; ++k) n += lay.widths[k + 1];
  return n;
}

RF_HD void neuron_at(const Layout& lay, int64_t u, int* k, int* i) {
  int kk = 0;
  while (u >= lay.widths[kk + 1]) u -= lay.widths[kk++ + 1];
  *k = kk;
  *i = static_cast<int>(u);
}

}  // namespace reluflow
