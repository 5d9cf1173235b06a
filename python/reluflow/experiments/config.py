"""Experiment configs (SPEC §9): one TOML file describes one run, every key maps onto the Python API.

:func:`parse_config` checks every table and key (unknown keys are errors, not ignored) and builds the
problem, the initial parameters, the estimator and the integrator's arguments. A bad file raises
:class:`ConfigError`, whose message starts with the key path (``integrator.lr: must be > 0, got -1``);
the command line prints that one line and exits with status 2.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import _philox, dists, targets
from ..estimators import Estimator, Exact, MonteCarlo, QuasiMonteCarlo, Quadrature
from ..layout import Layout
from ..problem import Problem
from ..quadrature import check_quadrature_input

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.9/3.10 take the backport (the cli extra installs it)
    import tomli as tomllib

__all__ = ["ConfigError", "RunConfig", "parse_config", "parse_document", "parse_toml", "load_config", "METHODS"]

METHODS = ("gd", "euler", "heun", "rk4", "dopri5", "rosenbrock")
#: the adaptive methods: t_end, rtol, atol, record_every in time (one segment)
ADAPTIVE = ("dopri5", "rosenbrock")
_TOP = {"name", "problem", "init", "estimator", "integrator", "run"}


class ConfigError(ValueError):
    """A bad config: ``path`` is the dotted key path, the message starts with it."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass
class RunConfig:
    """A parsed run: the objects of the Python API and the integrator's keyword arguments."""

    name: str
    text: str
    problem: Problem
    theta0: np.ndarray
    estimator: Estimator
    method: str
    steps: int                  # gd and the fixed-step flows: steps; dopri5, rosenbrock: 0
    record_every: float          # steps (gd, fixed-step flows) or time (dopri5, rosenbrock)
    options: dict = field(default_factory=dict)   # lr / dt / t_end, rtol, atol, normalized, backend
    lr: Any = None               # gd: a number or a callable n -> lr_n


# ---- small typed readers, each naming its key path -------------------------------------------------

def _table(d: Any, path: str, allowed: set, required: set = frozenset()) -> dict:
    if not isinstance(d, dict):
        raise ConfigError(path, f"expected a table, got {type(d).__name__} {d!r}")
    for key in d:
        if key not in allowed:
            raise ConfigError(f"{path}.{key}" if path else key,
                              f"unknown key (expected one of {', '.join(sorted(allowed))})")
    for key in sorted(required):         # the same message on every run (sets have no fixed order)
        if key not in d:
            raise ConfigError(f"{path}.{key}" if path else key, "missing")
    return d


def _int(d: dict, key: str, path: str, minimum: int | None = None, default: Any = None) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{path}.{key}", f"expected an integer, got {v!r}")
    if minimum is not None and v < minimum:
        raise ConfigError(f"{path}.{key}", f"must be >= {minimum}, got {v}")
    return v


def _real(d: dict, key: str, path: str, positive: bool = False, default: Any = None) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{path}.{key}", f"expected a finite number, got {v!r}")
    if positive and not v > 0:
        raise ConfigError(f"{path}.{key}", f"must be > 0, got {v}")
    return float(v)


def _bool(d: dict, key: str, path: str, default: bool) -> bool:
    v = d.get(key, default)
    if not isinstance(v, bool):
        raise ConfigError(f"{path}.{key}", f"expected true or false, got {v!r}")
    return v


def _build(path: str, make: Callable):
    """Calls a library constructor; its ValueError/TypeError (which names the argument) gets the path."""
    try:
        return make()
    except (ValueError, TypeError) as exc:
        raise ConfigError(path, str(exc)) from exc


# ---- the tables ------------------------------------------------------------------------------------

_NUMPY_NAMES = {name: getattr(np, name) for name in ("sin", "cos", "tan", "exp", "log", "sqrt", "abs", "tanh",
                                                        "sinh", "cosh", "arctan", "maximum", "minimum", "where",
                                                        "pi", "e", "sign", "clip")}


def _function_target(expr: Any, path: str) -> targets.Function:
    if not isinstance(expr, str) or not expr.strip():
        raise ConfigError(f"{path}.expr", f"expected a numpy expression in x such as \"sin(3*x)\", got {expr!r}")
    try:
        code = compile(expr, f"<{path}.expr>", "eval")
    except SyntaxError as exc:
        raise ConfigError(f"{path}.expr", f"not a Python expression: {exc.msg}") from exc

    def fn(x: np.ndarray) -> np.ndarray:
        return eval(code, {"__builtins__": {}, "np": np, **_NUMPY_NAMES}, {"x": x[:, 0] if x.shape[1] == 1 else x})

    try:
        fn(np.linspace(0.0, 1.0, 3)[:, None])
    except Exception as exc:  # noqa: BLE001 - any failure of the user's expression is a config error
        raise ConfigError(f"{path}.expr", f"cannot be evaluated: {type(exc).__name__}: {exc}") from exc
    return targets.Function(fn)


def _target(d: Any, path: str) -> targets.Target:
    kinds = {"affine": {"A", "b"}, "piecewise_linear": {"knots", "values"},
             "piecewise_polynomial": {"breaks", "coeffs"}, "teacher": {"widths", "seed"}, "function": {"expr"}}
    kind = _kind(d, path, kinds)
    if kind == "affine":
        return _build(path, lambda: targets.Affine(d["A"], d.get("b", 0.0)))
    if kind == "piecewise_linear":
        return _build(path, lambda: targets.PiecewiseLinear(d["knots"], d["values"]))
    if kind == "piecewise_polynomial":
        return _build(path, lambda: targets.PiecewisePolynomial(d["breaks"], d["coeffs"]))
    if kind == "teacher":
        lay = _build(f"{path}.widths", lambda: Layout(d["widths"]))
        seed = _int(d, "seed", path, minimum=0, default=0)
        theta = _philox.standard_normals(seed, _philox.STREAM_INIT, 0, 1, lay.num_params)[0]
        return _build(path, lambda: targets.Teacher(lay.widths, theta))
    return _function_target(d.get("expr"), path)


def _kind(d: Any, path: str, kinds: dict) -> str:
    if not isinstance(d, dict):
        raise ConfigError(path, f"expected a table like {{ kind = \"{next(iter(kinds))}\", ... }}, got {d!r}")
    kind = d.get("kind")
    if kind not in kinds:
        raise ConfigError(f"{path}.kind", f"expected one of {', '.join(kinds)}, got {kind!r}")
    required = {"affine": {"A"}, "piecewise_linear": {"knots", "values"}, "piecewise_polynomial": {"breaks", "coeffs"},
                "teacher": {"widths"}, "function": {"expr"}, "uniform": set(), "gaussian": set()}
    _table(d, path, kinds[kind] | {"kind"}, required.get(kind, set()))
    return kind


def _input(d: Any, path: str) -> dists.Distribution:
    kinds = {"uniform": {"low", "high"}, "piecewise_polynomial": {"breaks", "coeffs"}, "gaussian": {"mean", "cov"}}
    kind = _kind(d, path, kinds)
    if kind == "uniform":
        return _build(path, lambda: dists.Uniform(d.get("low", 0.0), d.get("high", 1.0)))
    if kind == "piecewise_polynomial":
        return _build(path, lambda: dists.PiecewisePolynomial(d["breaks"], d["coeffs"]))
    # gaussian: mean scalar or list, cov scalar (variance), list (diagonal) or list of lists (full)
    return _build(path, lambda: dists.Gaussian(d.get("mean", 0.0), d.get("cov", 1.0)))


def _estimator(d: Any, path: str) -> Estimator:
    kinds = {"monte_carlo": {"n", "seed", "resample"}, "qmc": {"n", "seed"}, "quadrature": {"order"},
             "exact": set()}
    if not isinstance(d, dict) or d.get("kind") not in kinds:
        raise ConfigError(f"{path}.kind", f"expected one of {', '.join(kinds)}, got "
                                          f"{d.get('kind') if isinstance(d, dict) else d!r}")
    kind = d["kind"]
    _table(d, path, kinds[kind] | {"kind"}, {"n"} if kind in ("monte_carlo", "qmc") else set())
    if kind == "monte_carlo":
        return MonteCarlo(_int(d, "n", path, 1), _int(d, "seed", path, 0, 0), _bool(d, "resample", path, True))
    if kind == "qmc":
        return QuasiMonteCarlo(_int(d, "n", path, 1), _int(d, "seed", path, 0, 0))
    if kind == "exact":
        return Exact()
    order = None if "order" not in d else _int(d, "order", path, 1)
    return Quadrature(order=order)


def _lr(v: Any, path: str):
    if isinstance(v, dict):
        _table(v, path, {"schedule", "base", "exponent"}, {"schedule", "base", "exponent"})
        if v["schedule"] != "power":
            raise ConfigError(f"{path}.schedule", f"expected \"power\" (lr_n = base (n+1)^-exponent), got "
                                                  f"{v['schedule']!r}")
        base, exponent = _real(v, "base", path, positive=True), _real(v, "exponent", path)
        return _PowerSchedule(base, exponent)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(path, f"expected a number or {{schedule = \"power\", base, exponent}}, got {v!r}")
    if not v > 0:
        raise ConfigError(path, f"must be > 0, got {v}")
    return float(v)


@dataclass(frozen=True)
class _PowerSchedule:
    """lr_n = base (n + 1)^-exponent, n the global step index."""

    base: float
    exponent: float

    def __call__(self, n: int) -> float:
        return self.base * (n + 1) ** (-self.exponent)


def parse_toml(text: str) -> dict:
    """The TOML document of ``text``; ConfigError("file", ...) when it is not valid TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("file", f"not valid TOML: {exc}") from exc


def parse_config(text: str, default_name: str = "run") -> RunConfig:
    """A RunConfig from TOML text; ConfigError (a ValueError) naming the key path on any bad key."""
    return parse_document(parse_toml(text), text, default_name)


def parse_document(doc: dict, text: str, default_name: str = "run") -> RunConfig:
    """A RunConfig from a parsed TOML document (``text``: its source, kept in the store)."""
    _table(doc, "", _TOP, {"problem", "estimator", "integrator"})
    name = doc.get("name", default_name)
    if not isinstance(name, str) or not name or any(c in name for c in "/\\"):
        raise ConfigError("name", f"expected a plain name (no slashes), got {name!r}")

    pt = _table(doc["problem"], "problem", {"widths", "target", "input"}, {"widths", "target"})
    target = _target(pt["target"], "problem.target")
    inp = _input(pt.get("input", {"kind": "uniform"}), "problem.input")
    problem = _build("problem", lambda: Problem(pt["widths"], target, inp))

    rt = _table(doc.get("run", {}), "run", {"backend", "dtype"})
    backend = rt.get("backend", "auto")
    if backend not in ("auto", "numpy", "cpu", "cupy", "cuda"):
        raise ConfigError("run.backend", f"expected auto, numpy, cpu, cupy or cuda, got {backend!r}")
    dtype = rt.get("dtype", "float64")
    if dtype not in ("float32", "float64"):
        raise ConfigError("run.dtype", f"expected float32 or float64, got {dtype!r}")

    it = _table(doc.get("init", {}), "init", {"n", "seed", "scheme"})
    theta0 = _build("init", lambda: problem.init(_int(it, "n", "init", 1, 1), _int(it, "seed", "init", 0, 0),
                                                 dtype, it.get("scheme", "normal")))
    estimator = _estimator(doc["estimator"], "estimator")
    if isinstance(estimator, Quadrature):
        try:
            check_quadrature_input(problem.spec)       # an unbounded input, or d too large for a grid
        except ValueError as exc:
            raise ConfigError("estimator.kind", str(exc).removeprefix("estimator: ")) from exc

    ig = doc["integrator"]
    method = ig.get("method") if isinstance(ig, dict) else None
    if method not in METHODS:
        raise ConfigError("integrator.method", f"expected one of {', '.join(METHODS)}, got {method!r}")
    path = "integrator"
    common = {"method", "normalized", "record_every"}
    options: dict = {"backend": backend}
    if method == "gd":
        _table(ig, path, common | {"lr", "steps"}, {"lr", "steps"})
        cfg_lr, steps = _lr(ig["lr"], f"{path}.lr"), _int(ig, "steps", path, 1)
        record_every = _int(ig, "record_every", path, 1, max(1, steps // 100))
    elif method in ("euler", "heun", "rk4"):
        _table(ig, path, common | {"dt", "steps"}, {"dt", "steps"})
        cfg_lr, steps = None, _int(ig, "steps", path, 1)
        options["dt"] = _real(ig, "dt", path, positive=True)
        record_every = _int(ig, "record_every", path, 1, max(1, steps // 100))
        if estimator.stochastic:
            raise ConfigError("estimator.resample", f"{method} needs the same nodes at every step in a run "
                                                    f"(checkpoints restart the step count); set resample = false "
                                                    f"or use method = \"gd\"")
    else:
        _table(ig, path, common | {"t_end", "rtol", "atol"}, {"t_end"})
        cfg_lr, steps = None, 0
        options.update(t_end=_real(ig, "t_end", path, positive=True), rtol=_real(ig, "rtol", path, True, 1e-6),
                       atol=_real(ig, "atol", path, default=1e-9))
        record_every = _real(ig, "record_every", path, True, options["t_end"] / 100)
        if estimator.stochastic:
            raise ConfigError("estimator.resample", f"{method} needs a deterministic vector field; set resample = false")
    options["normalized"] = _bool(ig, "normalized", path, False)
    return RunConfig(name, text, problem, theta0, estimator, method, steps, record_every, options, cfg_lr)


def load_config(path: str | Path) -> RunConfig:
    """:func:`parse_config` of a file; the run's default name is the file's stem."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError("file", f"cannot read {p}: {exc.strerror}") from exc
    return parse_config(text, p.stem)
