// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11), and the
// mappings reluflow uses from its 32-bit words to uniforms. Every random number in reluflow is a pure
// function of (seed, stream, step, sample index, block), never of a thread or block index, so the
// numpy reference (python/reluflow/_philox.py) and the C++/CUDA kernels draw bitwise the same values.
//
// Addressing: key = (seed & 0xffffffff, seed >> 32), counter = (index, block, step, stream).
// One call gives 4 words = 2 uniforms; dimension k of sample `index` uses block k/2, word pair k%2.
#pragma once
#include <cstdint>
#include "rf_hd.h"

namespace reluflow {

struct Philox4x32 {
  uint32_t v[4];
};

RF_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// The ten-round Philox-4x32 bijection of `ctr` under key (k0, k1).
RF_HD Philox4x32 philox4x32_10(Philox4x32 ctr, uint32_t k0, uint32_t k1) {
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(M0, ctr.v[0], hi0, lo0);
    philox_mulhilo(M1, ctr.v[2], hi1, lo1);
    Philox4x32 next;
    next.v[0] = hi1 ^ ctr.v[1] ^ k0;
    next.v[1] = lo1;
    next.v[2] = hi0 ^ ctr.v[3] ^ k1;
    next.v[3] = lo0;
    ctr = next;
    k0 += W0;
    k1 += W1;
  }
  return ctr;
}

// The four words at address (seed, stream, step, index, block).
RF_HD Philox4x32 philox_words(uint64_t seed, uint32_t stream, uint32_t step, uint32_t index,
                              uint32_t block) {
  Philox4x32 ctr;
  ctr.v[0] = index;
  ctr.v[1] = block;
  ctr.v[2] = step;
  ctr.v[3] = stream;
  return philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Two 32-bit words -> a double in the open interval (0, 1): the top 52 of their 64 bits, k, give
// (k + 0.5) * 2^-52. Both operations are exact in binary64, so every platform gets the same double.
RF_HD double philox_uniform(uint32_t hi, uint32_t lo) {
  const uint64_t k = ((static_cast<uint64_t>(hi) << 32) | lo) >> 12;
  return (static_cast<double>(k) + 0.5) * 2.220446049250313080847263336181640625e-16;  // 2^-52
}

// Uniform number `dim` of sample `index`: one Philox call serves dimensions 2*block and 2*block+1.
RF_HD double philox_uniform_at(uint64_t seed, uint32_t stream, uint32_t step, uint32_t index,
                               uint32_t dim) {
  const Philox4x32 w = philox_words(seed, stream, step, index, dim >> 1);
  return (dim & 1u) ? philox_uniform(w.v[2], w.v[3]) : philox_uniform(w.v[0], w.v[1]);
}

// Streams: independent sequences for the same seed.
enum PhiloxStream : uint32_t {
  kStreamInit = 1,        // standard-normal initial parameters (Problem.init)
  kStreamMonteCarlo = 2,  // MonteCarlo nodes
  kStreamSobolScramble = 3,  // random scrambling matrices and shifts of QuasiMonteCarlo
};

}  // namespace reluflow
