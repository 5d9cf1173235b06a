// The point sweep of shallow 1-D nets [1, H, out] on the GPU: sorts (CUB radix sort), fixed-order
// double-double scans and binary searches over (network, node) and (network, neuron) pairs, O(N + H)
// work per network instead of the dense kernel's O(N H). Every kernel here is a thin shell around the
// per-thread functions of reluflow/sweep_grid.h (which the host harness cpu/sweep_harness.cpp runs
// sequentially in the CPU tests, with std::stable_sort where CUB sorts: the same unique order); see that
// header for the stages. Deterministic: no atomics, every sum in an order fixed by (N, H, out).
#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "launchers.h"
#include "reluflow/sweep_grid.h"
#include "stream_buffer.cuh"

namespace reluflow::cuda {
namespace {

namespace sg = sweep_grid;
using sg::DD;
using sg::kThreads;

constexpr int64_t kGroupBytes = int64_t(512) << 20;  // scratch of one group of networks, at most
constexpr int64_t kMaxGroup = 65535;                 // networks per group (gridDim.y of the scans)

// One thread per index of a flat range [0, n), grid-stride.
#define RF_FOR_INDEX(e, n) \
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < (n); e += int64_t(gridDim.x) * blockDim.x)

unsigned flat_blocks(int64_t n) { return grid_dim(std::min<int64_t>(std::max<int64_t>(1, (n + kThreads - 1) / kThreads), 65535), "flat"); }

// stage 0
__global__ void __launch_bounds__(kThreads) node_keys_kernel(const double* x, int64_t N, uint64_t* keys, int32_t* idx) {
  RF_FOR_INDEX(j, N) {
    keys[j] = sg::sort_key(x[j]);
    idx[j] = static_cast<int32_t>(j);
  }
}

__global__ void __launch_bounds__(kThreads) gather_nodes_kernel(const int32_t* idx, const double* x, const double* w,
                                                                const double* y, int out, int64_t N, double* xs,
                                                                double* ws, double* ys) {
  RF_FOR_INDEX(j, N) {
    const int64_t s = idx[j];
    xs[j] = x[s];
    ws[j] = w[s];
    for (int o = 0; o < out; ++o) ys[j * out + o] = y[s * out + o];
  }
}

// stage 1: thread per (kk, i)
__global__ void __launch_bounds__(kThreads) neuron_events_kernel(const double* theta, int64_t P, int64_t G, int64_t H,
                                                                 int64_t N, const double* xs, int64_t* split,
                                                                 uint64_t* keys, int32_t* vals) {
  RF_FOR_INDEX(e, G * H) {
    const int64_t kk = e / H, i = e % H;
    sg::neuron_events(theta + kk * P, H, N, xs, kk, i, split + kk * H, keys + kk * 2 * H, vals + kk * 2 * H);
  }
}

// stage 3: thread per sorted event
// c0 = sg::centre(cs, cn) in every kernel that needs it: the sorted nodes (cs = xs, cn = N) for the point
// sweep, the support's ends (cs = {lo, hi}, cn = 2) for the exact sweep (the host cannot read xs).
__global__ void __launch_bounds__(kThreads) event_pieces_kernel(const double* theta, int64_t P, int64_t G, int64_t H,
                                                                int out, int64_t L, const double* cs, int64_t cn,
                                                                const int64_t* split, const int32_t* vals, DD* ev) {
  const double c0 = sg::centre(cs, cn);
  RF_FOR_INDEX(e, G * 2 * H) {
    const int64_t kk = e / (2 * H);
    sg::event_piece(theta + kk * P, H, out, L, split + kk * H, c0, vals[e], ev + e * 2 * out);
  }
}

// stages 4 and 6, phase 1: grid (chunks, segments)
__global__ void __launch_bounds__(kThreads) scan_chunks_kernel(DD* data, sg::ScanPlan p, DD* chunk_rows) {
  __shared__ DD rows[kThreads * sg::kMaxQ];
  const int64_t g = blockIdx.y, c = blockIdx.x;
  const int t = threadIdx.x, Q = p.Q;
  DD* seg = data + g * p.L * Q;
  sg::scan_thread(seg, p, c, t, rows + t * Q);
  __syncthreads();
  if (t == 0) sg::exclusive_rows(rows, kThreads, Q, chunk_rows + (g * p.chunks + c) * Q);
  __syncthreads();
  int64_t e0, e1;
  sg::thread_range(p, c, t, &e0, &e1);
  sg::add_offset(seg, Q, e0, e1, rows + t * Q);
}

// phase 2: thread per segment
__global__ void scan_offsets_kernel(DD* chunk_rows, sg::ScanPlan p, int64_t segments) {
  RF_FOR_INDEX(g, segments) {
    DD total[sg::kMaxQ];
    sg::exclusive_rows(chunk_rows + g * p.chunks * p.Q, p.chunks, p.Q, total);
  }
}

// phase 3: grid (chunks - 1, segments), the chunk's elements strided over the block (coalesced)
__global__ void __launch_bounds__(kThreads) scan_apply_kernel(DD* data, sg::ScanPlan p, const DD* chunk_rows) {
  const int64_t g = blockIdx.y, c = int64_t(blockIdx.x) + 1;
  const int64_t e1 = p.L < (c + 1) * p.chunk ? p.L : (c + 1) * p.chunk;
  for (int64_t e = c * p.chunk + threadIdx.x; e < e1; e += kThreads)
    sg::add_offset(data + g * p.L * p.Q, p.Q, e, e + 1, chunk_rows + (g * p.chunks + c) * p.Q);
}

// stage 5: thread per (kk, j)
__global__ void __launch_bounds__(kThreads) node_terms_kernel(const double* theta, int64_t P, int64_t G, int64_t H,
                                                              int out, int64_t N, const double* xs, const double* ws,
                                                              const double* ys, const uint64_t* keys, const DD* ev,
                                                              DD* nodes) {
  const double c0 = sg::centre(xs, N);
  const int Qn = 1 + 2 * out;
  RF_FOR_INDEX(e, G * N) {
    const int64_t kk = e / N, j = e % N;
    sg::node_terms(theta + kk * P, H, out, N, xs, ws, ys, c0, keys + kk * 2 * H, ev + kk * 2 * H * 2 * out, kk, j,
                   nodes + e * Qn);
  }
}

// stage 7: thread per (kk, i), then thread per kk
__global__ void __launch_bounds__(kThreads) neuron_gradient_kernel(const double* theta, int64_t P, int64_t G,
                                                                   int64_t H, int out, int64_t N, const double* cs,
                                                                   int64_t cn, const int64_t* split, const DD* nodes,
                                                                   double* grad) {
  const double c0 = sg::centre(cs, cn);
  const int Qn = 1 + 2 * out;
  RF_FOR_INDEX(e, G * H) {
    const int64_t kk = e / H, i = e % H;
    sg::neuron_gradient(theta + kk * P, H, out, N, c0, split + kk * H, nodes + kk * N * Qn, i, grad + kk * P);
  }
}

__global__ void network_totals_kernel(const double* theta, int64_t P, int64_t G, int64_t H, int out, int64_t N,
                                      const DD* nodes, double* risk, double* grad) {
  const int Qn = 1 + 2 * out;
  RF_FOR_INDEX(kk, G) {
    risk[kk] = sg::network_totals(theta + kk * P, H, out, N, nodes + kk * N * Qn, grad ? grad + kk * P : nullptr);
  }
}

// exact sweep, stage 1a: thread per (kk, i)
__global__ void __launch_bounds__(kThreads) exact_kink_keys_kernel(const double* theta, int64_t P, int64_t G,
                                                                   int64_t H, sg::ExactArgs ex, uint64_t* keys,
                                                                   int32_t* vals) {
  RF_FOR_INDEX(e, G * H) {
    const int64_t kk = e / H;
    sg::exact_kink_key(theta + kk * P, H, ex, e % H, keys + e, vals + e);
  }
}

// stage 1b: thread per sorted kink (kk, s)
__global__ void __launch_bounds__(kThreads) exact_kink_ranks_kernel(const double* theta, int64_t P, int64_t G,
                                                                    int64_t H, sg::ExactArgs ex,
                                                                    const uint64_t* kink_keys,
                                                                    const int32_t* kink_vals, int64_t* split,
                                                                    double* merged, uint64_t* keys, int32_t* vals) {
  const int64_t L = sg::exact_pieces(ex.ng, H);
  RF_FOR_INDEX(e, G * H) {
    const int64_t kk = e / H;
    sg::exact_kink_rank(theta + kk * P, H, ex, kink_keys + kk * H, kink_vals + kk * H, kk, e % H, split + kk * H,
                        merged + kk * (L + 1), keys + kk * 2 * H, vals + kk * 2 * H);
  }
}

// stage 1c: thread per (kk, g)
__global__ void __launch_bounds__(kThreads) exact_grid_points_kernel(int64_t G, int64_t H, sg::ExactArgs ex,
                                                                     const uint64_t* kink_keys, double* merged) {
  const int64_t L = sg::exact_pieces(ex.ng, H);
  RF_FOR_INDEX(e, G * ex.ng) {
    const int64_t kk = e / ex.ng;
    sg::exact_grid_point(ex, kink_keys + kk * H, H, e % ex.ng, merged + kk * (L + 1));
  }
}

// stage 5: thread per (kk, p)
__global__ void __launch_bounds__(kThreads) piece_terms_kernel(const double* theta, int64_t P, int64_t G, int64_t H,
                                                               int out, sg::ExactArgs ex, const double* merged,
                                                               const uint64_t* keys, const DD* ev, DD* pieces) {
  const int64_t L = sg::exact_pieces(ex.ng, H);
  const int Qn = 1 + 2 * out;
  RF_FOR_INDEX(e, G * L) {
    const int64_t kk = e / L;
    sg::piece_terms(theta + kk * P, H, out, ex, merged + kk * (L + 1), keys + kk * 2 * H, ev + kk * 2 * H * 2 * out,
                    kk, e % L, pieces + e * Qn);
  }
}

// The segmented scan of sweep_grid.h over `segments` segments of L elements (Q each), in place.
void scan_device(DD* data, int64_t segments, int64_t L, int Q, cudaStream_t st) {
  const sg::ScanPlan p = sg::scan_plan(L, Q);
  if (p.chunks == 0) return;
  StreamBuffer rows(size_t(segments * p.chunks * Q) * sizeof(DD), st);
  scan_chunks_kernel<<<dim3(unsigned(p.chunks), unsigned(segments)), kThreads, 0, st>>>(data, p, rows.as<DD>());
  scan_offsets_kernel<<<flat_blocks(segments), kThreads, 0, st>>>(rows.as<DD>(), p, segments);
  if (p.chunks > 1)
    scan_apply_kernel<<<dim3(unsigned(p.chunks - 1), unsigned(segments)), kThreads, 0, st>>>(data, p, rows.as<DD>());
  check(cudaGetLastError(), "point sweep scan");
}

// A stable radix sort of n (key, value) pairs on the keys' low `bits` bits (CUB), out of place.
void sort_pairs(const uint64_t* keys_in, uint64_t* keys_out, const int32_t* vals_in, int32_t* vals_out, int64_t n,
                int bits, cudaStream_t st) {
  if (n > 0x7fffffff) throw std::invalid_argument("point sweep: more than 2^31 - 1 items to sort");
  size_t bytes = 0;
  check(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys_in, keys_out, vals_in, vals_out, int(n), 0, bits, st),
        "cub::DeviceRadixSort");
  StreamBuffer temp(std::max<size_t>(bytes, 1), st);
  check(cub::DeviceRadixSort::SortPairs(temp.ptr, bytes, keys_in, keys_out, vals_in, vals_out, int(n), 0, bits, st),
        "cub::DeviceRadixSort");
}

__global__ void segment_offsets_kernel(int64_t G, int64_t H, int* offsets) {
  RF_FOR_INDEX(kk, G + 1) { offsets[kk] = static_cast<int>(kk * H); }
}

// A stable radix sort of each network's H (key, value) pairs (CUB's segmented sort), out of place.
void sort_segments(const uint64_t* keys_in, uint64_t* keys_out, const int32_t* vals_in, int32_t* vals_out, int64_t G,
                   int64_t H, cudaStream_t st) {
  if (G * H > 0x7fffffff) throw std::invalid_argument("exact sweep: more than 2^31 - 1 kinks in a group");
  StreamBuffer offsets(size_t(G + 1) * sizeof(int), st);
  segment_offsets_kernel<<<flat_blocks(G + 1), kThreads, 0, st>>>(G, H, offsets.as<int>());
  size_t bytes = 0;
  const int* begin = offsets.as<int>();
  check(cub::DeviceSegmentedRadixSort::SortPairs(nullptr, bytes, keys_in, keys_out, vals_in, vals_out, int(G * H),
                                                 int(G), begin, begin + 1, 0, 64, st),
        "cub::DeviceSegmentedRadixSort");
  StreamBuffer temp(std::max<size_t>(bytes, 1), st);
  check(cub::DeviceSegmentedRadixSort::SortPairs(temp.ptr, bytes, keys_in, keys_out, vals_in, vals_out, int(G * H),
                                                 int(G), begin, begin + 1, 0, 64, st),
        "cub::DeviceSegmentedRadixSort");
}

int bits_for(uint64_t max_key) {
  int b = 1;
  while (b < 64 && (max_key >> b) != 0) ++b;
  return b;
}

// The scratch of one group of G networks over L nodes (or pieces): splits, event keys and slots (before
// and after their sort), scanned events, scanned node terms.
struct GroupScratch {
  StreamBuffer split, keys0, keys1, vals0, vals1, ev, nodes;
  GroupScratch(int64_t G, int64_t H, int out, int64_t L, cudaStream_t st)
      : split(bytes(G * H, 8), st),
        keys0(bytes(G * 2 * H, 8), st),
        keys1(bytes(G * 2 * H, 8), st),
        vals0(bytes(G * 2 * H, 4), st),
        vals1(bytes(G * 2 * H, 4), st),
        ev(bytes(G * 2 * H * 2 * out, sizeof(DD)), st),
        nodes(bytes(G * L * (1 + 2 * out), sizeof(DD)), st) {}
  static size_t bytes(int64_t n, size_t each) { return size_t(std::max<int64_t>(n, 1)) * each; }
};

// Stages 2-4: the events of stage 1 (keys0, vals0) sorted into keys1, vals1, their pieces scanned into ev.
void sweep_events(const double* th, int64_t G, int64_t H, int out, int64_t L, const double* cs, int64_t cn,
                  GroupScratch& sc, cudaStream_t st) {
  if (H == 0) return;
  const int64_t P = sweep1d::num_params(H, out);
  sort_pairs(sc.keys0.as<uint64_t>(), sc.keys1.as<uint64_t>(), sc.vals0.as<int32_t>(), sc.vals1.as<int32_t>(),
             G * 2 * H, bits_for(sg::event_key(G - 1, L, L + 1)), st);
  event_pieces_kernel<<<flat_blocks(G * 2 * H), kThreads, 0, st>>>(th, P, G, H, out, L, cs, cn, sc.split.as<int64_t>(),
                                                                   sc.vals1.as<int32_t>(), sc.ev.as<DD>());
  scan_device(sc.ev.as<DD>(), G, 2 * H, 2 * out, st);
}

// Stages 6-7: the node terms (stage 5, in sc.nodes) scanned, the neurons' gradients, the totals.
void sweep_finish(const double* th, int64_t G, int64_t H, int out, int64_t L, const double* cs, int64_t cn,
                  GroupScratch& sc, double* risk, double* grad, cudaStream_t st) {
  const int64_t P = sweep1d::num_params(H, out);
  if (L > 0) scan_device(sc.nodes.as<DD>(), G, L, 1 + 2 * out, st);
  if (grad && H > 0)
    neuron_gradient_kernel<<<flat_blocks(G * H), kThreads, 0, st>>>(th, P, G, H, out, L, cs, cn, sc.split.as<int64_t>(),
                                                                    sc.nodes.as<DD>(), grad);
  network_totals_kernel<<<flat_blocks(G), kThreads, 0, st>>>(th, P, G, H, out, L, sc.nodes.as<DD>(), risk, grad);
  check(cudaGetLastError(), "sweep");
}

// GroupScratch's bytes per network over L nodes (or pieces), plus `extra`; the networks of a group
// keep their scratch within kGroupBytes.
int64_t group_of(int64_t H, int out, int64_t L, int64_t extra) {
  const int64_t per_net = H * 8 + 2 * H * (2 * 8 + 2 * 4 + 2 * out * int64_t(sizeof(DD))) +
                          L * (1 + 2 * out) * int64_t(sizeof(DD)) + extra + 64;
  return std::max<int64_t>(1, std::min<int64_t>(kMaxGroup, kGroupBytes / per_net));
}

// The exact sweep's also hold each network's kinks (keys and neurons, before and after their sort)
// and its merged points.
int64_t exact_sweep_group(int64_t H, int out, int64_t ng) {
  const int64_t L = sg::exact_pieces(ng, H);
  return group_of(H, out, L, H * (2 * 8 + 2 * 4) + (L + 1) * 8);
}

}  // namespace

int64_t point_sweep_group(int64_t H, int out, int64_t N) { return group_of(H, out, N, 0); }

void point_sweep_device(const double* theta, int64_t K, int64_t H, int out, int64_t N, const double* x,
                        const double* w, const double* y, double* risk, double* grad, uintptr_t stream) {
  if (out < 1 || out > sg::kMaxOut) throw std::invalid_argument("out_dim: the point sweep takes 1 to 3 outputs");
  if (N > 0x7fffffff || 2 * H > 0x7fffffff) throw std::invalid_argument("point sweep: N and 2 H must be < 2^31");
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  if (K == 0) return;
  const int64_t P = sweep1d::num_params(H, out);
  // stage 0: the nodes sorted once for every group
  StreamBuffer xs(GroupScratch::bytes(N, 8), st), ws(GroupScratch::bytes(N, 8), st),
      ys(GroupScratch::bytes(N * out, 8), st);
  if (N > 0) {
    StreamBuffer k0(size_t(N) * 8, st), k1(size_t(N) * 8, st), i0(size_t(N) * 4, st), i1(size_t(N) * 4, st);
    node_keys_kernel<<<flat_blocks(N), kThreads, 0, st>>>(x, N, k0.as<uint64_t>(), i0.as<int32_t>());
    sort_pairs(k0.as<uint64_t>(), k1.as<uint64_t>(), i0.as<int32_t>(), i1.as<int32_t>(), N, 64, st);
    gather_nodes_kernel<<<flat_blocks(N), kThreads, 0, st>>>(i1.as<int32_t>(), x, w, y, out, N, xs.as<double>(),
                                                             ws.as<double>(), ys.as<double>());
    check(cudaGetLastError(), "point sweep nodes");
  }
  const int64_t group = point_sweep_group(H, out, N);
  for (int64_t k0 = 0; k0 < K; k0 += group) {
    const int64_t G = std::min(group, K - k0);
    const double* th = theta + k0 * P;
    GroupScratch sc(G, H, out, N, st);
    if (H > 0)
      neuron_events_kernel<<<flat_blocks(G * H), kThreads, 0, st>>>(th, P, G, H, N, xs.as<double>(), sc.split.as<int64_t>(),
                                                                    sc.keys0.as<uint64_t>(), sc.vals0.as<int32_t>());
    sweep_events(th, G, H, out, N, xs.as<double>(), N, sc, st);
    if (N > 0)
      node_terms_kernel<<<flat_blocks(G * N), kThreads, 0, st>>>(th, P, G, H, out, N, xs.as<double>(), ws.as<double>(),
                                                                 ys.as<double>(), sc.keys1.as<uint64_t>(), sc.ev.as<DD>(),
                                                                 sc.nodes.as<DD>());
    sweep_finish(th, G, H, out, N, xs.as<double>(), N, sc, risk + k0, grad ? grad + k0 * P : nullptr, st);
  }
}

void exact_sweep_device(const double* theta, int64_t K, int64_t H, int out, const sweep_grid::ExactArgs& ex_host,
                        double* risk, double* grad, uintptr_t stream) {
  if (out < 1 || out > sg::kMaxOut) throw std::invalid_argument("out_dim: the exact sweep takes 1 to 3 outputs");
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  if (K == 0) return;
  const int64_t P = sweep1d::num_params(H, out);
  const int64_t L = sg::exact_pieces(ex_host.ng, H);
  if (L + 1 > 0x7fffffff || 2 * H > 0x7fffffff) throw std::invalid_argument("exact sweep: H must be < 2^30");
  const int64_t group = exact_sweep_group(H, out, ex_host.ng);
  // the support's ends on the device (the kernels' c0 = centre(ends, 2) = ex.c0), the grid, the target and the density
  const double ends_host[2] = {ex_host.lo, ex_host.hi};
  const PiecewisePoly1D& f = ex_host.target;
  const PiecewisePoly1D& rho = ex_host.density;
  DeviceCopy ends(ends_host, 2, st), grid(ex_host.grid, ex_host.ng, st), fb(f.breaks, f.m + 1, st),
      fc(f.coeffs, f.m * (f.deg + 1) * out, st), db(rho.breaks, rho.m + 1, st), dc(rho.coeffs, rho.m * (rho.deg + 1), st);
  sg::ExactArgs ex = ex_host;
  ex.grid = grid.as<double>();
  ex.target.breaks = fb.as<double>();
  ex.target.coeffs = fc.as<double>();
  ex.density.breaks = db.as<double>();
  ex.density.coeffs = dc.as<double>();
  for (int64_t k0 = 0; k0 < K; k0 += group) {
    const int64_t G = std::min(group, K - k0);
    const double* th = theta + k0 * P;
    GroupScratch sc(G, H, out, L, st);
    using B = GroupScratch;
    StreamBuffer kk0(B::bytes(G * H, 8), st), kk1(B::bytes(G * H, 8), st), kv0(B::bytes(G * H, 4), st),
        kv1(B::bytes(G * H, 4), st), merged(B::bytes(G * (L + 1), 8), st);
    if (H > 0) {
      exact_kink_keys_kernel<<<flat_blocks(G * H), kThreads, 0, st>>>(th, P, G, H, ex, kk0.as<uint64_t>(),
                                                                      kv0.as<int32_t>());
      sort_segments(kk0.as<uint64_t>(), kk1.as<uint64_t>(), kv0.as<int32_t>(), kv1.as<int32_t>(), G, H, st);
      exact_kink_ranks_kernel<<<flat_blocks(G * H), kThreads, 0, st>>>(th, P, G, H, ex, kk1.as<uint64_t>(),
                                                                       kv1.as<int32_t>(), sc.split.as<int64_t>(),
                                                                       merged.as<double>(), sc.keys0.as<uint64_t>(),
                                                                       sc.vals0.as<int32_t>());
    }
    exact_grid_points_kernel<<<flat_blocks(G * ex.ng), kThreads, 0, st>>>(G, H, ex, kk1.as<uint64_t>(),
                                                                          merged.as<double>());
    sweep_events(th, G, H, out, L, ends.as<double>(), 2, sc, st);
    piece_terms_kernel<<<flat_blocks(G * L), kThreads, 0, st>>>(th, P, G, H, out, ex, merged.as<double>(),
                                                                sc.keys1.as<uint64_t>(), sc.ev.as<DD>(),
                                                                sc.nodes.as<DD>());
    sweep_finish(th, G, H, out, L, ends.as<double>(), 2, sc, risk + k0, grad ? grad + k0 * P : nullptr, st);
  }
}

}  // namespace reluflow::cuda
