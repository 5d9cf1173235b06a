// CPU parallel structure for the random-number fills; the math is in philox.h.
#include "cpu/kernels_cpu.h"

#include "reluflow/philox.h"
#ifdef RELUFLOW_OPENMP
#include <omp.h>
#endif

namespace reluflow {

void philox_block(const uint32_t* ctr, int64_t n, uint32_t k0, uint32_t k1, uint32_t* out) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    Philox4x32 c;
    for (int w = 0; w < 4; ++w) c.v[w] = ctr[i * 4 + w];
    const Philox4x32 r = philox4x32_10(c, k0, k1);
    for (int w = 0; w < 4; ++w) out[i * 4 + w] = r.v[w];
  }
}

void philox_uniforms(uint64_t seed, uint32_t stream, uint32_t step, uint32_t first, int64_t n,
                     int d, double* out) {
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < n; ++j) {
    for (int k = 0; k < d; ++k) {
      out[j * d + k] =
          philox_uniform_at(seed, stream, step, static_cast<uint32_t>(first + j), static_cast<uint32_t>(k));
    }
  }
}

int max_threads() {
#ifdef RELUFLOW_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace reluflow
