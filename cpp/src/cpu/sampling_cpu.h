// CPU loops of the Sobol generator and of the input samplers (sobol_cpu.cpp, sampling_cpu.cpp);
// the per-point math is in cpp/include/reluflow/sobol.h and dists.h.
#pragma once
#include <cstdint>

#include "reluflow/dists.h"

namespace reluflow {

// Scrambled direction numbers dirs[dim*32 + b] and digital shifts shifts[dim] of dims 0..d-1
// (1 <= d <= kSobolMaxDim). With scramble == false: the unscrambled table and zero shifts.
void sobol_prepare(uint64_t seed, int d, bool scramble, uint32_t* dirs, uint32_t* shifts);

// out[j*d + k] = 32-digit word of Sobol point j (j < n <= 2^32 - 1) in dimension k.
void sobol_bits_cpu(int64_t n, int d, uint64_t seed, bool scramble, uint32_t* out);

// out[j*d + k] = (word + 0.5) * 2^-32 of the scrambled Sobol point j in dimension k.
void sobol_uniforms_cpu(int64_t n, int d, uint64_t seed, double* out);

// Monte-Carlo nodes: node j (out[j*dim .. j*dim + dim - 1]) = input_dist_node(dist, u_j) of the uniforms
// u_jk = philox_uniform_at(seed, kStreamMonteCarlo, step, j, k), for j < n.
void mc_nodes_cpu(uint64_t seed, uint32_t step, int64_t n, InputDist dist, double* out);

// Nodes of given uniforms: node j = input_dist_node(dist, u[j*dim ..]) for j < n (out may be u).
void dist_from_uniform_cpu(const double* u, int64_t n, InputDist dist, double* out);

// Quasi-Monte-Carlo nodes: the scrambled Sobol uniforms of (n, dist.dim, seed) through dist.
void qmc_nodes_cpu(int64_t n, uint64_t seed, InputDist dist, double* out);

}  // namespace reluflow
