#!/usr/bin/env python3
"""The exact 1-D quadrature of deep nets on one GPU: the cuda backend's ragged route against the cpu
backend on the same machine.

``prob.risk_and_grad(theta, rf.Quadrature(), backend=...)`` on the partition route: on ``cpu`` every
network's kink partition, nodes and fused dense kernel in C++ (OpenMP over networks); on ``cuda`` the same
partitions and nodes in C++ on the host (``_core.quad1d_nodes_batch``), then one ragged kernel over all
networks' nodes on the device (``_cuda.risk_and_grad_ragged``). The table also gives the host part alone
(the nodes of every network), so that the device's share is the difference, and the largest relative
difference of the cuda gradient from the cpu one. No peer library computes this quantity (an exact
integral over each network's own kink partition), hence the cpu backend as the reference.

Timing: one warm-up call, then the median of --repeats calls, the device synchronized after each (the
host clock around a synchronize). --budget seconds keep the whole run inside the device window: cases
not reached in time are reported as skipped. Without a GPU it prints why and writes that into the JSON.

Usage: python benchmarks/bench_gpu_quadrature.py [--repeats 5] [--budget 60] [--out FILE]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_t  # noqa: E402
from _gpu import start_bench  # noqa: E402

# (widths, K): bench_quadrature.py's deep case and wider / deeper / more networks
CASES = [([1, 128, 128, 1], 8), ([1, 128, 128, 1], 256), ([1, 32, 32, 32, 1], 256), ([1, 512, 512, 1], 16)]


def timed(fn, sync, repeats):
    fn()
    sync()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds for the whole run")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    result, write, cp = start_bench("gpu_quadrature", args.out)
    if cp is None:
        return 0
    import reluflow as rf
    from reluflow.backends import cpu as cpu_backend

    print(f"device: {result['device']}")
    sync = cp.cuda.get_current_stream().synchronize
    target = rf.targets.PiecewiseLinear([0.0, 0.25, 0.5, 1.0], [0.0, 1.0, -0.5, 0.5])
    print(f"{'case':>26} {'cpu':>10} {'cuda':>10} {'host nodes':>11} {'cpu/cuda':>9} {'grad diff':>10}")
    for widths, K in CASES:
        row = {"widths": widths, "K": K}
        if time.perf_counter() - start > args.budget:
            row["skipped"] = "budget"
            result["rows"].append(row)
            continue
        prob = rf.Problem(widths, target, rf.dists.Uniform(0.0, 1.0))
        theta = prob.init(K, seed=0)
        est = rf.Quadrature()
        theta_d = cp.asarray(theta)
        r0, g0 = prob.risk_and_grad(theta, est, backend="cpu")
        r1, g1 = prob.risk_and_grad(theta_d, est, backend="cuda")
        row["grad_rel_diff"] = float(np.abs(cp.asnumpy(g1) - g0).max() / np.abs(g0).max())
        row["risk_rel_diff"] = float(np.abs(cp.asnumpy(r1) - r0).max() / np.abs(r0).max())
        row["cpu_s"] = timed(lambda: prob.risk_and_grad(theta, est, backend="cpu"), lambda: None, args.repeats)
        row["cuda_s"] = timed(lambda: prob.risk_and_grad(theta_d, est, backend="cuda"), sync, args.repeats)
        row["host_nodes_s"] = timed(lambda: cpu_backend.quad1d_nodes_batch(prob.spec, est, theta), lambda: None,
                                    args.repeats)
        row["nodes_total"] = int(cpu_backend.quad1d_nodes_batch(prob.spec, est, theta)[0][-1])
        result["rows"].append(row)
        write()
        print(f"{str(widths) + f' K={K}':>26} {fmt_t(row['cpu_s']):>10} {fmt_t(row['cuda_s']):>10} "
              f"{fmt_t(row['host_nodes_s']):>11} {row['cpu_s'] / row['cuda_s']:>8.2f}x {row['grad_rel_diff']:>10.1e}")
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
