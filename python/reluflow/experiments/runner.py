"""Running a config into a store, in checkpointed segments (SPEC §9).

Gradient descent and the fixed-step flows run in segments (about 20 per run, each a whole number of
record intervals); after each segment the records are appended and the parameters checkpointed (see
``store``). A run killed at any point and started again continues from its last checkpoint: a
network's result does not depend on the batch it runs in, GD resumes bitwise from ``start_step`` and
the fixed-step flows are time-invariant for a fixed estimator, so the final store equals an
uninterrupted run's bitwise. Networks frozen as diverged stay frozen; the blow-up factor
``max_growth`` of the integrators is measured from the start of each segment. Ctrl-C stops at the
last checkpoint. dopri5 and rosenbrock (the adaptive methods) run as one segment.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..flows import Run, gradient_descent, gradient_flow
from .config import ADAPTIVE, RunConfig
from ..store import RunStore

__all__ = ["run_config", "default_store"]

SEGMENTS = 20


def default_store(cfg: RunConfig) -> Path:
    """``results/<name>.zarr``."""
    return Path("results") / f"{cfg.name}.zarr"


def _progress(total: float, quiet: bool | None):
    try:
        import tqdm  # noqa: PLC0415 - optional: the cli extra
    except ImportError:  # pragma: no cover
        return None
    enabled = (not quiet) and (quiet is not None or sys.stderr.isatty())
    return tqdm.tqdm(total=total, disable=not enabled, unit="step", dynamic_ncols=True)


def _segment_run(cfg: RunConfig, theta: np.ndarray, start: int, n: int) -> tuple[Run, np.ndarray]:
    """One segment of n steps from step `start`: the Run and the times of its records."""
    o = cfg.options
    if cfg.method == "gd":
        run = gradient_descent(cfg.problem, theta, cfg.lr, n, estimator=cfg.estimator,
                               record_every=int(cfg.record_every), backend=o["backend"], start_step=start,
                               normalized=o["normalized"], progress=False)
        return run, run.t
    dt = o["dt"]
    run = gradient_flow(cfg.problem, theta, n * dt, method=cfg.method, dt=dt, estimator=cfg.estimator,
                        record_every=cfg.record_every * dt, backend=o["backend"], normalized=o["normalized"],
                        progress=False)
    return run, start * dt + run.t


def run_config(cfg: RunConfig, out: str | Path | None = None, force: bool = False,
               quiet: bool | None = None) -> Path:
    """Runs ``cfg`` into the store ``out`` (default ``results/<name>.zarr``) and returns its path.

    A store of the same config is resumed from its last checkpoint, or left as it is when finished
    (``force=True`` recomputes it). A store of another config is refused (ValueError naming ``out``).
    """
    out = Path(out) if out is not None else default_store(cfg)
    K, P = cfg.theta0.shape
    store = None
    if (out / "checkpoint.json").exists() and not force:
        store = RunStore.open(out)
        if store.group.attrs.get("config") != cfg.text:
            raise ValueError(f"out: {out} holds the results of another config; choose another --out or pass "
                             f"--force to overwrite it")
        if store.checkpoint().finished:
            return out
    if store is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        store = RunStore.create(out, cfg.text, cfg.name, cfg.method, K, P, cfg.theta0.dtype)
    ck = store.checkpoint()
    if cfg.method in ADAPTIVE:
        return _run_adaptive(cfg, store, ck)

    if ck.records == 0:
        theta, active = cfg.theta0.copy(), np.ones(K, dtype=bool)
        last = {k: np.full(K, np.nan) for k in ("risk", "grad_norm", "energy")}
        last["energy"] = np.zeros(K)
        taken = np.zeros(K, dtype=np.int64)       # steps taken per network
    else:
        theta, active, last, taken = store.resume_state(ck)
    steps, every = cfg.steps, int(cfg.record_every)
    seg = every * max(1, round(steps / (SEGMENTS * every)))
    s = ck.next_step
    bar = _progress(steps, quiet)
    if bar is not None:
        bar.update(s)
    try:
        while s < steps:
            idx = np.flatnonzero(active)
            if idx.size == 0:
                break
            n = min(seg, steps - s)
            run, t = _segment_run(cfg, theta[idx], s, n)
            if run.interrupted:
                # Ctrl-C inside the segment: the store keeps the last committed checkpoint, and the
                # same command resumes from it (bitwise); the partial segment is not written
                raise KeyboardInterrupt
            first = 1 if ck.records > 0 else 0          # a segment's first record repeats the last one
            rows = {}
            for key in ("risk", "grad_norm", "energy"):
                vals = getattr(run, key)[first:]
                full = np.repeat(last[key][None, :], vals.shape[0], axis=0)   # frozen networks keep theirs
                full[:, idx] = vals + (last["energy"][idx] if key == "energy" and ck.records > 0 else 0.0)
                rows[key] = full
            theta[idx] = run.theta
            taken[idx] += np.asarray(run.accepted, dtype=np.int64)
            active[idx] = ~run.diverged
            last = {key: rows[key][-1].copy() for key in rows}
            s += n
            ck = store.append(ck, np.asarray(t[first:], dtype=np.float64), rows, theta, active, s, 0.0, taken)
            if bar is not None:
                bar.update(n)
                bar.set_postfix(best_risk=f"{np.nanmin(np.where(active, last['risk'], np.nan)):.3e}"
                                if active.any() else "nan")
    finally:
        if bar is not None:
            bar.close()
    store.finish(ck, theta, ~active, np.where(active, "ok", "diverged"), taken, np.zeros(K, dtype=np.int64))
    return out


def _run_adaptive(cfg: RunConfig, store: RunStore, ck) -> Path:
    o = cfg.options
    run = gradient_flow(cfg.problem, cfg.theta0, o["t_end"], method=cfg.method, rtol=o["rtol"], atol=o["atol"],
                        estimator=cfg.estimator, record_every=cfg.record_every, backend=o["backend"],
                        normalized=o["normalized"], progress=False)
    if run.interrupted:
        raise KeyboardInterrupt
    active = np.asarray(run.status) == "ok"
    ck = store.append(ck, run.t, {k: getattr(run, k) for k in ("risk", "grad_norm", "energy")}, run.theta,
                      active, 0, float(o["t_end"]))
    store.finish(ck, run.theta, run.diverged, run.status, run.accepted, run.rejected)
    return store.path
