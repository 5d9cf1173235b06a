"""Seed 003 (arXiv:2108.04620): gradient descent with random initializations on a piecewise-affine
1-D target. Each run succeeds with some probability p > 0, so the best of K runs fails with
probability at most (1-p)^K: the success fraction against width is the plot users want.

Problem: [1, H, 1] ReLU nets, standard-normal initial parameters, a 4-knot piecewise-affine target on U[0, 1], plain GD
on the empirical risk of 512 fixed Sobol nodes; success is judged on the exact (quadrature) risk.
Prints a table; writes ``gd_random_inits.png`` and
``gd_random_inits.json`` to ``--out`` (default ``examples/results``).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

import reluflow as rf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    ap.add_argument("--widths", default="2,4,8,16,32")
    ap.add_argument("--inits", type=int, default=128, help="random initializations per width")
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--nodes", type=int, default=512)
    ap.add_argument("--threshold", type=float, default=1e-3, help="a run succeeds when its risk is below")
    ap.add_argument("--backend", default="auto")
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    widths = [int(w) for w in args.widths.split(",")]

    target = rf.targets.PiecewiseLinear(knots=[0, .25, .5, 1], values=[0, 1, .25, .5])
    estimator = rf.QuasiMonteCarlo(args.nodes, seed=0)  # fixed deterministic nodes: plain GD
    rows, finals = [], {}
    print(f"{'H':>4} {'K':>5} {'steps':>6} {'lr':>8} {'median risk':>12} {'best risk':>10} "
          f"{'success p':>10} {'P(best of K fails) <=':>22} {'diverged':>8} {'time s':>7}")
    t_all = time.perf_counter()
    for H in widths:
        prob = rf.Problem([1, H, 1], target, rf.dists.Uniform(0.0, 1.0))
        theta0 = prob.init(n=args.inits, seed=H)
        lr = 0.2 / H  # the gradient grows with the width (sum over H neurons)
        t0 = time.perf_counter()
        run = rf.gradient_descent(prob, theta0, lr=lr, steps=args.steps, estimator=estimator,
                                  record_every=max(1, args.steps // 50), backend=args.backend)
        # success is judged on the true risk of the final networks: exact quadrature, not the nodes
        exact = prob.risk(run.theta, rf.Quadrature(), backend=args.backend)
        final = np.where(run.diverged, np.nan, exact)
        p = float(np.mean(final < args.threshold))
        rows.append({"H": H, "K": args.inits, "steps": args.steps, "lr": lr,
                     "median_risk": float(np.nanmedian(final)), "best_risk": float(np.nanmin(final)),
                     "success_fraction": p, "best_of_K_fails_bound": (1 - p) ** args.inits,
                     "diverged": int(run.diverged.sum()), "seconds": time.perf_counter() - t0})
        finals[H] = final
        r = rows[-1]
        print(f"{H:>4} {args.inits:>5} {args.steps:>6} {lr:>8.4f} {r['median_risk']:>12.3e} "
              f"{r['best_risk']:>10.3e} {p:>10.3f} {r['best_of_K_fails_bound']:>22.3e} "
              f"{r['diverged']:>8} {r['seconds']:>7.1f}")
    elapsed = time.perf_counter() - t_all

    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(14, 4))
    a1.plot(widths, [r["success_fraction"] for r in rows], "o-")
    a1.set_xscale("log", base=2)
    a1.set_xlabel("width H")
    a1.set_ylabel(f"fraction of runs with risk < {args.threshold:g}")
    a1.set_title("success probability p against width")
    Ks = np.unique(np.geomspace(1, args.inits, 12).astype(int))
    for r in rows:
        a2.semilogy(Ks, [max((1 - r["success_fraction"]) ** K, 1e-12) for K in Ks], "o-", label=f"H={r['H']}")
    a2.set_xlabel("number of random initializations K")
    a2.set_ylabel("(1 - p)^K: best of K fails")
    a2.legend(fontsize=8)
    for H, final in finals.items():
        a3.hist(np.log10(final[np.isfinite(final)]), bins=30, histtype="step", label=f"H={H}")
    a3.set_xlabel("log10 final risk (exact quadrature)")
    a3.set_ylabel("runs")
    a3.legend(fontsize=8)
    fig.suptitle(f"GD with random initializations, piecewise-affine target, {args.steps} steps")
    fig.tight_layout()
    fig.savefig(out / "gd_random_inits.png", dpi=110)
    (out / "gd_random_inits.json").write_text(json.dumps({
        "target": repr(target), "estimator": repr(estimator), "rows": rows, "seconds": elapsed,
        "backends": {k: repr(v) for k, v in rf.backends().items()}}, indent=2))
    print(f"wrote {out / 'gd_random_inits.png'} and {out / 'gd_random_inits.json'} ({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
