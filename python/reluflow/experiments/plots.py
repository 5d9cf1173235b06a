"""Plots of a run's store (``reluflow plot STORE``): risk against steps or time (log-log, median and
10-90 % band over the initializations, and the best network), the histogram of final risks, and in
1-D the realizations against the target. PNG and PDF; matplotlib (Agg) is imported when plotting."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np

from ..estimators import Quadrature
from .config import parse_config
from ..store import load

__all__ = ["plot_store", "plot_sweep", "final_risks"]


def _pyplot():
    try:
        mpl = importlib.import_module("matplotlib")
    except ImportError as exc:
        raise ImportError("plots need matplotlib: pip install \"reluflow[cli]\"") from exc
    mpl.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def _save(fig, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=150, bbox_inches="tight")
    return paths


def plot_store(path: str | Path, out: str | Path | None = None) -> list[Path]:
    """Writes the plots of the run stored at ``path`` into ``out`` (default ``<store>-plots/`` beside
    it) and returns their paths."""
    plt = _pyplot()
    path = Path(path)
    ds = load(path)
    out = Path(out) if out is not None else path.with_name(path.name.removesuffix(".zarr") + "-plots")
    out.mkdir(parents=True, exist_ok=True)
    name, method = ds.attrs["name"], ds.attrs["method"]
    t, risk = ds.t.values, ds.risk.values                     # (T,), (T, K)
    finished = ds.status.values != "diverged"
    final = risk[-1]
    best = int(np.nanargmin(np.where(finished, final, np.nan))) if np.any(finished & np.isfinite(final)) else None
    xlabel = "step" if method == "gd" else "time t"
    written = []

    fig, ax = plt.subplots(figsize=(6, 4))
    sel = t > 0
    ok = risk[:, finished] if finished.any() else risk
    with np.errstate(all="ignore"):
        med = np.nanmedian(ok, axis=1)
        lo, hi = np.nanquantile(ok, 0.1, axis=1), np.nanquantile(ok, 0.9, axis=1)
    ax.fill_between(t[sel], lo[sel], hi[sel], alpha=0.25, label="10-90 % of initializations")
    ax.plot(t[sel], med[sel], lw=2, label="median")
    if best is not None:
        ax.plot(t[sel], risk[sel, best], lw=1, ls="--", label=f"best (init {best})")
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="risk", title=f"{name}: risk ({method}, K = {risk.shape[1]})")
    ax.legend(frameon=False)
    written += _save(fig, out, "risk")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    vals = final[finished & np.isfinite(final) & (final > 0)]
    if vals.size:
        bins = np.logspace(np.log10(vals.min()), np.log10(vals.max()) + 1e-12, 30)
        ax.hist(vals, bins=bins)
        ax.set_xscale("log")
    ax.set(xlabel="final risk", ylabel="initializations",
           title=f"{name}: final risks ({int((~finished).sum())} diverged)")
    written += _save(fig, out, "final_risk_hist")
    plt.close(fig)

    if method in ("dopri5", "rosenbrock") and "accepted" in ds:
        acc, rej = ds.accepted.values, ds.rejected.values
        t_end = float(t[-1])
        fig, (b1, b2) = plt.subplots(1, 2, figsize=(11, 4))
        order = np.argsort(acc)
        b1.bar(np.arange(acc.size), acc[order], label="accepted")
        b1.bar(np.arange(acc.size), rej[order], bottom=acc[order], label="rejected")
        b1.set(xlabel="initializations (sorted by accepted steps)", ylabel="steps", title=f"{method} steps per network")
        b1.legend(frameon=False)
        with np.errstate(divide="ignore"):
            mean_h = np.where(acc > 0, t_end / acc, np.nan)
        b2.scatter(mean_h, final, c=np.where(finished, "C0", "C3"), s=14)
        b2.set(xscale="log", yscale="log", xlabel="mean step size t_end / accepted", ylabel="final risk",
               title="step size against final risk (red: did not finish)")
        fig.suptitle(f"{name}: {method} step-size statistics")
        fig.tight_layout()
        written += _save(fig, out, f"{method}_steps")
        plt.close(fig)

    cfg = parse_config(ds.attrs["config"], name)
    prob = cfg.problem
    if prob.dim == 1 and prob.out_dim == 1:
        lo_, hi_ = (float(a[0]) for a in prob.input.typical_box())   # mean -/+ 4 sd for a Gaussian
        x = np.linspace(lo_, hi_, 400)[:, None]
        theta = ds.theta.values
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(x[:, 0], prob.target(x)[:, 0], color="k", lw=2, label="target")
        order = np.argsort(np.where(finished, final, np.inf))[: min(5, theta.shape[0])]
        out_k = prob.realization(theta[order], x, backend="numpy")
        for j, k in enumerate(order):
            ax.plot(x[:, 0], out_k[j, :, 0], lw=1.5 if j == 0 else 0.8, alpha=1.0 if j == 0 else 0.6,
                    label=f"init {k}: risk {final[k]:.2e}")
        ax.set(xlabel="x", ylabel="N(x)", title=f"{name}: the best realizations")
        ax.legend(frameon=False, fontsize=8)
        written += _save(fig, out, "realization")
        plt.close(fig)
    return written


def _axis_value(path: str, value):
    """A sweep value as a number on a plot axis: the hidden width for ``problem.widths``, the value
    itself for numbers, else its position (labelled by the value)."""
    if path == "problem.widths" and isinstance(value, list) and len(value) == 3:
        return value[1], f"H = {value[1]}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value, f"{value:g}"
    return None, json.dumps(value)


def final_risks(ds) -> np.ndarray:
    """(K,) final risk of every network of a run's Dataset: the exact quadrature risk where the
    problem allows it (1-D, piecewise-polynomial target), else the last recorded estimate; NaN for
    networks that did not finish."""
    cfg = parse_config(ds.attrs["config"], ds.attrs["name"])
    prob = cfg.problem
    risk = ds.risk.values[-1].copy()
    if prob.dim == 1 and prob.spec.target_spec.degree is not None:
        risk = np.asarray(prob.risk(ds.theta.values.astype(np.float64), Quadrature()))
    risk[ds.status.values != "ok"] = np.nan
    return risk


def plot_sweep(path: str | Path, out: str | Path | None = None, threshold: float = 1e-3) -> list[Path]:
    """Plots of a sweep store: the success fraction (final risk below ``threshold``) and the best and
    median final risks against the first sweep axis, one line per value of the other axes; PNG and PDF."""
    plt = _pyplot()
    path = Path(path)
    tree = load(path)
    out = Path(out) if out is not None else path.with_name(path.name.removesuffix(".zarr") + "-plots")
    out.mkdir(parents=True, exist_ok=True)
    axes = json.loads(tree.attrs["axes"])
    first, others = list(axes)[0], list(axes)[1:]
    lines: dict = {}
    for name in sorted(tree.children):
        node = tree[name]
        point = json.loads(node.attrs["point"])
        if not node.attrs.get("finished"):
            continue
        final = final_risks(node.to_dataset())
        x, label = _axis_value(first, point[first])
        key = (", ".join(f"{p.split('.')[-1]} = {json.dumps(point[p])}" for p in others)
               or f"{final.size} initializations each")
        ok = final[np.isfinite(final)]
        lines.setdefault(key, []).append((x, label, float(np.mean(final < threshold)),
                                          float(ok.min()) if ok.size else np.nan,
                                          float(np.median(ok)) if ok.size else np.nan))
    written = []
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for j, (key, rows) in enumerate(lines.items()):
        numeric = all(r[0] is not None for r in rows)
        rows = sorted(rows, key=lambda r: r[0]) if numeric else rows
        xs = [r[0] for r in rows] if numeric else list(range(len(rows)))
        color = f"C{j % 10}"
        a1.plot(xs, [r[2] for r in rows], "o-", color=color, label=key)
        a2.plot(xs, [r[3] for r in rows], "o-", color=color, label=f"best, {key}")
        a2.plot(xs, [r[4] for r in rows], "s--", color=color, alpha=0.5, label=f"median, {key}")
        if not numeric:
            for a in (a1, a2):
                a.set_xticks(xs, [r[1] for r in rows], rotation=30)
    xlabel = "width H" if first == "problem.widths" else first
    a1.set(xlabel=xlabel, ylabel=f"fraction of runs with final risk < {threshold:g}", ylim=(-0.03, 1.03),
           title="success fraction")
    a2.set(xlabel=xlabel, ylabel="final risk", yscale="log", title="best and median final risk")
    for a in (a1, a2):
        if first == "problem.widths":
            a.set_xscale("log", base=2)
        a.legend(frameon=False, fontsize=7)
    fig.suptitle(f"{tree.attrs['name']}: sweep over {', '.join(axes)}")
    fig.tight_layout()
    written += _save(fig, out, "sweep")
    plt.close(fig)
    return written
