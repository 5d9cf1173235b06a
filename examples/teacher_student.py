"""Teacher–student under Gaussian input: how often does the exact gradient flow end in a spurious minimum?

Setting (the classic two-layer teacher–student problem; Safran & Shamir, "Spurious local minima are
common in two-layer ReLU networks", ICML 2018): input ``x ~ N(0, I_d)``, teacher
``f(x) = sum_{j=1..k} relu(e_j . x)`` (orthonormal teacher weights, output weights 1, no biases), student
``[d, n, 1]`` with ``d = k = n``, bias-free, output weights fixed to 1: only the ``n x d`` first-layer
weights move. Reported there: for k = n the fraction of random initializations that end in a spurious
local minimum grows with k (nonzero from k = 6, above half by k = 20).

What reluflow adds: the *population* risk, gradient and Hessian in closed form (``rf.Exact()``: bivariate
normal integrals, exact to rounding), so no sampling error hides a shallow spurious minimum.

Per k in ``--ks`` (default 4, 6, ..., 12), ``--inits`` random starts (weights N(0, 1/d), seed ``--seed``):
1. ``rf.gradient_flow(..., method="dopri5", frozen=mask)`` to ``t = --t-end`` on the exact risk;
2. ``rf.polish(..., method="newton", frozen=mask)`` to ``|G| <= 1e-12`` (the critical point the flow
   approaches, to machine precision);
3. classification of the end point by its risk and the smallest eigenvalue of the exact Hessian over
   the free parameters: **global** (risk <= 1e-20: the teacher's neurons up to permutation),
   **spurious minimum** (risk > 1e-20, smallest eigenvalue > ``--eig-tol``), **saddle** (an eigenvalue
   < -eig-tol), **not converged** (polish did not reach 1e-12).
Plotted: the fraction of each class against k, and the final risks of the spurious minima.
Prints a table; writes ``teacher_student.png`` and ``teacher_student.json`` to ``--out`` (default
``examples/results``). ``--quick``: k = 4, 6 with 6 starts (seconds).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

import reluflow as rf

NAME = "teacher_student"
GLOBAL_RISK = 1e-12    # the closed form sums O(1) terms: a global minimum gives 0 up to ~1e-15
CLASSES = ("global", "spurious minimum", "saddle", "not converged")


def problem(k: int) -> tuple[rf.Problem, np.ndarray]:
    """The [k, k, 1] student of the teacher sum_j relu(x_j) under N(0, I_k), and its frozen mask (P,)."""
    teacher_widths = [k, k, 1]
    layout = rf.Layout(teacher_widths)
    theta_t = np.concatenate([np.eye(k).ravel(), np.zeros(k), np.ones(k), np.zeros(1)])
    assert theta_t.size == layout.num_params
    prob = rf.Problem([k, k, 1], rf.targets.Teacher(teacher_widths, theta_t), rf.dists.Gaussian(0.0, 1.0, dim=k))
    frozen = prob.mask(layers=[1], weights=False, biases=True) | prob.mask(layers=[2])
    return prob, frozen


def initial_params(prob: rf.Problem, n: int, seed: int) -> np.ndarray:
    """First-layer weights N(0, 1/d) (LeCun), biases 0, output weights 1, output bias 0: (n, P)."""
    theta = prob.init(n=n, seed=seed, scheme="lecun")
    (W1, b1), (W2, b2) = prob.layout.unpack(theta)
    b1[...] = 0.0
    W2[...] = 1.0
    b2[...] = 0.0
    return theta


def classify(risk: float, min_eig: float, status: str, eig_tol: float) -> str:
    if status != "converged":
        return "not converged"
    if risk <= GLOBAL_RISK:
        return "global"
    return "spurious minimum" if min_eig > -eig_tol else "saddle"


def run_k(k: int, inits: int, seed: int, t_end: float, eig_tol: float) -> dict:
    prob, frozen = problem(k)
    est = rf.Exact()
    theta0 = initial_params(prob, inits, seed)
    t0 = time.perf_counter()
    run = rf.gradient_flow(prob, theta0, t_end, method="dopri5", estimator=est, frozen=frozen,
                           rtol=1e-8, atol=1e-10, progress=False)
    t_flow = time.perf_counter() - t0
    pol = rf.polish(prob, run.theta, est, method="newton", frozen=frozen)
    t_polish = time.perf_counter() - t0 - t_flow
    free = ~frozen
    H = np.asarray(prob.hessian(pol.theta, est))[:, free][:, :, free]
    min_eig = np.linalg.eigvalsh(H)[:, 0]
    labels = [classify(float(r), float(e), str(s), eig_tol) for r, e, s in zip(pol.risk, min_eig, pol.status)]
    counts = {c: labels.count(c) for c in CLASSES}
    spurious = [float(r) for r, lab in zip(pol.risk, labels) if lab == "spurious minimum"]
    return {"k": k, "inits": inits, "t_end": t_end, "counts": counts,
            "fraction": {c: counts[c] / inits for c in CLASSES},
            "flow_risk_final": [float(r) for r in run.risk[-1]],
            "polished_risk": [float(r) for r in pol.risk], "grad_norm": [float(g) for g in pol.grad_norm],
            "min_eig": [float(e) for e in min_eig], "labels": labels, "spurious_risks": spurious,
            "flow_steps": [int(s) for s in run.accepted], "flow_status": [str(s) for s in run.status],
            "seconds_flow": t_flow, "seconds_polish": t_polish}


def plot(rows: list, path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [r["k"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for c, marker in zip(CLASSES, "osx^"):
        ax1.plot(ks, [r["fraction"][c] for r in rows], marker=marker, label=c)
    ax1.set_xlabel("k = d = n (teacher and student width)")
    ax1.set_ylabel("fraction of initializations")
    ax1.set_ylim(-0.02, 1.02)
    ax1.set_title("end points of the exact flow + Newton polish")
    ax1.legend()
    for r in rows:
        if r["spurious_risks"]:
            ax2.scatter([r["k"]] * len(r["spurious_risks"]), r["spurious_risks"], color="C1", s=14)
    ax2.set_yscale("log")
    ax2.set_xlabel("k")
    ax2.set_ylabel("population risk")
    ax2.set_title("risk of the spurious minima found")
    fig.suptitle("Teacher-student, x ~ N(0, I_k), bias-free, output weights 1 (rf.Exact())")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[4, 6, 8, 10, 12])
    ap.add_argument("--inits", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--t-end", type=float, default=200.0)
    ap.add_argument("--eig-tol", type=float, default=1e-9)
    ap.add_argument("--quick", action="store_true", help="k = 4, 6 with 6 starts")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent / "results")
    a = ap.parse_args(argv)
    if a.quick:
        a.ks, a.inits = [4, 6], 6
    a.out.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"{'k':>3} {'inits':>5} " + " ".join(f"{c:>16}" for c in CLASSES) + f" {'flow s':>7} {'polish s':>8}")
    for k in a.ks:
        r = run_k(k, a.inits, a.seed, a.t_end, a.eig_tol)
        rows.append(r)
        print(f"{k:>3} {a.inits:>5} " + " ".join(f"{r['counts'][c]:>16}" for c in CLASSES)
              + f" {r['seconds_flow']:>7.1f} {r['seconds_polish']:>8.1f}", flush=True)
    data = {"name": NAME, "args": {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(a).items()},
            "rows": rows}
    (a.out / f"{NAME}.json").write_text(json.dumps(data, indent=1))
    plot(rows, a.out / f"{NAME}.png")
    print(f"wrote {a.out / (NAME + '.png')} and {NAME}.json")
    return data


if __name__ == "__main__":
    main()
