// CPU loops of reluflow: declarations shared by the bindings (module.cpp) and the loop files.
#pragma once
#include <cstdint>
#include <string>

namespace reluflow {

// out[i*4 + c] = word c of Philox4x32-10(ctr[i*4 .. i*4+3], key) for i < n.
void philox_block(const uint32_t* ctr, int64_t n, uint32_t k0, uint32_t k1, uint32_t* out);

// out[j*d + k] = uniform number k of sample j (index = first + j) in (0, 1), float64.
void philox_uniforms(uint64_t seed, uint32_t stream, uint32_t step, uint32_t first, int64_t n,
                     int d, double* out);

int max_threads();

}  // namespace reluflow
