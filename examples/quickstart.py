"""Quickstart experiment: how fast Monte-Carlo and quasi-Monte-Carlo risk estimates converge.

For 64 standard-normal random initializations of a [1, 64, 1] ReLU network and the hat target of
SPEC §5 on U[0, 1], estimate the risk and its generalized gradient with n = 2^6 .. 2^14 Monte-Carlo
and scrambled-Sobol nodes and compare them with the exact risk and gradient from ``rf.Quadrature()`` (Gauss–Legendre on
the kink partition of every network: exact to rounding in 1-D). Prints a table, writes
``quickstart.png`` and ``quickstart.json`` (to ``--out``, default ``examples/results``).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

import reluflow as rf


def relative_errors(prob, theta, est, ref_risk, ref_grad):
    risk, grad = prob.risk_and_grad(theta, est)
    e_risk = np.abs(risk - ref_risk) / ref_risk
    e_grad = np.linalg.norm(grad - ref_grad, axis=1) / np.linalg.norm(ref_grad, axis=1)
    return float(np.median(e_risk)), float(np.median(e_grad))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    ap.add_argument("--networks", type=int, default=64)
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    prob = rf.Problem(widths=[1, 64, 1],
                      target=rf.targets.PiecewiseLinear(knots=[0, .5, 1], values=[0, 1, 0]),
                      input=rf.dists.Uniform(0.0, 1.0))
    theta = prob.init(n=args.networks, seed=0)
    t0 = time.perf_counter()
    ref_risk, ref_grad = prob.risk_and_grad(theta, rf.Quadrature())  # exact
    ns = [2**k for k in range(6, 15)]
    rows = []
    print(f"{'n':>7} {'MC risk err':>12} {'QMC risk err':>13} {'MC grad err':>12} {'QMC grad err':>13}")
    for n in ns:
        mc = relative_errors(prob, theta, rf.MonteCarlo(n, seed=1), ref_risk, ref_grad)
        qmc = relative_errors(prob, theta, rf.QuasiMonteCarlo(n, seed=1), ref_risk, ref_grad)
        rows.append({"n": n, "mc_risk": mc[0], "qmc_risk": qmc[0], "mc_grad": mc[1], "qmc_grad": qmc[1]})
        print(f"{n:>7} {mc[0]:>12.3e} {qmc[0]:>13.3e} {mc[1]:>12.3e} {qmc[1]:>13.3e}")
    elapsed = time.perf_counter() - t0

    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, style in [("mc_risk", "Monte-Carlo risk", "o-"), ("qmc_risk", "Sobol risk", "s-"),
                              ("mc_grad", "Monte-Carlo gradient", "o--"), ("qmc_grad", "Sobol gradient", "s--")]:
        ax.loglog(ns, [r[key] for r in rows], style, label=label)
    ax.loglog(ns, [rows[0]["mc_risk"] * (ns[0] / n) ** 0.5 for n in ns], "k:", label="n^-1/2")
    ax.set_xlabel("nodes n")
    ax.set_ylabel(f"median relative error over {args.networks} networks")
    ax.set_title("[1, 64, 1] ReLU nets, hat target, U[0,1]")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "quickstart.png", dpi=120)
    (out / "quickstart.json").write_text(json.dumps({
        "problem": repr(prob), "networks": args.networks, "reference": "Quadrature() (exact)",
        "rows": rows, "seconds": elapsed, "backends": {k: repr(v) for k, v in rf.backends().items()},
    }, indent=2))
    print(f"wrote {out / 'quickstart.png'} and {out / 'quickstart.json'} ({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
