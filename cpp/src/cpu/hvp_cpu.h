// Hessian-vector products of the weighted risk sum_j w_j |N_k(x_j) - y_j|^2 on the CPU (SPEC §8): the
// loop over networks x direction blocks x node chunks around hvp::node_hvp (reluflow/hvp.h), float64.
//
// Parallel structure (deterministic): the N nodes are cut into chunks whose number and size depend on N
// and on the size B x P of a network's result only (never on K or the thread count); the B directions of a network into blocks of a size that
// depends on P only (and changes no value: each direction's arithmetic is its own, the block only
// decides which zero rows are skipped). OpenMP runs over (network, direction block, chunk) work items; each item runs its nodes in order, accumulating into its own buffer. A network's
// chunk results are then summed in chunk order. So the results are bitwise the same for any number of
// threads, and a network's results the same alone or in any batch.
#pragma once
#include <cstdint>

#include "reluflow/layout.h"

namespace reluflow {

struct HVPProblem {
  Layout lay;
  int64_t K = 0;                 // networks
  int64_t N = 0;                 // nodes
  int64_t B = 0;                 // directions per network
  const double* theta = nullptr;  // (K, P)
  const double* V = nullptr;      // (K, B, P)
  const double* x = nullptr;      // (N, d)
  const double* w = nullptr;      // (N,)
  const double* y = nullptr;      // (N, out)
  // (N, l_1 + ... + l_{L-1}) or nullptr: hidden pre-activations set to exactly 0 (Nodes.zero)
  const uint8_t* zero = nullptr;
  // Optional rank-one terms added to every product, M per network (the moving kinks of the exact 1-D
  // quadrature): hv_kb += sum_i c_ki (u_ki . v_kb) u_ki. kink_c (K, M), kink_u (K, M, P).
  int64_t M = 0;
  const double* kink_c = nullptr;
  const double* kink_u = nullptr;
};

// risk (K,), grad (K, P) and hv (K, B, P) = H_k V_k (plus the kink terms), all float64 (risk and grad may be nullptr when
// not wanted). The GIL must be released by the caller.
void risk_grad_hvp_cpu(const HVPProblem& p, double* risk, double* grad, double* hv);

}  // namespace reluflow
