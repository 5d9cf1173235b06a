"""The results store (SPEC §9), for ``reluflow run``/``sweep`` and ``Run.save``: Zarr v3, written while a run goes, read back by :func:`load` as an
``xarray.Dataset``.

Layout of a run's store: arrays ``risk``, ``grad_norm``, ``energy`` (step, init), ``t`` (step), ``theta``
(init, param: the final parameters), ``diverged`` (init), ``status`` (init, int8 codes; names in the
attribute ``status_names``), and two checkpoint slots ``checkpoint_theta_{0,1}`` / ``checkpoint_active_{0,1}``;
attributes ``config`` (the TOML text), ``name``, ``method``. The commit point of every checkpoint is
``checkpoint.json`` beside them, replaced atomically: records beyond its count and the other slot
are ignored, so a run killed at any point resumes from the last committed checkpoint.

zarr and xarray are imported when a store is used (``pip install "reluflow[cli]"``): the kernels need
only numpy.
"""
from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RunStore", "load", "STATUS_NAMES", "SWEEP_FORMAT"]

SWEEP_FORMAT = "reluflow-sweep-1"

STATUS_NAMES = ("ok", "diverged", "max_rejections", "min_step", "max_steps", "running", "interrupted")
_RECORDS = ("risk", "grad_norm", "energy")


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f"the results store needs {name}: pip install \"reluflow[cli]\"") from exc


@dataclass
class Checkpoint:
    """The committed state of a run: records written, the next step, the theta slot, finished or not."""

    records: int = 0
    next_step: int = 0
    time: float = 0.0
    slot: int = -1
    finished: bool = False


class RunStore:
    """One run's Zarr group; created for (K, P, dtype) or reopened to resume."""

    def __init__(self, path: Path, group: Any):
        self.path, self.group = path, group

    @classmethod
    def create(cls, path: str | Path, config_text: str, name: str, method: str, K: int, P: int,
               dtype: np.dtype) -> "RunStore":
        zarr = _module("zarr")
        path = Path(path)
        g = zarr.open_group(str(path), mode="w")
        g.attrs.update({"config": config_text, "name": name, "method": method, "status_names": list(STATUS_NAMES),
                        "format": "reluflow-run-1"})
        chunk_t = 256
        for key in _RECORDS:
            g.create_array(key, shape=(0, K), chunks=(chunk_t, K), dtype="f8", fill_value=np.nan)
        g.create_array("t", shape=(0,), chunks=(chunk_t,), dtype="f8", fill_value=np.nan)
        g.create_array("theta", shape=(K, P), dtype=dtype)
        g.create_array("diverged", shape=(K,), dtype="bool")
        g.create_array("status", shape=(K,), dtype="i1")
        g.create_array("accepted", shape=(K,), dtype="i8")    # steps run (dopri5: accepted steps)
        g.create_array("rejected", shape=(K,), dtype="i8")    # dopri5: rejected step attempts
        for s in (0, 1):
            g.create_array(f"checkpoint_theta_{s}", shape=(K, P), dtype=dtype)
            g.create_array(f"checkpoint_active_{s}", shape=(K,), dtype="bool")
            g.create_array(f"checkpoint_taken_{s}", shape=(K,), dtype="i8")
        store = cls(path, g)
        store._commit(Checkpoint())
        return store

    @classmethod
    def open(cls, path: str | Path) -> "RunStore":
        zarr = _module("zarr")
        return cls(Path(path), zarr.open_group(str(path), mode="r+"))

    # ---- the commit point ---------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(**json.loads((self.path / "checkpoint.json").read_text()))

    def _commit(self, ck: Checkpoint) -> None:
        tmp = self.path / "checkpoint.json.tmp"
        tmp.write_text(json.dumps(ck.__dict__))
        os.replace(tmp, self.path / "checkpoint.json")   # atomic: the old or the new checkpoint, never half

    # ---- writing --------------------------------------------------------------------------------
    def append(self, ck: Checkpoint, t: np.ndarray, records: dict, theta: np.ndarray, active: np.ndarray,
               next_step: int, time: float, taken: np.ndarray | None = None) -> Checkpoint:
        """Appends records (T new rows) after the committed ones, writes theta to the free slot and
        commits. Returns the new checkpoint."""
        n0, n1 = ck.records, ck.records + t.size
        for key, arr in (("t", t), *((k, records[k]) for k in _RECORDS)):
            z = self.group[key]
            z.resize((n1,) + z.shape[1:])
            z[n0:n1] = arr
        slot = 1 - ck.slot if ck.slot in (0, 1) else 0
        self.group[f"checkpoint_theta_{slot}"][...] = theta
        self.group[f"checkpoint_active_{slot}"][...] = active
        if taken is not None:
            self.group[f"checkpoint_taken_{slot}"][...] = taken
        new = Checkpoint(n1, int(next_step), float(time), slot, False)
        self._commit(new)
        return new

    def resume_state(self, ck: Checkpoint) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray]:
        """(theta, active, last records row, steps taken) of the committed checkpoint; records beyond
        it dropped."""
        for key in ("t",) + _RECORDS:
            z = self.group[key]
            if z.shape[0] != ck.records:
                z.resize((ck.records,) + z.shape[1:])
        theta = self.group[f"checkpoint_theta_{ck.slot}"][...]
        active = self.group[f"checkpoint_active_{ck.slot}"][...]
        last = {k: self.group[k][ck.records - 1] for k in _RECORDS}
        return theta, active, last, self.group[f"checkpoint_taken_{ck.slot}"][...]

    def finish(self, ck: Checkpoint, theta: np.ndarray, diverged: np.ndarray, status: np.ndarray,
               accepted: np.ndarray, rejected: np.ndarray) -> Checkpoint:
        self.group["theta"][...] = theta
        self.group["accepted"][...] = accepted
        self.group["rejected"][...] = rejected
        self.group["diverged"][...] = diverged
        codes = np.array([STATUS_NAMES.index(str(s)) if str(s) in STATUS_NAMES else STATUS_NAMES.index("running")
                          for s in status], dtype=np.int8)
        self.group["status"][...] = codes
        done = Checkpoint(ck.records, ck.next_step, ck.time, ck.slot, True)
        self._commit(done)
        return done


def load(path: str | Path):
    """A run's store as an ``xarray.Dataset`` (below), or a sweep's store as an ``xarray.DataTree``
    with one node ``point-0000``, … per finished or started point, whose attributes hold the point's
    axis values (attribute ``point``) and the tree's the sweep (``config``, ``axes``)."""
    path = Path(path)
    if (path / "checkpoint.json").exists():
        return _load_run(path)
    if not (path / "zarr.json").exists():
        raise ValueError(f"path: {path} is not a reluflow results store")
    g = _module("zarr").open_group(str(path), mode="r")
    if g.attrs.get("format") != SWEEP_FORMAT:
        raise ValueError(f"path: {path} is a Zarr group but not a reluflow results store")
    xr = _module("xarray")
    nodes = {}
    for i, point in enumerate(g.attrs["points"]):
        p = path / f"point-{i:04d}"
        if (p / "checkpoint.json").exists():
            ds = _load_run(p)
            ds.attrs["point"] = json.dumps(point)
            ds.attrs.update(point)            # each axis value under its dotted path, too
            nodes[f"point-{i:04d}"] = ds
    tree = xr.DataTree.from_dict(nodes)
    tree.attrs.update(config=g.attrs["config"], name=g.attrs["name"], axes=json.dumps(g.attrs["axes"]))
    return tree


def _load_run(path: Path):
    """A run's store as an ``xarray.Dataset``: ``risk``, ``grad_norm``, ``energy`` (step, init), ``t``
    (step), ``theta`` (init, param; the final parameters, or the last checkpoint's of an unfinished
    run), ``diverged`` and ``status`` (init); attributes ``config`` (the TOML text), ``name``,
    ``method``, ``finished``."""
    xr = _module("xarray")
    store = RunStore(Path(path), _module("zarr").open_group(str(path), mode="r"))
    ck = store.checkpoint()
    g = store.group
    n = ck.records
    theta = g["theta"][...] if ck.finished else g[f"checkpoint_theta_{max(ck.slot, 0)}"][...]
    names = list(g.attrs["status_names"])
    if ck.finished:
        status = np.array([names[c] for c in g["status"][...]])
        diverged = g["diverged"][...]
    else:
        active = g[f"checkpoint_active_{max(ck.slot, 0)}"][...]
        status = np.where(active, "running", "diverged")
        diverged = ~active
    data = {k: (("step", "init"), g[k][:n]) for k in _RECORDS}
    data.update(theta=(("init", "param"), theta), diverged=(("init",), diverged), status=(("init",), status))
    if ck.finished:
        data.update(accepted=(("init",), g["accepted"][...]), rejected=(("init",), g["rejected"][...]))
    attrs = {k: g.attrs[k] for k in ("config", "name", "method")}
    attrs["finished"] = int(ck.finished)
    return xr.Dataset(data, coords={"t": (("step",), g["t"][:n])}, attrs=attrs)
