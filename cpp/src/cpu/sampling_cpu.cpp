// CPU loops of the input samplers (Monte-Carlo and quasi-Monte-Carlo nodes): parallel over nodes,
// each node a pure function of (seed, step, index), so the result does not depend on the threads.
#include <cstddef>
#include <vector>

#include "cpu/parallel_policy.h"
#include "reluflow/dists.h"
#include "reluflow/philox.h"
#include "reluflow/sobol.h"
#include "cpu/sampling_cpu.h"

namespace reluflow {

void mc_nodes_cpu(uint64_t seed, uint32_t step, int64_t n, InputDist dist, double* out) {
  const int d = dist.dim;
#pragma omp parallel for schedule(static) if (n * d > kMinParallelSamples)
  for (int64_t j = 0; j < n; ++j) {
    double* x = out + j * d;  // the node's uniforms, then the node in place
    for (int k = 0; k < d; ++k)
      x[k] = philox_uniform_at(seed, kStreamMonteCarlo, step, static_cast<uint32_t>(j), static_cast<uint32_t>(k));
    input_dist_node(dist, x, x);
  }
}

void dist_from_uniform_cpu(const double* u, int64_t n, InputDist dist, double* out) {
  const int d = dist.dim;
#pragma omp parallel for schedule(static) if (n * d > kMinParallelSamples)
  for (int64_t j = 0; j < n; ++j) input_dist_node(dist, u + j * d, out + j * d);
}

void qmc_nodes_cpu(int64_t n, uint64_t seed, InputDist dist, double* out) {
  // the uniforms, then the distribution's transform in place (each node reads only itself)
  sobol_uniforms_cpu(n, dist.dim, seed, out);
  dist_from_uniform_cpu(out, n, dist, out);
}

}  // namespace reluflow
