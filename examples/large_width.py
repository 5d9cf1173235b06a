"""Large width (arXiv:2108.04620 at scale): SGD of [1, H, 1] ReLU nets with H = 10^5, K = 1000 standard-normal
initializations and 10^4 steps on a piecewise-affine target, the EXACT risk of every network every 100 steps.

Setting (seed 003, arXiv:2108.04620): input U[0, 1], the continuous piecewise-affine target with knots
0, .25, .5, 1 and values 0, 1, .25, .5 (the one of ``gd_random_inits.py``), i.i.d. standard-normal initial
parameters (``prob.init``), plain SGD ``theta_{n+1} = theta_n - lr G_n(theta_n)`` where ``G_n`` is the
gradient of the Monte-Carlo risk of fresh samples drawn at every step (``rf.MonteCarlo(n, seed,
resample=True)``, all K networks share a step's samples). The theorem: each run reaches a risk near 0
with some probability p > 0, so the best of K fails with probability at most (1 - p)^K.

Step size ``lr = lr_scale / H`` (default ``lr_scale = 0.5``). Why 1/H: with standard-normal
parameters N(x) is a sum of H independent terms, so the initial risk grows like H (measured: median
exact risk 23, 310, 4950 at H = 100, 1000, 10^4, about 0.4 H), and so does the curvature: the largest
eigenvalue of the exact Hessian at initialization is about 2.3 H (measured 2.0-3.0 H for H = 25 ... 400
from ``rf.landscape.spectrum`` and 2.3-2.6 H at H = 1000 by power iteration with ``prob.hvp``). Gradient
descent is stable while ``lr * lambda_max < 2``, i.e. ``lr < ~0.87 / H`` at the start: 0.5 / H keeps
``lr * lambda_max`` near 1.2 from the first step at every width; a step of 2 / H did not diverge but
stalled (median exact risk after 2000 steps 7, 23 and 84 times that of 1 / H at H = 100, 1000, 10^4), and
1 / H sits at the edge of stability (lambda_max/H falls to 1.1-2.0 along the run, just below 2 / lr).
Wider nets converged more slowly per step in these tests (median exact risk after 2000 steps at
lr = 1/H: 1.3e-3, 9.6e-4, 8.4e-3 at H = 100, 1000, 10^4), so the reduced size is no prediction of the
full one.

Samples per step ``n = 128``: at H = 1000 (K = 40, 2000 steps) n = 64, 128 and 512 gave the same exact
risks to within 10 % (median 1.2e-3, 1.2e-3, 1.1e-3 at lr = 1/H): the noise of a step's risk
estimate is not what limits SGD here, while the cost of a step is K * H * n node-neuron pairs (1.3e10 at
the full size with n = 128, 1.3e14 over the run).

Success: exact risk ``prob.risk(theta, rf.Quadrature())`` (exact up to rounding for this shallow 1-D net;
C++ O(H log H) sweep on the host) below ``--threshold`` (default 1e-3, as in ``gd_random_inits.py``;
the variance of the target is 0.046). The SGD runs in chunks of ``--every`` = 100 steps with ``start_step``, so
every step draws the samples a single uninterrupted run would draw (bitwise the same run on the cpu
backend: tests/test_examples.py), and the exact risk is evaluated between chunks. A network flagged as
diverged stays frozen (NaN risk) as in ``reluflow run``.

Device and size: ``backend="cuda"`` when ``rf.backends()`` says it is available, else ``"cupy"``, else
``"cpu"``. The full size has 3e8 parameters (2.4 GB in float64), so on a GPU theta is float32 (1.2 GB;
the kernels accumulate in float64) and float64 on the cpu backend (``--dtype`` overrides); the exact risk
is always computed in float64 from the network's parameters. Without a GPU the script runs a REDUCED
size (H = 1000, K = 100, 10^4 steps, about 1.5 minutes on 2 busy cores) and says so, in its printout and in the
JSON (``requested`` against ``run``); ``--full`` asks for the full size (refused on a CPU unless
``--force``), ``--quick`` a tiny size (the test, seconds).

Writes ``large_width.json`` (settings, device, sizes, success fraction, median and best exact risk per
record, final exact risks), ``large_width.npz`` (steps (T,), exact_risk (T, K), the final theta when it
has at most 10^7 entries) after every chunk (Ctrl-C keeps what was computed) and ``large_width.png``
(success fraction against step, final exact-risk histogram) to ``--out`` (default
``examples/results/large_width``).
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import signal
import sys
import threading
import time

import numpy as np

import reluflow as rf

NAME = "large_width"
KNOTS, VALUES = [0.0, 0.25, 0.5, 1.0], [0.0, 1.0, 0.25, 0.5]
FULL = {"H": 100_000, "K": 1000, "steps": 10_000}
REDUCED = {"H": 1000, "K": 100, "steps": 10_000}      # what a CPU runs by default
QUICK = {"H": 32, "K": 6, "steps": 300}
THETA_SAVE_LIMIT = 10_000_000                          # entries of the final theta written to the npz
EXACT_BLOCK = 50_000_000                               # parameters per block of the exact-risk evaluation


def make_problem(H: int) -> rf.Problem:
    """The [1, H, 1] problem: piecewise-affine target (KNOTS, VALUES) under U[0, 1]."""
    return rf.Problem([1, H, 1], rf.targets.PiecewiseLinear(knots=KNOTS, values=VALUES),
                      rf.dists.Uniform(0.0, 1.0))


def choose_backend() -> tuple[str, dict]:
    """The backend that runs the SGD: "cuda", else "cupy", else "cpu"; and rf.backends() as text."""
    info = rf.backends()
    for name in ("cuda", "cupy"):
        if info[name].available:
            return name, {k: repr(v) for k, v in info.items()}
    return "cpu", {k: repr(v) for k, v in info.items()}


def exact_risk(prob: rf.Problem, theta: np.ndarray) -> np.ndarray:
    """(K,) exact quadrature risk of host theta (K, P), in float64, in blocks of networks (bounded memory)."""
    K, P = theta.shape
    block = max(1, EXACT_BLOCK // P)
    out = np.empty(K)
    for a in range(0, K, block):
        out[a:a + block] = prob.risk(theta[a:a + block].astype(np.float64), rf.Quadrature(), backend="cpu")
    return out


def sgd_chunk(prob, theta, lr, steps, estimator, start, backend):
    """``steps`` SGD steps of host theta (k, P) from global step ``start``: the host theta reached and
    the diverged flags (k,)."""
    if backend == "cupy":
        import cupy  # noqa: PLC0415 - only on a CuPy machine
        theta = cupy.asarray(theta)
    run = rf.gradient_descent(prob, theta, lr=lr, steps=steps, estimator=estimator, record_every=steps,
                              backend=backend, start_step=start, progress=False)
    out = run.theta.get() if backend == "cupy" else np.asarray(run.theta)
    if run.interrupted:  # the Python driver's own Ctrl-C (only where ours is not installed): stop here
        raise KeyboardInterrupt
    return out, np.asarray(run.diverged)


class CtrlC:
    """The first Ctrl-C only sets ``hit``: the run stops at the next chunk boundary, so theta and the
    records stay those of one step; a second Ctrl-C raises KeyboardInterrupt at once (the files on disk
    then hold the last finished chunk, each replaced whole)."""

    def __init__(self):
        self.hit, self.old = False, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self.handler)
        return self

    def handler(self, signum, frame):
        self.hit = True
        signal.signal(signal.SIGINT, self.old)

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        return False


class Bar:
    """Progress on stderr (a terminal) and one stdout line every 10 % of the run."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.start, self.printed = total, enabled, time.perf_counter(), -1

    def update(self, done: int, text: str) -> None:
        frac = done / self.total if self.total else 1.0
        el = time.perf_counter() - self.start
        eta = el * (1 - frac) / frac if frac > 0 else float("nan")
        if self.enabled:
            sys.stderr.write(f"\r[{'#' * int(30 * frac):<30}] {100 * frac:5.1f}%  eta {eta:6.1f}s  {text}")
            sys.stderr.write("\n" if frac >= 1 else "")
            sys.stderr.flush()
        decile = int(10 * frac)
        if decile > self.printed:
            self.printed = decile
            print(f"  step {done:>6}/{self.total}  {text}  ({el:.1f} s)", flush=True)


def write_results(out: pathlib.Path, meta: dict, steps: list, risks: list, theta: np.ndarray | None) -> None:
    """JSON (summary) and npz (records) of what was computed so far; each file replaced at once."""
    R = np.array(risks)                                   # (T, K), NaN for diverged networks
    thr = meta["threshold"]
    meta = {**meta, "records": {
        "step": steps,
        "success_fraction": [float(np.mean(r < thr)) for r in R],
        "median_exact_risk": [float(np.nanmedian(r)) if np.isfinite(r).any() else None for r in R],
        "best_exact_risk": [float(np.nanmin(r)) if np.isfinite(r).any() else None for r in R],
        "diverged": [int(np.sum(~np.isfinite(r))) for r in R]},
        "final_exact_risk": [None if not math.isfinite(v) else float(v) for v in R[-1]],
        "theta_saved": theta is not None}
    tmp = out / f"{NAME}.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(out / f"{NAME}.json")
    arrays = {"step": np.array(steps), "exact_risk": R}
    if theta is not None:
        arrays["theta"] = theta
    tmp = out / f"{NAME}.tmp.npz"
    np.savez(tmp, **arrays)
    tmp.replace(out / f"{NAME}.npz")


def plot(out: pathlib.Path, meta: dict, steps: list, risks: list) -> None:
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    R, thr, size = np.array(risks), meta["threshold"], meta["run"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11.5, 4.2))
    a1.plot(steps, [np.mean(r < thr) for r in R], "o-", ms=3)
    a1.set(xlabel="SGD step", ylabel=f"fraction of networks with exact risk < {thr:g}", ylim=(-0.03, 1.03),
           title="success fraction against step")
    a1b = a1.twinx()
    a1b.semilogy(steps, [np.nanmedian(r) if np.isfinite(r).any() else np.nan for r in R], color="C1", lw=1)
    a1b.set_ylabel("median exact risk", color="C1")
    final = R[-1][np.isfinite(R[-1]) & (R[-1] > 0)]
    if final.size:
        bins = np.geomspace(final.min() / 1.5, final.max() * 1.5, 31)
        a2.hist(final, bins=bins)
    a2.axvline(thr, color="k", ls="--", lw=1, label=f"threshold {thr:g}")
    a2.set(xscale="log", xlabel="final exact risk (rf.Quadrature())", ylabel="networks",
           title=f"final exact risk after {steps[-1]} steps")
    a2.legend()
    note = "" if not meta["reduced"] else (f"  [REDUCED size; requested H={meta['requested']['H']}, "
                                           f"K={meta['requested']['K']}, {meta['requested']['steps']} steps]")
    fig.suptitle(f"SGD of [1, {size['H']}, 1], K = {size['K']} standard-normal inits, n = {meta['n']} fresh "
                 f"samples/step, lr = {meta['lr']:.3g}, {meta['backend']} {meta['dtype']}{note}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / f"{NAME}.png", dpi=110)
    plt.close(fig)


def sizes(a, gpu: bool) -> tuple[dict, dict, str]:
    """(requested, run, why) sizes from the arguments; SystemExit(2) for --full on a CPU without --force."""
    if a.quick:
        requested = dict(QUICK)
    else:
        requested = dict(FULL)
    for key in ("H", "K", "steps"):
        if getattr(a, key) is not None:
            requested[key] = getattr(a, key)
    explicit = any(getattr(a, k) is not None for k in ("H", "K", "steps"))
    if gpu or a.quick or explicit:
        return requested, dict(requested), ""
    if a.full:
        if not a.force:
            raise SystemExit(f"large_width: no GPU here, and the full size (H = {FULL['H']}, K = {FULL['K']}, "
                             f"{FULL['steps']} steps: {FULL['K'] * (3 * FULL['H'] + 1):.2g} parameters, "
                             f"{FULL['K'] * FULL['H'] * 128 * FULL['steps']:.2g} node-neuron pairs) would take "
                             f"days on this CPU. Run without --full for the reduced size, or add --force "
                             f"to run it anyway.")
        return requested, dict(requested), "--full --force on a CPU"
    return requested, dict(REDUCED), "no GPU here: reduced size (--full --force for the full one)"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="the full size even without a GPU (with --force)")
    ap.add_argument("--force", action="store_true", help="with --full: run the full size on a CPU")
    ap.add_argument("--quick", action="store_true", help=f"a tiny size for the tests: {QUICK}")
    ap.add_argument("--H", type=int, default=None, help="width (overrides the size)")
    ap.add_argument("--K", type=int, default=None, help="random initializations (overrides the size)")
    ap.add_argument("--steps", type=int, default=None, help="SGD steps (overrides the size)")
    ap.add_argument("--every", type=int, default=100, help="steps between exact-risk records")
    ap.add_argument("--n", type=int, default=128, help="fresh Monte-Carlo samples per step")
    ap.add_argument("--lr-scale", type=float, default=0.5, help="lr = lr_scale / H")
    ap.add_argument("--threshold", type=float, default=1e-3, help="success: exact risk below this")
    ap.add_argument("--seed", type=int, default=0, help="seed of the initial parameters")
    ap.add_argument("--sample-seed", type=int, default=1, help="seed of the SGD samples")
    ap.add_argument("--backend", default=None, help="cuda, cupy or cpu (default: the first available)")
    ap.add_argument("--dtype", default=None, choices=("float32", "float64"),
                    help="default: float32 on a GPU, float64 on the cpu backend")
    ap.add_argument("--out", type=pathlib.Path,
                    default=pathlib.Path(__file__).resolve().parent / "results" / NAME)
    a = ap.parse_args(argv)
    for key in ("H", "K", "steps", "every", "n"):
        v = getattr(a, key)
        if v is not None and v < 1:
            ap.error(f"--{key}: expected a positive integer, got {v}")
    if not (a.lr_scale > 0 and a.threshold > 0):
        ap.error("--lr-scale and --threshold: expected positive numbers")

    backend, backends = choose_backend()
    backend = a.backend or backend
    gpu = backend in ("cuda", "cupy")
    requested, size, why = sizes(a, gpu)
    dtype = a.dtype or ("float32" if gpu else "float64")
    H, K, steps = size["H"], size["K"], size["steps"]
    lr = a.lr_scale / H
    prob = make_problem(H)
    estimator = rf.MonteCarlo(a.n, seed=a.sample_seed, resample=True)
    a.out.mkdir(parents=True, exist_ok=True)

    reduced = size != requested
    print(f"large_width: SGD of [1, {H}, 1], K = {K}, {steps} steps, n = {a.n} samples/step, lr = {a.lr_scale:g}/H"
          f" = {lr:.3g}, backend {backend} ({dtype}), exact risk every {a.every} steps")
    if reduced or why:
        print(f"  NOTE: {why}. Requested H = {requested['H']}, K = {requested['K']}, {requested['steps']} "
              f"steps; running H = {H}, K = {K}, {steps} steps.")
    meta = {"name": NAME, "paper": "arXiv:2108.04620", "target": {"knots": KNOTS, "values": VALUES},
            "input": "U[0, 1]", "requested": requested, "run": size, "reduced": reduced, "why": why,
            "backend": backend, "dtype": dtype, "backends": backends, "n": a.n, "lr_scale": a.lr_scale,
            "lr": lr, "every": a.every, "seed": a.seed, "sample_seed": a.sample_seed,
            "threshold": a.threshold, "estimator": repr(estimator), "exact": "rf.Quadrature() (cpu, float64)",
            "num_params": K * prob.num_params, "interrupted": False, "next_step": 0}

    t0 = time.perf_counter()
    theta = prob.init(n=K, seed=a.seed, dtype=dtype)
    active = np.ones(K, dtype=bool)
    rec_steps, rec_risk = [0], [exact_risk(prob, theta)]
    bar = Bar(steps, sys.stderr.isatty())

    def status() -> str:
        r = rec_risk[-1]
        return (f"exact risk median {np.nanmedian(r):.3g}, best {np.nanmin(r):.3g}, "
                f"success {np.mean(r < a.threshold):.2f}") if np.isfinite(r).any() else "all diverged"

    def save(final: bool) -> None:
        meta["seconds"] = time.perf_counter() - t0
        keep = theta if (final and theta.size <= THETA_SAVE_LIMIT) else None
        write_results(a.out, meta, rec_steps, rec_risk, keep)

    save(False)
    bar.update(0, status())
    s = 0
    with CtrlC() as stop:
        while s < steps and active.any() and not stop.hit:
            m = min(a.every, steps - s)
            idx = np.flatnonzero(active)
            new, div = sgd_chunk(prob, theta[idx], lr, m, estimator, s, backend)
            r = np.full(K, np.nan)
            r[idx] = exact_risk(prob, new)
            r[idx[div]] = np.nan
            theta[idx], active[idx] = new, ~div
            s += m
            rec_steps.append(s)
            rec_risk.append(r)
            meta["next_step"] = s
            save(s >= steps)
            bar.update(s, status())
    if stop.hit and s < steps:
        meta["interrupted"] = True
        print(f"\ninterrupted (Ctrl-C): keeping the {len(rec_steps)} records up to step {s}", flush=True)
    save(True)
    plot(a.out, meta, rec_steps, rec_risk)
    print(f"final (step {s}): {status()}; diverged {int(np.sum(~active))}; "
          f"{meta['seconds']:.1f} s")
    print(f"wrote {a.out / (NAME + '.json')}, {NAME}.npz and {NAME}.png")
    return meta


if __name__ == "__main__":
    main()
