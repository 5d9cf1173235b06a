// reluflow's scrambled Sobol sequence: Joe–Kuo direction numbers, random linear matrix scrambling
// (LMS) and a digital shift, all random bits from Philox. The numpy twin is
// python/reluflow/_sobol.py; both give bitwise the same points (tests/test_sobol.py).
//
// Digits. A 32-bit word x is the binary fraction 0.x_0 x_1 ... x_31, digit k = bit (31 - k) of x
// (the most significant bit is the first digit, weight 1/2). Direction numbers, scrambling-matrix
// rows and points all use this layout.
//
// Points, natural order. Point `index` in dimension dim is
//     x = shift[dim] ^ XOR_{b : bit b of index is set} V'[dim][b],
// a pure function of the index, so every GPU thread can compute its own point.
//
// Scrambling of dimension dim (seed -> V'): a 32x32 binary matrix L, lower triangular with unit
// diagonal, multiplies every direction number V[dim][b] (as the column of its 32 digits) over GF(2):
//     digit r of V'[dim][b] = parity(row_r & V[dim][b]),
// where row_r is a 32-bit word in the digit layout (bit 31 - k holds L[r][k]):
//     w_r   = word 0 of Philox-4x32-10 under key (seed & 0xffffffff, seed >> 32) of the counter
//             (r, dim, 0, kStreamSobolScramble = 3), r = 0..31,
//     row_r = (w_r & digits 0..r-1) | digit r,  i.e. (w_r & (r ? ~0u << (32 - r) : 0)) | (1u << (31 - r)).
// Digit r of a scrambled point thus depends only on digits 0..r of the unscrambled one, bijectively,
// so every (t, m, s)-net property of the Sobol points is kept. The digital shift is
//     shift[dim] = word 0 of the Philox counter (32, dim, 0, 3), XORed onto every point.
//
// Uniforms: u = (x + 0.5) * 2^-32, exact in binary64 and strictly inside (0, 1).
#pragma once
#include <cstdint>

#include "philox.h"
#include "rf_hd.h"
#include "sobol_directions.h"

namespace reluflow {

// Parity (XOR of all bits) of a 32-bit word: 0 or 1.
RF_HD uint32_t sobol_parity(uint32_t x) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint32_t>(__popc(x)) & 1u;
#else
  x ^= x >> 16;
  x ^= x >> 8;
  x ^= x >> 4;
  x ^= x >> 2;
  x ^= x >> 1;
  return x & 1u;
#endif
}

// Row r (0..31) of the LMS matrix of dimension dim, in the digit layout (bit 31 - k = L[r][k]).
RF_HD uint32_t sobol_lms_row(uint64_t seed, uint32_t dim, uint32_t r) {
  const uint32_t w = philox_words(seed, kStreamSobolScramble, 0u, r, dim).v[0];
  const uint32_t below = r == 0 ? 0u : (0xFFFFFFFFu << (32u - r));  // digits 0 .. r-1
  return (w & below) | (1u << (31u - r));
}

// The digital shift of dimension dim.
RF_HD uint32_t sobol_shift(uint64_t seed, uint32_t dim) {
  return philox_words(seed, kStreamSobolScramble, 0u, 32u, dim).v[0];
}

// LMS of 32 direction numbers `in` (any table, e.g. a device copy) with the matrix of (seed, dim).
RF_HD void sobol_scramble(uint64_t seed, uint32_t dim, const uint32_t* in, uint32_t out[32]) {
  for (int b = 0; b < 32; ++b) out[b] = 0u;
  for (uint32_t r = 0; r < 32; ++r) {
    const uint32_t row = sobol_lms_row(seed, dim, r);
    for (int b = 0; b < 32; ++b) out[b] |= sobol_parity(row & in[b]) << (31u - r);
  }
}

// The scrambled direction numbers V'[dim][0..31] of (seed, dim); dim < kSobolMaxDim.
RF_HD void sobol_scramble_directions(uint64_t seed, uint32_t dim, uint32_t out[32]) {
  sobol_scramble(seed, dim, sobol_direction_table(dim), out);
}

// XOR of the direction numbers of the set bits of index (no shift): the point as 32 digits.
RF_HD uint32_t sobol_point(const uint32_t* dirs32, uint32_t index) {
  uint32_t x = 0u;
  for (int b = 0; index != 0u; ++b, index >>= 1) {
    if (index & 1u) x ^= dirs32[b];
  }
  return x;
}

// 32 digits -> double in (0, 1): (x + 0.5) * 2^-32, exact.
RF_HD double sobol_bits_to_uniform(uint32_t x) {
  return (static_cast<double>(x) + 0.5) * 2.3283064365386962890625e-10;  // 2^-32
}

// Uniform of point `index` for scrambled directions dirs32 and digital shift `shift`.
RF_HD double sobol_uniform(const uint32_t* dirs32, uint32_t shift, uint32_t index) {
  return sobol_bits_to_uniform(sobol_point(dirs32, index) ^ shift);
}

}  // namespace reluflow
