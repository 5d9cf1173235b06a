#!/usr/bin/env python3
"""SGD with the whole loop on one GPU (issue 13): reluflow's device loop against a PyTorch CUDA loop.

The SGD experiment of bench_flow.py: [1, H, 1] for H in {10, 100, 1000}, K = 300 initializations
(``prob.init``), 1024 fresh U[0, 1] samples per step, target sin(3x) (reluflow: the native
PiecewisePolynomial cubic Hermite interpolant of bench_flow.py, error < 1e-9, evaluated in the kernel),
lr_n = 0.001 (n + 1)^-0.1; 10^4 steps extrapolated from the timed steps.

Peers, each only if importable and a device is there:
  reluflow-cuda   ``rf.gradient_descent`` on CuPy theta: plan loop "CUDA" (cuda/src/gd_loop.cu: Philox
                  samples, target, dense kernels, update and divergence watch queued on one stream;
                  the lr schedule asked once per block; records copied back once per block)
  torch-eager     PyTorch eager on CUDA, the hand-written functional step of bench_flow.py
                  (torch_hand_step: one bmm for the moments), samples by torch.rand on the device
Timing: a warm-up run (allocations, first launches), then a run of --steps steps (fewer when the budget
is short), host clock around it with a device synchronization at the end; s/step is that over steps.
Correctness here is statistical only (different samples): the median over networks of the last
empirical risk of each peer after the same number of steps; tests/test_cuda.py holds the exact checks.
A --budget in seconds keeps the whole run inside the device window (rows not reached: "budget").
Without a GPU it prints why and writes that into the JSON.

Usage: python benchmarks/bench_gpu_flow.py [--H 10,100,1000] [--K 300] [--steps 2000]
       [--dtypes float64,float32] [--budget 100] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_t  # noqa: E402
from bench_flow import N_SAMPLES, lr_at, sin3_hermite, split_theta, torch_hand_step  # noqa: E402

STEPS_REPORTED = 10_000
WARM = 20


def rf_runner(cp, rf, prob, theta0, dtype, seed):
    est = rf.MonteCarlo(N_SAMPLES, seed=seed, resample=True)

    def run(steps, start):
        th = cp.asarray(theta0.astype(dtype))
        r = rf.gradient_descent(prob, th, lr_at, steps, est, record_every=max(1, steps), start_step=start,
                                progress=False)
        cp.cuda.get_current_stream().synchronize()
        return float(np.median(r.risk[-1])), r.info

    return run


def torch_runner(torch, theta0, H, dtype, seed):
    dev = torch.device("cuda")
    tdt = getattr(torch, dtype)

    def run(steps, start):
        gen = torch.Generator(device=dev)
        gen.manual_seed(seed)
        state = [torch.tensor(np.ascontiguousarray(a), dtype=tdt, device=dev) for a in split_theta(theta0, H)]
        loss = None
        with torch.no_grad():
            for n in range(start, start + steps):
                x = torch.rand(N_SAMPLES, device=dev, dtype=tdt, generator=gen)
                *state, loss = torch_hand_step(torch, *state, x, lr_at(n))
        torch.cuda.synchronize()
        return float(loss.median().item()), {}

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--H", default="10,100,1000")
    ap.add_argument("--K", type=int, default=300)
    ap.add_argument("--steps", type=int, default=2000, help="timed steps per row (fewer under the budget)")
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--budget", type=float, default=100.0, help="seconds for the whole run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    result = {"bench": "gpu_flow", "rows": [], "skipped": None, "steps_reported": STEPS_REPORTED}

    def write():
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))

    try:
        import cupy as cp

        import reluflow as rf
        from reluflow.registry import cuda_extension

        ext, why = cuda_extension()
        if ext is None:
            raise RuntimeError(why)
        cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no GPU, no CuPy or no CUDA extension: nothing to time here
        result["skipped"] = f"no GPU run: {exc}"
        print(result["skipped"])
        write()
        return 0
    props = cp.cuda.runtime.getDeviceProperties(0)
    result["device"] = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    print(f"device: {result['device']}")
    try:
        import torch

        have_torch = torch.cuda.is_available()
    except ImportError:
        have_torch = False
    target, err = sin3_hermite()
    result["target_max_err"] = err
    dtypes = args.dtypes.split(",")
    for H in (int(h) for h in args.H.split(",")):
        prob = rf.Problem([1, H, 1], target, rf.dists.Uniform(0.0, 1.0))
        theta0 = prob.init(args.K, seed=args.seed)
        assert prob.plan(rf.MonteCarlo(N_SAMPLES, resample=True), "auto", cp.asarray(theta0)).loop == "CUDA"
        jobs = [("reluflow-cuda", dt, rf_runner(cp, rf, prob, theta0, dt, args.seed)) for dt in dtypes]
        if have_torch:
            jobs += [("torch-eager", dt, torch_runner(torch, theta0, H, dt, args.seed)) for dt in dtypes]
        for name, dt, run in jobs:
            row = {"H": H, "K": args.K, "N": N_SAMPLES, "peer": name, "dtype": dt}
            left = args.budget - (time.perf_counter() - start)
            if left <= 2:
                row["skipped"] = "budget"
                result["rows"].append(row)
                continue
            try:
                t0 = time.perf_counter()
                run(WARM, 0)
                warm_s = time.perf_counter() - t0
                per = max(warm_s / WARM, 1e-6)
                steps = int(max(WARM, min(args.steps, 0.3 * left / per)))
                t0 = time.perf_counter()
                med_risk, info = run(steps, WARM)
                t = time.perf_counter() - t0
                row.update(steps=steps, s_per_step=t / steps, steps_per_s=steps / t,
                           extrapolated_s=t / steps * STEPS_REPORTED, median_last_risk=med_risk, warm_s=warm_s,
                           **({"blocks": info["blocks"], "loop": info["loop"]} if info else {}))
            except Exception as exc:  # a peer that fails is reported, not fatal
                row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            result["rows"].append(row)
            write()
    # speed-up of reluflow over the best torch row of the same H (any dtype)
    for r in result["rows"]:
        if r["peer"] == "reluflow-cuda" and "s_per_step" in r:
            peers = [p["s_per_step"] for p in result["rows"]
                     if p["H"] == r["H"] and p["peer"] != "reluflow-cuda" and "s_per_step" in p]
            r["speedup_vs_best_peer"] = min(peers) / r["s_per_step"] if peers else None
    print(f"\n{'H':>5} {'peer':14} {'dtype':8} {'steps':>6} {'s/step':>10} {'10^4 steps':>11} {'speedup':>8} "
          f"{'med risk':>10}")
    for r in result["rows"]:
        if "s_per_step" in r:
            sp = r.get("speedup_vs_best_peer")
            print(f"{r['H']:5d} {r['peer']:14} {r['dtype']:8} {r['steps']:6d} {fmt_t(r['s_per_step']):>10} "
                  f"{fmt_t(r['extrapolated_s']):>11} {('-' if sp is None else f'{sp:.1f}x'):>8} "
                  f"{r['median_last_risk']:10.3g}")
        else:
            print(f"{r['H']:5d} {r['peer']:14} {r['dtype']:8} {r.get('skipped') or r.get('error')}")
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
