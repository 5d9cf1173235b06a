// The flat parameter layout of SPEC §1: for k = 1..L, W_k (l_k x l_{k-1}, row-major) then b_k.
#pragma once
#include <cstdint>
#include "rf_hd.h"

namespace reluflow {

constexpr int kMaxLayers = 16;

struct Layout {
  int num_layers = 0;                 // L (number of affine maps)
  int widths[kMaxLayers + 1] = {0};   // l_0 .. l_L
  int64_t w_offset[kMaxLayers] = {0}; // offset of W_{k+1} in the flat vector
  int64_t b_offset[kMaxLayers] = {0}; // offset of b_{k+1}
  int64_t num_params = 0;             // P
};

// Fills the offsets of `lay` from its widths; returns P.
RF_HD int64_t layout_finalize(Layout& lay) {
  int64_t off = 0;
  for (int k = 0; k < lay.num_layers; ++k) {
    lay.w_offset[k] = off;
    off += static_cast<int64_t>(lay.widths[k + 1]) * lay.widths[k];
    lay.b_offset[k] = off;
    off += lay.widths[k + 1];
  }
  lay.num_params = off;
  return off;
}

}  // namespace reluflow
