// CPU loops of the scrambled Sobol generator: parallel over points, each value a pure function of
// (seed, dimension, point index), so the result does not depend on the number of threads.
#include <cstddef>
#include <vector>

#include "cpu/parallel_policy.h"
#include "reluflow/sobol.h"
#include "cpu/sampling_cpu.h"

namespace reluflow {

void sobol_prepare(uint64_t seed, int d, bool scramble, uint32_t* dirs, uint32_t* shifts) {
  for (int k = 0; k < d; ++k) {
    const uint32_t dim = static_cast<uint32_t>(k);
    if (scramble) {
      sobol_scramble_directions(seed, dim, dirs + 32 * k);
      shifts[k] = sobol_shift(seed, dim);
    } else {
      const uint32_t* v = sobol_direction_table(dim);
      for (int b = 0; b < 32; ++b) dirs[32 * k + b] = v[b];
      shifts[k] = 0u;
    }
  }
}

void sobol_bits_cpu(int64_t n, int d, uint64_t seed, bool scramble, uint32_t* out) {
  std::vector<uint32_t> dirs(static_cast<size_t>(d) * 32), shifts(d);
  sobol_prepare(seed, d, scramble, dirs.data(), shifts.data());
  const uint32_t* dp = dirs.data();
  const uint32_t* sp = shifts.data();
#pragma omp parallel for schedule(static) if (n * d > kMinParallelSamples)
  for (int64_t j = 0; j < n; ++j) {
    for (int k = 0; k < d; ++k) {
      out[j * d + k] = sobol_point(dp + 32 * k, static_cast<uint32_t>(j)) ^ sp[k];
    }
  }
}

void sobol_uniforms_cpu(int64_t n, int d, uint64_t seed, double* out) {
  std::vector<uint32_t> dirs(static_cast<size_t>(d) * 32), shifts(d);
  sobol_prepare(seed, d, true, dirs.data(), shifts.data());
  const uint32_t* dp = dirs.data();
  const uint32_t* sp = shifts.data();
#pragma omp parallel for schedule(static) if (n * d > kMinParallelSamples)
  for (int64_t j = 0; j < n; ++j) {
    for (int k = 0; k < d; ++k) {
      out[j * d + k] = sobol_uniform(dp + 32 * k, sp[k], static_cast<uint32_t>(j));
    }
  }
}

}  // namespace reluflow
