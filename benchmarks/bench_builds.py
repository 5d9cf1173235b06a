"""Side-by-side timing of several builds of reluflow on the same machine (issue 16: the portable,
dispatching build against the -march=native build; a session-start build against the current one).

Each build is a folder holding a ``reluflow`` package with its compiled ``_core`` (e.g. made with
``cmake -S . -B build-x -DRELUFLOW_NATIVE=ON|OFF -DRELUFLOW_CUDA=OFF`` and the Python sources beside
the built module). The same workload runs in a fresh process per build, the builds alternating over
``--rounds`` rounds (so that a change of the machine's load hits them alike); the table gives the best
time of each case per build and the ratios to the first build. Writes JSON to benchmarks/results/.

    python benchmarks/bench_builds.py native=/tmp/native portable=/tmp/portable --rounds 3

Cases: the dense kernel (bench_risk_grad.py's A-D, F and the held-out G = [2, 2048, 1], N = 32768,
K = 4, float32 and float64), the point sweep ([1, 1000, 1] and [1, 50000, 1], K = 1 and 2, N = 200000),
SGD of [1, 100, 1] (K = 300, 1024 fresh samples per step, 200 steps) and a dopri5 flow of [1, 16, 16, 1]
(K = 32) on the exact 1-D quadrature risk to t = 5; group quad: the exact 1-D quadrature through the
shallow sweep ([1, 1000, 1], K = 8) and the deep kink partition ([1, 16, 16, 1] K = 64, [1, 128, 128, 1]
K = 8, [1, 32, 32, 32, 1] K = 8), bench_quadrature.py's C++ cases.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import cpu_name, slug  # noqa: E402

WORKLOAD = r'''
import json, os, sys, time
import numpy as np
import reluflow as rf
try:
    from reluflow.backends import cpu as cb
    from reluflow.layout import Layout
    from reluflow.registry import core
except ImportError:  # an older build: only the groups that use the public API (sgd, dopri5, quad) run
    cb = Layout = core = None

CASES = {"A": ([1, 1024, 1], 16384, 1), "B": ([1, 4096, 1], 65536, 1), "C": ([1, 256, 1], 4096, 256),
         "D": ([8, 1024, 1], 16384, 16), "F": ([4, 256, 256, 256, 1], 16384, 8), "G": ([2, 2048, 1], 32768, 4)}

def best(f, n):
    f()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)

GROUPS = os.environ.get("BENCH_BUILDS_GROUPS", "dense,sweep,sgd,dopri5").split(",")
out = {}
for c, (widths, N, K) in CASES.items() if "dense" in GROUPS else ():
    lay = Layout(widths)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (N, widths[0]))
    w = np.full(N, 1 / N)
    y = np.sin(2 * np.pi * x.sum(1, keepdims=True)) * np.ones((1, widths[-1]))
    for dt in (np.float32, np.float64):
        th = rng.standard_normal((K, lay.num_params)).astype(dt)
        out[f"dense {c} {np.dtype(dt).name}"] = best(lambda: cb.risk_and_grad(lay, th, x, w, y), 5 if c != "F" else 3)
for H, K in ((1000, 1), (1000, 2), (50000, 1), (50000, 2)) if "sweep" in GROUPS else ():
    lay = Layout([1, H, 1])
    rng = np.random.default_rng(1)
    th = rng.normal(size=(K, lay.num_params))
    N = 200000
    x = rng.uniform(-1, 1, N)
    w = rng.uniform(0, 1, N) / N
    y = np.sin(3 * x)[:, None]
    out[f"point sweep H={H} K={K}"] = best(lambda: cb.shallow1d_points(lay, th, x, w, y), 7)
hat = rf.targets.PiecewiseLinear([-1, 0, 1], [0, 1, 0])
if "sgd" in GROUPS:
    prob = rf.Problem([1, 100, 1], hat, rf.dists.Uniform(-1, 1))
    th0 = prob.init(300, seed=0)
    out["SGD [1,100,1] K=300"] = best(lambda: rf.gradient_descent(prob, th0, 0.001, 200, rf.MonteCarlo(1024, seed=0),
                                                                  progress=False), 3)
if "dopri5" in GROUPS:
    prob2 = rf.Problem([1, 16, 16, 1], hat, rf.dists.Uniform(-1, 1))
    th2 = prob2.init(32, seed=0)
    out["dopri5 quad [1,16,16,1] K=32"] = best(lambda: rf.gradient_flow(prob2, th2, 5.0, method="dopri5",
                                                                        estimator=rf.Quadrature(), progress=False), 3)
if "quad" in GROUPS:  # bench_quadrature.py's C++ cases: the exact shallow sweep and the deep partition
    pl = rf.targets.PiecewiseLinear([0.0, 0.25, 0.5, 1.0], [0.0, 1.0, -0.5, 0.5])
    for widths, K, method in (([1, 1000, 1], 8, "sweep"), ([1, 16, 16, 1], 64, "partition"),
                              ([1, 128, 128, 1], 8, "partition"), ([1, 32, 32, 32, 1], 8, "partition")):
        prob3 = rf.Problem(widths, pl, rf.dists.Uniform(0.0, 1.0))
        th3 = prob3.init(K, seed=0)
        est3 = rf.Quadrature(method=method)
        out[f"quad {method} {widths} K={K}"] = best(lambda: prob3.risk_and_grad(th3, est3, backend="cpu"), 40)
c = core()[0] if core is not None else None
info = {"simd": c.simd_path() if hasattr(c, "simd_path") else None,
        "native_build": bool(getattr(c, "native_build", lambda: None)())
        if callable(getattr(c, "native_build", None)) else getattr(c, "native_build", None)}
json.dump({"times": out, "info": info}, sys.stdout)
'''


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("builds", nargs="+", help="name=folder (a folder holding the reluflow package)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--groups", default="dense,sweep,sgd,dopri5",
                    help="comma-separated case groups to run: dense, sweep, sgd, dopri5, quad (default: all "
                         "but quad)")
    args = ap.parse_args(argv)
    unknown = set(args.groups.split(",")) - {"dense", "sweep", "sgd", "dopri5", "quad"}
    if unknown:
        ap.error(f"--groups: unknown group(s) {sorted(unknown)}; expected dense, sweep, sgd, dopri5, quad")
    builds = []
    for b in args.builds:
        name, sep, folder = b.partition("=")
        if not sep or not Path(folder, "reluflow").is_dir():
            ap.error(f"builds: expected name=folder with folder/reluflow, got {b!r}")
        builds.append((name, folder))
    best, info = {n: {} for n, _ in builds}, {}
    for r in range(args.rounds):
        for name, folder in builds:
            env = {**os.environ, "PYTHONPATH": folder, "BENCH_BUILDS_GROUPS": args.groups}
            res = subprocess.run([sys.executable, "-c", WORKLOAD], env=env, capture_output=True, text=True,
                                 timeout=900, cwd="/")
            if res.returncode != 0:
                sys.exit(f"build {name}: the workload failed:\n{res.stderr[-3000:]}")
            d = json.loads(res.stdout)
            info[name] = d["info"]
            for k, v in d["times"].items():
                best[name][k] = min(v, best[name].get(k, float("inf")))
            print(f"round {r + 1}: {name} done", file=sys.stderr, flush=True)
    first = builds[0][0]
    names = [n for n, _ in builds]
    print(f"\n{cpu_name()}, {os.cpu_count()} cores; best of {args.rounds} alternating rounds, ms")
    print(f"{'case':>30} | " + " | ".join(f"{n:>10}" for n in names) + " | " +
          " | ".join(f"{n + '/' + first:>16}" for n in names[1:]))
    for k in best[first]:
        row = [best[n][k] * 1e3 for n in names]
        print(f"{k:>30} | " + " | ".join(f"{v:10.2f}" for v in row) + " | " +
              " | ".join(f"{v / row[0]:16.2f}" for v in row[1:]))
    out = args.out or HERE / "results" / f"builds_{slug(cpu_name())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": cpu_name(), "cores": os.cpu_count(), "rounds": args.rounds,
                               "date": datetime.datetime.now().isoformat(timespec="seconds"),
                               "builds": {n: {"folder": f, **info[n]} for n, f in builds},
                               "best_seconds": best}, indent=1) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
