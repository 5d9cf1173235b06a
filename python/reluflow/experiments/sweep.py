"""Sweeps (SPEC §9): a base experiment and a ``[sweep]`` table of dotted key paths with lists of
values; the product of the lists is run, each point into its own group ``point-0000``, … of one
store, as tasks on dask.distributed (a LocalCluster by default, one single-threaded worker per core,
or an existing scheduler). Finished points are skipped when the sweep is run again, a point killed
mid-run resumes from its checkpoint, a failed point is retried once and then reported without
stopping the others. Short points are batched into tasks of about a second (``TASK_WORK``).
"""
from __future__ import annotations

import copy
import importlib
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig, parse_document, parse_toml
from .runner import run_config
from ..store import SWEEP_FORMAT

__all__ = ["SweepSpec", "load_sweep", "run_sweep", "SWEEP_FORMAT"]


@dataclass
class SweepSpec:
    """A parsed sweep: its name and text, the axes (dotted path -> values) and every point's TOML."""

    name: str
    text: str
    axes: dict
    points: list          # [{path: value}] in product order, the last axis fastest
    point_texts: list     # the TOML text of every point
    works: list           # every point's estimated work (node-parameter products), for the batching


#: a task holds consecutive points until their estimated work reaches this many node-parameter
#: products (~1 s of one core), so that short points do not drown in the scheduler's overhead
TASK_WORK = 1e9


def _point_work(cfg: RunConfig) -> float:
    """Node-parameter products of one point's run, roughly (the batching needs only the scale)."""
    K, P = cfg.theta0.shape
    n = getattr(cfg.estimator, "n", None) or 64 * P          # quadrature: a few nodes per kink
    stages = {"gd": 1, "euler": 1, "heun": 2, "rk4": 4, "dopri5": 6}[cfg.method]
    steps = cfg.steps or 1000                                  # dopri5: unknown in advance
    return float(steps) * stages * K * n * P


def _set_path(doc: dict, path: str, value: Any) -> None:
    keys = path.split(".")
    node = doc
    for i, key in enumerate(keys[:-1]):
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"sweep.{path}", f"{'.'.join(keys[:i + 1])} is not a table")
    node[keys[-1]] = value


def load_sweep(path: str | Path) -> SweepSpec:
    """Reads a sweep file: ``base = "experiment.toml"`` (relative to the sweep file) or the tables
    inline, and ``[sweep]`` with dotted paths -> lists. Every point is checked as a config (ConfigError
    naming ``point i: key.path`` when a point is bad)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError("file", f"cannot read {p}: {exc.strerror}") from exc
    doc = parse_toml(text)
    if "sweep" not in doc:
        raise ConfigError("sweep", "missing: a sweep file needs a [sweep] table of dotted paths -> lists")
    axes = doc.pop("sweep")
    if not isinstance(axes, dict) or not axes:
        raise ConfigError("sweep", "expected at least one dotted path -> list of values")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.{key}", f"expected a non-empty list of values, got {values!r}")
    base = doc.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError("base", f"expected the path of a TOML file, got {base!r}")
        base_doc = parse_toml((p.parent / base).read_text()) if (p.parent / base).exists() else None
        if base_doc is None:
            raise ConfigError("base", f"no such file: {p.parent / base}")
        base_doc.update(doc)       # tables given beside `base` override it
        doc = base_doc
    name = doc.get("name", p.stem)
    tomli_w = importlib.import_module("tomli_w")
    points, texts, works = [], [], []
    for i, combo in enumerate(itertools.product(*axes.values())):
        over = dict(zip(axes, combo))
        point = copy.deepcopy(doc)
        for key, value in over.items():
            _set_path(point, key, value)
        point["name"] = f"{name}-point-{i:04d}"
        ptext = tomli_w.dumps(point)
        try:
            cfg = parse_document(parse_toml(ptext), ptext, point["name"])
        except ConfigError as exc:
            raise ConfigError(f"point {i} ({json.dumps(over)}): {exc.path}", str(exc).split(": ", 1)[1]) from exc
        points.append(over)
        texts.append(ptext)
        works.append(_point_work(cfg))
    return SweepSpec(name, text, dict(axes), points, texts, works)


def _batches(todo: list, works: list) -> list:
    """Consecutive points grouped into tasks of about TASK_WORK each (a long point runs alone)."""
    out, cur, work = [], [], 0.0
    for i in todo:
        cur.append(i)
        work += works[i]
        if work >= TASK_WORK:
            out.append(cur)
            cur, work = [], 0.0
    return out + ([cur] if cur else [])


def _run_points(items: list) -> dict:
    """A worker's task: points ``[(index, text, store)]`` one after the other, each into its group
    (resumed if it was interrupted, skipped if finished); a point that raises is retried once, then
    reported, and the others still run. Returns ``{index: None or the error}``."""
    result = {}
    for i, text, store in items:
        for _attempt in (0, 1):
            try:
                run_config(parse_document(parse_toml(text), text), store, quiet=True)
                result[i] = None
                break
            except Exception as exc:  # noqa: BLE001 - reported per point, the batch goes on
                result[i] = f"{type(exc).__name__}: {exc}"
    return result


def _point_done(path: Path) -> bool:
    ck = path / "checkpoint.json"
    return ck.exists() and bool(json.loads(ck.read_text()).get("finished"))


def run_sweep(path: str | Path, out: str | Path | None = None, scheduler: str | None = None,
              workers: int | None = None, force: bool = False, quiet: bool = False) -> tuple[Path, dict]:
    """Runs every point of the sweep file ``path`` into ``out`` (default ``results/<name>.zarr``) on
    dask.distributed; returns the store and ``{point index: error}`` for the points that failed."""
    spec = load_sweep(path)
    zarr = importlib.import_module("zarr")
    distributed = importlib.import_module("dask.distributed")
    out = Path(out) if out is not None else Path("results") / f"{spec.name}.zarr"
    root_meta = out / "zarr.json"
    if root_meta.exists() and not force:
        g = zarr.open_group(str(out), mode="r")
        if g.attrs.get("format") != SWEEP_FORMAT or g.attrs.get("config") != spec.text:
            raise ValueError(f"out: {out} holds the results of another config; choose another --out or pass "
                             f"--force to overwrite it")
    else:
        g = zarr.open_group(str(out), mode="w")
        g.attrs.update({"format": SWEEP_FORMAT, "config": spec.text, "name": spec.name,
                        "axes": spec.axes, "points": spec.points})
    todo = [i for i in range(len(spec.points)) if force or not _point_done(out / f"point-{i:04d}")]
    failed: dict = {}
    if todo:
        if scheduler:
            client = distributed.Client(scheduler)
        else:
            n = workers or os.cpu_count() or 1
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                               dashboard_address=None, env={"OMP_NUM_THREADS": "1"})
            client = distributed.Client(cluster)
        try:
            futures = {}
            for batch in _batches(todo, spec.works):
                items = [(i, spec.point_texts[i], str(out / f"point-{i:04d}")) for i in batch]
                fut = client.submit(_run_points, items, pure=False,
                                    key=f"reluflow-points-{batch[0]:04d}-{batch[-1]:04d}-{os.getpid()}")
                futures[fut] = batch
            for fut in distributed.as_completed(futures):
                try:
                    errors = fut.result()
                except Exception as exc:  # noqa: BLE001 - a lost task fails its points, not the sweep
                    errors = {i: f"{type(exc).__name__}: {exc}" for i in futures[fut]}
                for i in futures[fut]:
                    if errors.get(i):
                        failed[i] = errors[i]
                    if not quiet:
                        status = f"FAILED ({failed[i]})" if i in failed else "finished"
                        print(f"point {i:04d} {json.dumps(spec.points[i])}: {status}")
        finally:
            client.close()
            if not scheduler:
                cluster.close()
    return out, failed
