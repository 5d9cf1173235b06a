"""Seed 001 (arXiv:2207.06246): plain against normalized gradient flow for shallow 1-D ReLU nets.

Claim (Eberle, Jentzen, Riekert, Weiss, "Normalized gradient flow optimization in the training of ReLU
artificial neural networks"): restrict the gradient flow to the submanifold on which every hidden
neuron's incoming weight and bias satisfy ``|(w_i, b_i)| = 1`` (the outer weights carry the scale, so
every realization is still reachable: ReLU is positively homogeneous). For shallow nets with 1-D
layers and a Lipschitz target, every trajectory of this normalized flow is bounded; for the plain
flow on the whole parameter space boundedness is an open problem.

Experiment: ``[1, H, 1]`` nets (default H = 16), a continuous piecewise-linear (Lipschitz) target on
U[0, 1], exact 1-D quadrature (``rf.Quadrature()``), dopri5. From ``--inits`` standard-normal
initializations theta we form the rescaled copies ``theta_s`` (every ``(w_i, b_i)`` times s, every
outer weight ``v_i`` divided by s, s in ``--scales``): the same realization, hence the same initial
risk. The plain flow ``rf.gradient_flow`` runs from every ``theta_s``: it is not invariant under this
rescaling (the speed of a neuron's kink and of its outer weight depend on s), and its parameters stay
at the scale of their start. The normalized flow ``rf.normalized_gradient_flow`` first maps
``theta_s`` onto the manifold with ``Problem.normalize`` -- the same point for every s, so one run per
initialization covers all s (the script checks this) -- and its hidden parameters stay on the unit
spheres for all t.

Plotted (``record_theta=True`` snapshots): the risk against t for both flows (log scale), the
Euclidean norm ``|Theta_t|_2`` and the largest outer weight ``max_i |v_i(t)|``. Both flows decrease the
risk monotonically; what differs is the parametrization. What one sees with the defaults: the plain
flows stay near the scale of their start (bounded here, as far as a finite horizon can tell: a plot
shows ``sup`` over [0, T], it cannot prove boundedness), the normalized flow keeps every ``(w_i, b_i)``
on its unit sphere to rounding and carries the scale in the outer weights, which grow slowly while
its risk, slower in flow time than the plain flows', keeps decreasing.

Prints a table; writes ``seed001_normalized_flow.png`` and ``seed001_normalized_flow.json`` to
``--out`` (default ``examples/results``).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

import reluflow as rf

NAME = "seed001_normalized_flow"


def rescale(theta: np.ndarray, H: int, s: float) -> np.ndarray:
    """[1, H, 1] parameters with every (w_i, b_i) times s and every v_i divided by s (same realization)."""
    out = theta.copy()
    out[:, :2 * H] *= s
    out[:, 2 * H:3 * H] /= s
    return out


def summarize(run: rf.Run, H: int) -> dict:
    """Per-network arrays over the records: |theta|_2, max |v_i|, max_i | |(w_i, b_i)| - 1 |."""
    th = run.thetas                                                   # (T, K, P)
    wb = np.sqrt(th[:, :, :H] ** 2 + th[:, :, H:2 * H] ** 2)            # (T, K, H)
    return {"norm": np.linalg.norm(th, axis=2), "vmax": np.max(np.abs(th[:, :, 2 * H:3 * H]), axis=2),
            "sphere_dev": np.max(np.abs(wb - 1.0), axis=2), "wbmax": np.max(wb, axis=2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    ap.add_argument("--width", type=int, default=16, help="hidden width H")
    ap.add_argument("--inits", type=int, default=3, help="standard-normal initializations")
    ap.add_argument("--scales", default="0.5,1,2",
                    help="rescalings s: (w_i, b_i) -> s (w_i, b_i), v_i -> v_i / s")
    ap.add_argument("--t-end", type=float, default=500.0)
    ap.add_argument("--records", type=int, default=250)
    ap.add_argument("--rtol", type=float, default=1e-7)
    ap.add_argument("--atol", type=float, default=1e-10)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--quick", action="store_true", help="tiny run for the tests")
    args = ap.parse_args()
    if args.quick:
        args.width, args.inits, args.scales, args.t_end, args.records = 4, 1, "0.5,2", 5.0, 20
        args.rtol, args.atol = 1e-6, 1e-9
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    H = args.width
    scales = [float(s) for s in args.scales.split(",")]
    target = rf.targets.PiecewiseLinear(knots=[0, .3, .6, 1], values=[0, 1, -.5, .5])
    prob = rf.Problem([1, H, 1], target, rf.dists.Uniform(0.0, 1.0))
    estimator = rf.Quadrature()
    base = prob.init(n=args.inits, seed=args.seed)
    # plain flow: every (init, scale) pair; normalized flow: one run per init (the same for every s)
    plain0 = np.vstack([rescale(base, H, s) for s in scales])          # row = j * inits + i
    normal0 = [prob.normalize(rescale(base, H, s)) for s in scales]
    invariance = max(float(np.max(np.abs(n - normal0[0]))) for n in normal0)
    kw = dict(t_end=args.t_end, method="dopri5", rtol=args.rtol, atol=args.atol, estimator=estimator,
              record_every=args.t_end / args.records, record_theta=True, backend=args.backend)
    t0 = time.perf_counter()
    plain = rf.gradient_flow(prob, plain0, **kw)
    t_plain = time.perf_counter() - t0
    norm_run = rf.normalized_gradient_flow(prob, base, **kw)
    t_norm = time.perf_counter() - t0 - t_plain
    sp, sn = summarize(plain, H), summarize(norm_run, H)

    rows = []
    print(f"[1, {H}, 1] nets, target {target!r}, U[0,1], exact quadrature, dopri5 (rtol={args.rtol:g}), "
          f"t in [0, {args.t_end:g}]")
    print(f"normalize(theta_s) is the same point for every s (max difference {invariance:.1e})")
    print(f"{'init':>4} {'flow':>12} {'L(0)':>10} {'L(T)':>10} {'|θ_0|':>8} {'sup|θ_t|':>9} {'|θ_T|':>8} "
          f"{'sup max|v|':>10} {'sup||(w,b)|-1|':>14} {'max ΔL>0':>9} {'steps':>6}")

    def add(i, flow, s, run, summ, k):
        r = run.risk[:, k]
        row = {"init": i, "flow": flow, "scale": s, "risk0": float(r[0]), "risk_final": float(r[-1]),
               "norm0": float(summ["norm"][0, k]), "sup_norm": float(np.nanmax(summ["norm"][:, k])),
               "norm_final": float(summ["norm"][-1, k]), "sup_vmax": float(np.nanmax(summ["vmax"][:, k])),
               "sup_wb": float(np.nanmax(summ["wbmax"][:, k])),
               "sup_sphere_dev": float(np.nanmax(summ["sphere_dev"][:, k])),
               "max_risk_increase": float(max(0.0, np.nanmax(np.diff(r)))),
               "accepted": int(run.accepted[k]), "status": str(run.status[k])}
        rows.append(row)
        name = f"plain s={s:g}" if flow == "plain" else "normalized"
        print(f"{i:>4} {name:>12} {row['risk0']:>10.3e} {row['risk_final']:>10.3e} {row['norm0']:>8.2f} "
              f"{row['sup_norm']:>9.2f} {row['norm_final']:>8.2f} {row['sup_vmax']:>10.2f} "
              f"{row['sup_sphere_dev']:>14.1e} {row['max_risk_increase']:>9.1e} {row['accepted']:>6}")

    for i in range(args.inits):
        for j, s in enumerate(scales):
            add(i, "plain", s, plain, sp, j * args.inits + i)
        add(i, "normalized", None, norm_run, sn, i)
    elapsed = time.perf_counter() - t0
    nrows = [r for r in rows if r["flow"] == "normalized"]
    prows = [r for r in rows if r["flow"] == "plain"]
    summary = {
        "normalize_invariance": invariance,
        "normalized_max_sphere_deviation": max(r["sup_sphere_dev"] for r in nrows),
        "normalized_sup_norm": max(r["sup_norm"] for r in nrows),
        "normalized_sup_vmax": max(r["sup_vmax"] for r in nrows),
        "plain_sup_norm": max(r["sup_norm"] for r in prows),
        "plain_sup_vmax": max(r["sup_vmax"] for r in prows),
        "max_risk_increase": max(r["max_risk_increase"] for r in rows),
        "all_risk_decreased": all(r["risk_final"] < r["risk0"] for r in rows),
        "seconds_plain": t_plain, "seconds_normalized": t_norm,
    }
    print(f"normalized flow: | |(w_i,b_i)| - 1 | <= {summary['normalized_max_sphere_deviation']:.1e}, "
          f"sup_t |θ_t| = {summary['normalized_sup_norm']:.2f}, "
          f"sup_t max|v_i| = {summary['normalized_sup_vmax']:.2f}; "
          f"plain flow: sup_t |θ_t| = {summary['plain_sup_norm']:.2f}; largest risk increase between "
          f"records {summary['max_risk_increase']:.1e}")

    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    colors = {s: plt.cm.plasma(0.1 + 0.7 * j / max(1, len(scales) - 1)) for j, s in enumerate(scales)}
    styles = ["-", "--", ":", "-."]
    for i in range(args.inits):
        ls = styles[i % len(styles)]
        for j, s in enumerate(scales):
            k = j * args.inits + i
            lab = f"plain, s={s:g}" if i == 0 else None
            for ax, y in zip(axes, (plain.risk[:, k], sp["norm"][:, k], sp["vmax"][:, k])):
                ax.plot(plain.t, y, ls=ls, color=colors[s], lw=1.3, label=lab)
        lab = "normalized (any s)" if i == 0 else None
        for ax, y in zip(axes, (norm_run.risk[:, i], sn["norm"][:, i], sn["vmax"][:, i])):
            ax.plot(norm_run.t, y, ls=ls, color="k", lw=2.0, label=lab)
    axes[0].set_xscale("symlog", linthresh=1.0)
    for ax, ylab, title in zip(axes, ("risk L(Θ_t) (exact quadrature)", "|Θ_t|₂", "max_i |v_i(t)|"),
                               ("risk: both flows decrease it", "parameter norm",
                                "largest outer weight")):
        ax.set_yscale("log")
        ax.set_xlabel("t")
        ax.set_ylabel(ylab)
        ax.set_title(title)
    axes[0].legend(fontsize=8, title=f"line style: init 0..{args.inits - 1}", title_fontsize=8)
    fig.suptitle(f"Plain vs normalized gradient flow, [1, {H}, 1] ReLU nets, piecewise-linear target, "
                 "θ_s = (s·(w,b), v/s)  (arXiv:2207.06246)")
    fig.tight_layout()
    fig.savefig(out / f"{NAME}.png", dpi=110)
    (out / f"{NAME}.json").write_text(json.dumps({
        "seed_paper": "arXiv:2207.06246", "target": repr(target), "input": "Uniform(0, 1)",
        "width": H, "scales": scales, "estimator": repr(estimator), "method": "dopri5", "rtol": args.rtol,
        "atol": args.atol, "t_end": args.t_end, "rows": rows, "summary": summary, "seconds": elapsed},
        indent=2))
    print(f"wrote {out / (NAME + '.png')} and {out / (NAME + '.json')} ({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
