"""Integrators of the gradient flow ``dΘ/dt = -G(Θ)`` and of gradient descent (SPEC §4), for K networks.

This module is the reference driver: a Python loop over steps around ``Problem.risk_and_grad``. It
freezes diverging networks, controls the dopri5 error per network (each of the K trajectories has its
own step size, as if it ran alone), projects and retracts for the normalized flow, records risks,
gradient norms and the dissipated energy ``∫ |G|^2 dt``, and returns a :class:`Run`.

theta may be an array of any array-API namespace (CuPy, array-api-strict, ...): the vector field is
then evaluated by the reference backend in that namespace, on theta's device, while the driver's state
and bookkeeping (the parameters between steps, the per-network step sizes, statuses and records) stay
host numpy arrays: each evaluation moves the running networks' parameters (K, P) to the device and
their risk and gradient back, little next to the nodes x networks work of the evaluation itself. The
Run's ``theta`` and ``thetas`` come back in theta's namespace and on its device; its records are numpy.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from numbers import Real
from typing import Callable

import numpy as np

from ._adaptive import GRAD_NOT_FINITE as _GRAD_NOT_FINITE
from ._adaptive import PARAMS_NOT_FINITE as _PARAMS_NOT_FINITE
from ._adaptive import RISK_GREW as _RISK_GREW
from ._adaptive import RISK_NOT_FINITE as _RISK_NOT_FINITE
from ._adaptive import RUNNING as _RUNNING
from ._adaptive import end_of_step, halted, initial_step, record_grid, start_state, step_size_factor
from ._adaptive import finite_rows as _finite_rows
from ._adaptive import params_reason as _params_reason
from ._adaptive import risk_reason as _risk_reason
from ._arrays import from_host, is_numpy, to_host
from ._validate import array_namespace, as_bool, as_int, as_real, as_theta
from .backends import cpu as cpu_backend
from .backends import cuda as cuda_backend
from .backends import get as backend_for
from .estimators import Estimator, MonteCarlo, Quadrature
from .geometry import neuron_norms
from .plan import Plan
from .problem import Problem
from .store import RunStore
from . import stiff

__all__ = ["Run", "gradient_descent", "gradient_flow", "normalized_gradient_flow", "METHODS"]

METHODS = ("euler", "heun", "rk4", "dopri5", "rosenbrock")

# Butcher tableaux (explicit): a (s, s), b (s,), and for dopri5 the embedded 4th-order weights.
_TABLEAUX = {
    "euler": (np.zeros((1, 1)), np.array([1.0])),
    "heun": (np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([0.5, 0.5])),
    "rk4": (np.array([[0, 0, 0, 0], [.5, 0, 0, 0], [0, .5, 0, 0], [0, 0, 1, 0]], dtype=float),
            np.array([1, 2, 2, 1]) / 6.0),
}
_DP_A = np.array([
    [0, 0, 0, 0, 0, 0, 0],
    [1 / 5, 0, 0, 0, 0, 0, 0],
    [3 / 40, 9 / 40, 0, 0, 0, 0, 0],
    [44 / 45, -56 / 15, 32 / 9, 0, 0, 0, 0],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0, 0, 0],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656, 0, 0],
    [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0],
])
_DP_B = np.array([35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0])
_DP_E = _DP_B - np.array([5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40])


@dataclass
class Run:
    """Result of an integration of K networks.

    Attributes
    ----------
    theta : (K, P) final parameters (a diverged network keeps its last finite parameters), in the
        namespace of the integrator's theta0 (numpy, CuPy, or another array-API namespace).
    t : (T,) recorded times (gradient descent: step indices).
    risk : (T, K) risk estimate at the recorded times.
    grad_norm : (T, K) Euclidean norm of the (projected) vector field at the recorded times.
    energy : (T, K) dissipated energy ``∫_0^t |G|^2 ds`` (quadrature of the integrator's stages).
    thetas : (T, K, P) recorded parameters (theta's namespace), or None (``record_theta=False``).
    diverged : (K,) True where the network was frozen because its risk or parameters blew up.
    status : (K,) "ok", "diverged", "max_rejections", "min_step", "max_steps" or "interrupted" (dopri5:
        still running when Ctrl-C stopped the run).
    reason : (K,) str, why a diverged network was frozen ("" for the others): "risk grew 4.1e+10x over
        its start" (above ``max_growth`` times its risk at the start of the run), "risk not finite",
        "gradient not finite", "parameters exceeded max_abs" or "parameters not finite".
    risk_rose : (K,) bool, fixed-step flows (euler, heun, rk4) with a deterministic estimator: True
        where the risk at some step exceeded the previous step's risk by more than a relative
        ``max(1e-12, 8 eps)`` of theta's dtype. The exact flow never increases the risk (energy
        identity), so this says the step was too large. All False for gradient descent / SGD (no such
        identity), a resampled estimator, and dopri5 (its error control is the check there).
    accepted, rejected : (K,) step counts (rejected only for dopri5).
    next_step : the step index a resumed gradient descent continues from (fixed-step flows: the number
        of steps done).
    wall_time : seconds.
    interrupted : True when Ctrl-C stopped the run: the records hold what was computed before (t, risk,
        ... truncated; dopri5: its grid, NaN where not reached), theta is the state reached
        (``gradient_descent(prob, run.theta, lr, steps, ..., start_step=run.next_step)`` resumes
        bitwise), dopri5's ``info["t_reached"]`` (K,) the time of each network. A Ctrl-C during the
        last step leaves a complete run, flagged all the same.
    """

    theta: np.ndarray
    t: np.ndarray
    risk: np.ndarray
    grad_norm: np.ndarray
    energy: np.ndarray
    thetas: np.ndarray | None
    diverged: np.ndarray
    status: np.ndarray
    accepted: np.ndarray
    rejected: np.ndarray
    method: str
    next_step: int = 0
    wall_time: float = 0.0
    info: dict = field(default_factory=dict)
    reason: np.ndarray | None = None
    risk_rose: np.ndarray | None = None
    interrupted: bool = False

    def __post_init__(self):
        K = self.theta.shape[0]
        if self.reason is None:
            self.reason = np.full(K, "", dtype="<U1")
        if self.risk_rose is None:
            self.risk_rose = np.zeros(K, dtype=bool)

    def save(self, path, name: str = "run") -> Path:
        """Writes this run into a Zarr store (the layout ``reluflow run`` writes; ``rf.load(path)`` reads it
        back as an xarray Dataset: risk, grad_norm, energy (step, init), t, theta, diverged, status,
        accepted, rejected). Overwrites ``path``. Needs the cli extra (zarr, xarray)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"name: expected a non-empty string, got {name!r}")
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path: expected a file-system path, got {type(path).__name__}")
        theta = to_host(self.theta)
        K, P = theta.shape
        store = RunStore.create(path, "", name, self.method, K, P, theta.dtype)
        ck = store.append(store.checkpoint(), np.asarray(self.t, dtype=np.float64),
                          {k: np.asarray(getattr(self, k), dtype=np.float64) for k in ("risk", "grad_norm", "energy")},
                          theta, ~self.diverged, self.next_step, float(self.t[-1]),
                          np.asarray(self.accepted, dtype=np.int64))
        store.finish(ck, theta, self.diverged, self.status, self.accepted, self.rejected)
        return Path(path)

    def finished(self) -> np.ndarray:
        """(K,) True for the networks that ran to the end: status "ok", not diverged, a finite final risk."""
        return (np.asarray(self.status) == "ok") & ~self.diverged & np.isfinite(self.risk[-1])

    def best(self) -> int:
        """Index of the network with the smallest final risk among those that finished (status "ok",
        not diverged, finite final risk). A network stopped early (dopri5's "max_steps",
        "max_rejections", "min_step") or frozen ("diverged") is never the best. ValueError when no
        network finished."""
        ok = self.finished()
        if not ok.any():
            counts = {str(s): int(c) for s, c in zip(*np.unique(np.asarray(self.status), return_counts=True))}
            raise ValueError(f"run: no network finished (statuses {counts}); there is no best one")
        return int(np.argmin(np.where(ok, self.risk[-1], np.inf)))

    def __repr__(self) -> str:
        K = self.theta.shape[0]
        best = self.risk[-1][self.best()] if self.finished().any() else np.nan
        return (f"Run(method={self.method!r}, K={K}, records={self.t.size}, t_end={self.t[-1]:.6g}, "
                f"best risk={best:.3e}, finished={int(self.finished().sum())}, "
                f"diverged={int(self.diverged.sum())}, wall={self.wall_time:.2f}s"
                f"{', interrupted' if self.interrupted else ''})")


class _Progress:
    """A minimal text progress bar on stderr for long runs (no dependency)."""

    def __init__(self, total: float, enabled: bool | None):
        self.total, self.start, self.last = total, time.perf_counter(), 0.0
        self.enabled = (sys.stderr.isatty() if enabled is None else bool(enabled)) and total > 0

    def update(self, done: float) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self.last < 0.5 and done < self.total):
            return
        self.last = now
        frac = min(1.0, done / self.total)
        bar = "#" * int(30 * frac)
        eta = (now - self.start) * (1 - frac) / frac if frac > 0 else float("nan")
        sys.stderr.write(f"\r[{bar:<30}] {100 * frac:5.1f}%  eta {eta:6.1f}s")
        if frac >= 1.0:
            sys.stderr.write("\n")
        sys.stderr.flush()


class _CtrlC:
    """Ctrl-C in a Python driver loop: while inside, the first SIGINT only sets ``hit``, and the loop
    stops at the next step boundary and returns what it has (as the C++ loops do); a second SIGINT
    raises KeyboardInterrupt at once. Installed only in the main thread over Python's default handler
    (a handler of the caller's own is left alone)."""

    def __init__(self):
        self.hit, self._old = False, None

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        self.hit = True
        signal.signal(signal.SIGINT, self._old)

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


class _Steps:
    """The step loop of the fixed-step drivers: iterating yields (i, idx) for i = 0..steps, idx the
    networks still running; it ends early when none runs, or at the step boundary after a Ctrl-C
    (_CtrlC). Afterwards ``done`` is the number of steps done and ``interrupted`` whether Ctrl-C came
    (during the last step too: the run is then complete, flagged all the same, as in the C++ loops).
    The body must not break out of the loop (the handler is restored when the iteration ends)."""

    def __init__(self, steps: int, active: np.ndarray):
        self.steps, self.active, self.done, self.interrupted = steps, active, steps, False

    def __iter__(self):
        with _CtrlC() as stop:
            for i in range(self.steps + 1):
                if i > 0 and stop.hit:  # the state after i steps and the records so far
                    self.done = i
                    break
                idx = np.flatnonzero(self.active)
                if idx.size == 0:
                    break
                yield i, idx
        self.interrupted = stop.hit


def _default_estimator(prob: Problem) -> Estimator:
    return Quadrature() if prob.dim <= 2 and prob.target.native else MonteCarlo(4096, seed=0, resample=False)


def _project(prob: Problem, theta: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Tangent projection for the normalized flow: remove from G the component along every hidden
    neuron's (w_i, b_i) (which lies on the unit sphere)."""
    g = g.copy()
    for (W, b), (gW, gb) in zip(prob.layout.unpack(theta)[:-1], prob.layout.unpack(g)[:-1]):
        radial = np.sum(gW * W, axis=2) + gb * b                # (K, l)
        gW -= radial[:, :, None] * W
        gb -= radial * b
    return g


def _retract(prob: Problem, theta: np.ndarray) -> np.ndarray:
    """Renormalize every hidden neuron's (w_i, b_i) to unit norm (the retraction of the normalized flow)."""
    theta = theta.copy()
    for W, b in prob.layout.unpack(theta)[:-1]:
        norm = neuron_norms(W, b)
        norm = np.where(norm > 0, norm, 1.0)
        W /= norm[:, :, None]
        b /= norm
    return theta


def _onto_manifold(prob: Problem, theta: np.ndarray, rescale_outgoing: bool) -> np.ndarray:
    """The start of a normalized run: every hidden neuron's (w_i, b_i) onto the unit sphere (and, with
    ``rescale_outgoing``, its outgoing weights by the inverse factor: ``Problem.normalize``), except
    the neurons already there to rounding, which are left bit for bit. Renormalizing a unit vector
    moves its last bits, so without this a run resumed from its last theta would differ from the run
    in one piece."""
    theta = theta.copy()
    tol = 8 * np.finfo(theta.dtype).eps
    params = prob.layout.unpack(theta)
    for k in range(prob.layout.num_layers - 1):
        W, b = params[k]
        norm = neuron_norms(W, b)                              # after layer k-1's rescaling
        if rescale_outgoing and np.any(norm == 0):
            raise ValueError("theta: a hidden neuron has (w_i, b_i) = 0 and cannot be normalized")
        norm = np.where((np.abs(norm - 1) <= tol) | (norm == 0), 1.0, norm).astype(theta.dtype)
        W /= norm[:, :, None]
        b /= norm
        if rescale_outgoing:
            params[k + 1][0][...] *= norm[:, None, :]
    return theta


class _Field:
    """The vector field G (projected when normalized) of the Python driver, evaluated for a subset of
    the networks by the backend of ``plan`` (planned once per run). A non-finite risk is not warned
    about here: the driver freezes or rejects such networks and reports them in the run's status."""

    def __init__(self, prob: Problem, plan: Plan, normalized: bool, frozen: np.ndarray | None = None,
                 like=None):
        self.prob, self.plan, self.est, self.normalized = prob, plan, plan.estimator, normalized
        self.frozen = frozen
        self.evaluations = 0
        #: the caller's theta0: the field runs in its namespace (numpy unless it is CuPy or another
        #: array-API array), on its device
        self.like = np.empty(0) if like is None else like
        self.xp = array_namespace(self.like)

    def __call__(self, theta, step):
        """theta (n, P) host numpy -> risk (n,) float64 and G (n, P) in theta's dtype, host numpy."""
        impl, xp = backend_for(self.plan), self.xp
        if is_numpy(xp) or impl is cpu_backend:
            risk, g = impl.evaluate(self.plan, self.prob.spec, theta, step, True)
            # the casts of Problem.risk_and_grad: results in theta's dtype (the risk then in float64)
            risk, g = np.asarray(risk).astype(theta.dtype).astype(np.float64), np.asarray(g).astype(theta.dtype)
        else:  # the reference in theta0's namespace: parameters in (host to device), risk and G back
            th = from_host(xp, theta, self.like)
            risk, g = impl.evaluate(self.plan, self.prob.spec, th, step, True, xp)
            risk = np.array(to_host(xp.astype(xp.astype(risk, th.dtype), xp.float64)), copy=True)
            g = np.array(to_host(xp.astype(g, th.dtype)), copy=True)
        self.evaluations += 1
        if self.normalized:
            g = _project(self.prob, theta, g)
        if self.frozen is not None:
            g[:, self.frozen] = 0                     # frozen parameters: zero velocity
        return risk, g


def _check_frozen(frozen, prob: Problem, normalized: bool) -> np.ndarray | None:
    """None, or the (P,) bool mask of frozen parameters (``Problem.mask``)."""
    if frozen is None:
        return None
    mask = np.asarray(frozen)
    if mask.dtype != np.bool_ or mask.shape != (prob.num_params,):
        raise TypeError(f"frozen: expected a ({prob.num_params},) bool mask such as prob.mask(...), got "
                        f"{mask.dtype} of shape {mask.shape}")
    if normalized and mask.any():
        raise ValueError("frozen: not supported with normalized=True (the retraction moves every weight "
                         "of a neuron)")
    return mask if mask.any() else None


# Why a network was frozen (_adaptive: the codes of tableaux::StopReason); Run.reason holds the texts.
_REASONS = ("", "risk grew {growth:.2g}x over its start", "risk not finite", "gradient not finite",
            "parameters exceeded max_abs", "parameters not finite")


class _Watch:
    """The per-network bookkeeping of the fixed-step driver loops (GD and euler/heun/rk4), as
    flow_cpu.cpp keeps it: the last finite risk and |G| (what the records show), the starting risk,
    why a network was frozen (_REASONS codes), its risk factor, and whether its risk rose."""

    def __init__(self, K: int, max_growth: float, rise_tol: float):
        self.last_risk, self.last_gn, self.risk0 = np.full(K, np.nan), np.full(K, np.nan), np.full(K, np.nan)
        self.reason, self.growth, self.rose = np.zeros(K, dtype=np.uint8), np.zeros(K), np.zeros(K, dtype=bool)
        self.max_growth, self.rise_tol = max_growth, rise_tol

    def evaluated(self, idx: np.ndarray, first: bool, risk: np.ndarray, g: np.ndarray):
        """Risk (n,) and G (n, P) of the running networks idx at a step (``first``: step 0 of the run);
        returns why each must stop (_RUNNING to go on) and |G| (n,) in float64."""
        if first:
            self.risk0[idx] = risk
        why = _risk_reason(risk, self.risk0[idx], self.max_growth)
        why = np.where((why != _RISK_NOT_FINITE) & ~_finite_rows(g), _GRAD_NOT_FINITE, why)
        # a blown-up risk is recorded (the risk of the parameters the network is frozen at)
        seen = (why == _RUNNING) | (why == _RISK_GREW)
        if self.rise_tol >= 0 and not first:
            self.rose[idx[seen]] |= risk[seen] > self.last_risk[idx[seen]] * (1.0 + self.rise_tol)
        self.last_risk[idx[seen]] = risk[seen]
        gn = np.linalg.norm(g.astype(np.float64), axis=1)
        self.last_gn[idx[seen]] = gn[seen]
        grew = why == _RISK_GREW
        self.growth[idx[grew]] = risk[grew] / self.risk0[idx[grew]]
        return why, gn


def _reason_texts(codes: np.ndarray, growth: np.ndarray) -> np.ndarray:
    return np.array([_REASONS[c].format(growth=g) for c, g in zip(np.asarray(codes), np.asarray(growth))])


def _check_options(max_abs, max_growth, record_theta, normalized, progress) -> tuple[float, float]:
    """The options shared by every integrator; returns max_abs and max_growth as floats."""
    max_abs = as_real(max_abs, "max_abs")
    if max_abs <= 0:
        raise ValueError(f"max_abs: expected a positive bound on the parameters, got {max_abs}")
    # inf switches the risk test off (non-finite risks are still caught)
    if not (isinstance(max_growth, Real) and not isinstance(max_growth, bool) and float(max_growth) == math.inf):
        max_growth = as_real(max_growth, "max_growth")
    max_growth = float(max_growth)
    if not max_growth > 1:
        raise ValueError(f"max_growth: expected a factor > 1 (a network is frozen when its risk exceeds "
                         f"max_growth times its starting risk), got {max_growth}")
    as_bool(record_theta, "record_theta")
    as_bool(normalized, "normalized")
    if progress is not None:
        as_bool(progress, "progress")
    return max_abs, max_growth


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 16 << 30


def _check_request(names: str, theta: np.ndarray, records: float, schedule: float, record_theta: bool) -> None:
    """Refuse, before allocating anything, a run whose records (risk, gradient norm and energy per
    record and network, plus theta snapshots with ``record_theta``) and step-size schedule would take
    more than half this machine's memory; ``names`` are the arguments that make it so."""
    K, P = theta.shape
    need = records * K * 3 * 8 + (records * K * P * theta.itemsize if record_theta else 0) + schedule * 8
    limit = _memory_bytes() // 2
    if need > limit:
        raise ValueError(f"{names}: this run would allocate {need / 2**30:.3g} GiB up front ({records:.3g} "
                         f"records of {K} networks{' with theta' if record_theta else ''}, {schedule:.3g} step "
                         f"sizes), more than half of this machine's {2 * limit / 2**30:.3g} GiB; record less "
                         f"often, or run fewer steps per call and resume from the returned run")


# step indices are the samplers' 32-bit counter words (_philox.py, the C++ loops' bound too)
_MAX_STEP = 2**32 - 1


def _check_steps(names: str, last: int) -> None:
    """Refuse a run whose last step index ``last`` does not fit the 32-bit step counter; ``names`` are
    the arguments that make it so."""
    if last > _MAX_STEP:
        raise ValueError(f"{names}: this run would reach step index {last}, beyond the {_MAX_STEP} that a run "
                         f"can address (2**32 - 1, the samplers' step counter); run fewer steps per call")


def _check_common(prob, theta0, estimator):
    """theta (host numpy copy of theta0), the estimator, and theta0 as checked (numpy, CuPy or another
    array-API array: the namespace and device of the field and of the Run's theta)."""
    if not isinstance(prob, Problem):
        raise TypeError(f"prob: expected a reluflow.Problem, got {type(prob).__name__}")
    like = as_theta(theta0, prob.num_params, "theta0")
    theta = np.array(to_host(like), copy=True)
    if estimator is None:
        estimator = _default_estimator(prob)
    if not isinstance(estimator, Estimator):
        raise TypeError(f"estimator: expected Points, MonteCarlo, QuasiMonteCarlo or Quadrature, got "
                        f"{type(estimator).__name__}")
    return theta, estimator, like


def _finish_like(like, *args, **kwargs) -> "Run":
    """:func:`_finish`, then the Run's theta and thetas into the namespace and onto the device of
    ``like`` (the caller's theta0) where that is not numpy."""
    run = _finish(*args, **kwargs)
    xp = array_namespace(like)
    if not is_numpy(xp):
        run.theta = from_host(xp, run.theta, like)
        if run.thetas is not None:
            run.thetas = from_host(xp, run.thetas, like)
    return run


def _native_plan(plan: Plan) -> Plan | None:
    """``plan`` when its integrator loop runs in C++ (``Plan.loop == "C++"``), else None: then the
    Python driver of this module loops around the backend. The planner decides
    (``prob.explain(estimator)`` says what and why); this module only follows, whatever is recorded."""
    return plan if plan.loop == "C++" else None


def _device_plan(plan: Plan) -> Plan | None:
    """``plan`` when gradient descent or a flow (euler, heun, rk4, dopri5; normalized too) runs with the
    whole loop on the device (``Plan.loop == "CUDA"``), else None (tests patch it, with
    :func:`_native_plan`, to judge the loop against the Python driver)."""
    return plan if plan.loop == "CUDA" else None


def _recorded(res: dict) -> list:
    """The (T, K, P) theta records of a C++ loop's result as a list of (K, P) (empty when off)."""
    return [] if res.get("thetas") is None else list(res["thetas"])


def _progress_hook(bar: "_Progress"):
    return bar.update if bar.enabled else None


def _record_indices(steps: int, record_every: int) -> np.ndarray:
    idx = list(range(0, steps + 1, record_every))
    if idx[-1] != steps:
        idx.append(steps)
    return np.asarray(idx)


def _checked_lr(value, n: int) -> float:
    """lr(n) of a callable schedule: a finite positive float (a negative one would run gradient ascent)."""
    h = as_real(value, f"lr({n})")
    if h <= 0:
        raise ValueError(f"lr({n}): expected a positive step size, got {h}")
    return h


def _lr_schedule(lr, steps: int, start: int) -> Callable[[int], float]:
    if callable(lr):
        return lambda n: _checked_lr(lr(n), n)
    if isinstance(lr, (list, tuple, np.ndarray)):
        arr = np.asarray(lr, dtype=np.float64)
        if arr.ndim != 1 or arr.size < start + steps:
            raise ValueError(f"lr: expected a 1-D array of at least start_step + steps = {start + steps} "
                             f"step sizes, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)) or np.any(arr[start:start + steps] <= 0):
            raise ValueError("lr: expected finite positive step sizes")
        return lambda n: float(arr[n])
    value = as_real(lr, "lr")
    if value <= 0:
        raise ValueError(f"lr: expected a positive step size, got {value}")
    return lambda n: value


def gradient_descent(prob: Problem, theta0, lr, steps: int, estimator: Estimator | None = None,
                     record_every: int = 1, backend: str = "auto", start_step: int = 0,
                     record_theta: bool = False, max_abs: float = 1e8, normalized: bool = False,
                     progress: bool | None = None, max_growth: float = 1e6, frozen=None) -> Run:
    """Gradient descent ``θ_{n+1} = θ_n - lr_n G(θ_n)`` for K networks at once (SPEC §4).

    Parameters
    ----------
    prob : the Problem.
    theta0 : (K, P) initial parameters (float32 or float64; the run keeps the dtype): numpy, torch, JAX,
        CuPy or any array-API array (the field then runs in its namespace; ``Run.theta`` comes back in it).
    lr : step size: a positive float, a callable ``n -> lr_n`` of the global step index, or an array
        indexed by the global step index.
    steps : number of steps (>= 0).
    estimator : nodes per step; ``MonteCarlo(resample=True)`` draws fresh samples every step (SGD).
        Default: ``Quadrature()`` in 1-D and 2-D, else a fixed ``MonteCarlo(4096)``.
    record_every : record risk and gradient norm every this many steps (and after the last step).
    start_step : global index of the first step: resuming with ``theta0=run.theta,
        start_step=run.next_step`` continues bitwise identically (samples and lr depend on the index).
    record_theta : also keep (T, K, P) snapshots.
    max_abs : a network whose parameters exceed this (> 0) in absolute value, or become non-finite,
        is frozen at its last finite parameters and flagged in ``Run.diverged``.
    normalized : project G tangentially and retract onto the normalized manifold after each step.
    max_growth : a network whose risk becomes non-finite, or exceeds ``max_growth`` (> 1; ``inf``
        turns the factor test off) times its risk at the start of this call (a network starting at
        risk 0 is only checked for finiteness), is frozen at the parameters of that risk and flagged:
        ``Run.diverged``, status "diverged", ``Run.reason`` says why (and by what factor).
    frozen : (P,) bool mask (``prob.mask(...)``) of parameters that keep their values (zero velocity in
        every network): fixed output weights, bias-free nets (set the biases to 0 and freeze them).
    backend : "auto", "numpy", "cupy", "cpu" or "cuda" (``rf.backends()``); ``prob.explain(estimator)``
        says which route and loop run.
    progress : a progress bar on stderr (default: when stderr is a terminal). Ctrl-C stops a run
        between two steps and returns the partial Run (``Run.interrupted``, a RuntimeWarning); resume
        it with ``theta0=run.theta, start_step=run.next_step`` (bitwise the run in one piece).

    Returns
    -------
    Run with t = recorded step indices.
    """
    theta, estimator, like = _check_common(prob, theta0, estimator)
    steps = as_int(steps, "steps", minimum=0)
    start_step = as_int(start_step, "start_step", minimum=0)
    record_every = as_int(record_every, "record_every", minimum=1)
    max_abs, max_growth = _check_options(max_abs, max_growth, record_theta, normalized, progress)
    # only a callable schedule is materialized (an array lr is the caller's; a constant one is passed
    # as a single step size)
    _check_request("steps, record_every", theta, steps // record_every + 2, steps if callable(lr) else 0,
                   record_theta)
    _check_steps("start_step, steps", start_step + steps)
    lr_at = _lr_schedule(lr, steps, start_step)
    field_ = _Field(prob, prob.plan(estimator, backend, like), normalized, _check_frozen(frozen, prob, normalized),
                    like)
    if normalized:
        theta = _onto_manifold(prob, theta, rescale_outgoing=False)
    native = _native_plan(field_.plan) or _device_plan(field_.plan)
    if native is not None:
        t0 = time.perf_counter()
        device = native.loop == "CUDA"
        if callable(lr) and device:  # asked per block by the device loop, never for all steps at once
            h = None
        elif callable(lr):
            h = np.array([lr_at(start_step + i) for i in range(steps)], dtype=np.float64)
        elif isinstance(lr, (list, tuple, np.ndarray)):
            h = np.asarray(lr, dtype=np.float64)[start_step:start_step + steps]
        else:  # a constant step: one value, which the C++ loop uses for every step (never materialized)
            h = np.array([lr_at(start_step)], dtype=np.float64)
        if device:
            lr_arg = {"h": h} if h is not None else {"h_fn": lambda first, count: np.array(
                [lr_at(start_step + first + j) for j in range(count)], dtype=np.float64)}
            res = cuda_backend.gd_run(native, prob.spec, theta, steps, start_step, record_every, lr_arg, max_abs,
                                      max_growth, _progress_hook(_Progress(steps, progress)), record_theta,
                                      frozen=field_.frozen, normalized=normalized)
            res["theta"] = np.array(to_host(res["theta"]), copy=True)
        else:
            res = cpu_backend.flow_run(native, prob.spec, theta, "gd", steps, start_step, record_every, h, max_abs,
                                       normalized, _progress_hook(_Progress(steps, progress)), record_theta,
                                       max_growth, frozen=field_.frozen)
        active = res["active"].astype(bool)
        rec = _record_indices(steps, record_every)[:res["records"]]
        done = int(res["steps_done"])
        return _finish_like(field_.like, prob, res["theta"], list(start_step + rec), list(res["risk"]), list(res["grad_norm"]),
                       list(res["energy"]), _recorded(res), record_theta, active, np.full(theta.shape[0], done),
                       np.zeros(theta.shape[0], dtype=np.int64), None, "gd", start_step + done, t0,
                       {"evaluations": int(res["evaluations"]), "loop": native.loop,
                        "lr": lr if not callable(lr) else repr(lr), "estimator": repr(estimator),
                        **({"blocks": int(res["blocks"]), "compactions": int(res.get("compactions", 0)),
                            "stop_step": np.where(res["stop_iter"] >= 0, start_step + res["stop_iter"], -1)}
                           if device else {})},
                       reason=res["reason"], growth=res["growth"],
                       interrupted=_gd_interrupted(res["interrupted"], start_step + done))
    K = theta.shape[0]
    active = np.ones(K, dtype=bool)
    energy = np.zeros(K)
    rec_t, rec_risk, rec_gn, rec_en, rec_theta = [], [], [], [], []
    watch = _Watch(K, max_growth, -1.0)  # gradient descent has no energy identity
    bar = _Progress(steps, progress)
    t0 = time.perf_counter()

    def record(n):
        rec_t.append(n)
        rec_risk.append(watch.last_risk.copy())
        rec_gn.append(watch.last_gn.copy())
        rec_en.append(energy.copy())
        if record_theta:
            rec_theta.append(theta.copy())

    loop = _Steps(steps, active)
    for i, idx in loop:
        n = start_step + i
        risk, g = field_(theta[idx], n)
        why, gn = watch.evaluated(idx, i == 0, risk, g)
        ok = why == _RUNNING
        if i % record_every == 0 or i == steps:
            record(n)
        if i == steps:
            continue  # the last state is recorded; the loop ends here
        h = lr_at(n)
        new = theta[idx] - (h * g).astype(theta.dtype)
        if normalized:
            new = _retract(prob, new)
        why = np.where(ok, _params_reason(new, max_abs), why)
        ok = why == _RUNNING
        theta[idx[ok]] = new[ok]
        energy[idx[ok]] += h * gn[ok] ** 2
        active[idx[~ok]] = False
        watch.reason[idx[~ok]] = why[~ok]
        bar.update(i + 1)
    return _finish_like(field_.like, prob, theta, rec_t, rec_risk, rec_gn, rec_en, rec_theta, record_theta, active,
                   np.full(K, loop.done), np.zeros(K, dtype=np.int64), None, "gd", start_step + loop.done, t0,
                   {"evaluations": field_.evaluations, "lr": lr if not callable(lr) else repr(lr),
                    "estimator": repr(estimator)}, reason=watch.reason, growth=watch.growth,
                   interrupted=_gd_interrupted(loop.interrupted, start_step + loop.done))


def _gd_interrupted(hit: bool, next_step: int) -> str:
    """The warning of an interrupted gradient descent ("" when it was not)."""
    return (f"interrupted at step {next_step}; resume with start_step=run.next_step (and run.theta)"
            if hit else "")


def _rise_tol(theta: np.ndarray) -> float:
    """Relative rise of the risk from a step to the next that breaks the energy identity: 1e-12, or a
    few units of rounding of theta's dtype (a float32 risk is rounded to 6e-8)."""
    return max(1e-12, 8 * float(np.finfo(theta.dtype).eps))


def _finish(prob, theta, rec_t, rec_risk, rec_gn, rec_en, rec_theta, record_theta, active, accepted,
            rejected, status, method, next_step, t0, info, *, reason, growth, risk_rose=None,
            interrupted=""):
    """The Run of a loop (C++ or Python driver); ``reason`` (K,) codes of _REASONS, ``growth`` (K,) the
    risk factor of the networks frozen for it, ``risk_rose`` (K,) (fixed-step flows). Warns once about
    the diverged networks and why, and once about the networks whose risk rose. ``interrupted``: the
    warning of a run stopped by Ctrl-C ("" when it was not)."""
    if interrupted:
        warnings.warn(interrupted, RuntimeWarning, stacklevel=3)
    K = theta.shape[0]
    risk_rose = np.zeros(K, dtype=bool) if risk_rose is None else np.asarray(risk_rose).astype(bool)
    if risk_rose.any():
        warnings.warn(f"the risk rose during the run in {int(risk_rose.sum())} of {K} networks (see "
                      f"Run.risk_rose), which the exact gradient flow never does: dt = {info.get('dt', 0):.3g} "
                      f"is too large for {method}; use a smaller dt or method='dopri5'", RuntimeWarning,
                      stacklevel=3)
    diverged = ~active if status is None else (status == "diverged")
    if status is None:
        status = np.where(diverged, "diverged", "ok")
    texts = _reason_texts(np.where(diverged, reason, _RUNNING), growth)
    if diverged.any():
        which = np.flatnonzero(diverged)
        why = "; ".join(f"network {k}: {texts[k]}" for k in which[:3]) + ("; ..." if which.size > 3 else "")
        warnings.warn(f"{which.size} of {theta.shape[0]} networks diverged and were frozen ({why}; see "
                      f"Run.diverged, Run.reason)", RuntimeWarning, stacklevel=3)
    return Run(reason=texts, risk_rose=risk_rose, interrupted=bool(interrupted), theta=theta, t=np.asarray(rec_t, dtype=np.float64), risk=np.array(rec_risk),
               grad_norm=np.array(rec_gn), energy=np.array(rec_en),
               thetas=np.array(rec_theta) if record_theta else None, diverged=diverged,
               status=np.asarray(status), accepted=np.asarray(accepted), rejected=np.asarray(rejected),
               method=method, next_step=next_step, wall_time=time.perf_counter() - t0, info=info)


def gradient_flow(prob: Problem, theta0, t_end: float, method: str = "rk4", dt: float | None = None,
                  rtol: float = 1e-6, atol: float = 1e-9, estimator: Estimator | None = None,
                  normalized: bool = False, record_every: float | None = None, backend: str = "auto",
                  record_theta: bool = False, max_abs: float = 1e8, max_steps: int = 1_000_000,
                  max_rejections: int = 50, min_step: float = 1e-14,
                  progress: bool | None = None, max_growth: float = 1e6, frozen=None) -> Run:
    """Integrate the gradient flow ``dΘ/dt = -G(Θ)`` of K networks from t = 0 to ``t_end``.

    Parameters
    ----------
    prob : the Problem.
    theta0 : (K, P) initial parameters (float32 or float64; the run keeps the dtype): numpy, torch, JAX,
        CuPy or any array-API array (the field then runs in its namespace; ``Run.theta`` comes back in it).
    t_end : final time (> 0).
    method : "euler", "heun", "rk4" (fixed step ``dt``), "dopri5" (adaptive, error control per
        network with ``rtol``/``atol``; ``dt`` is then the initial step, default chosen) or
        "rosenbrock" (``reluflow.stiff``: RODAS3, a linearly implicit, L-stable method of order 3 with
        the exact Jacobian ``-prob.hessian``, adaptive per network like dopri5, same arguments and Run;
        ``info["hessians"]`` counts the Hessians per network). Its cost is one dense (P, P) Hessian and
        its eigendecomposition per step, O(P^3): use it for long, stiff flows (t up to 1e6 and more,
        near critical points) with P up to a few thousand, where dopri5's step stays bounded by the
        largest Hessian eigenvalue; it needs a deterministic estimator with a Hessian (Quadrature,
        Points, QMC, MonteCarlo(resample=False)) and refuses ``normalized=True``.
    dt : fixed step (default t_end / 1000), rounded so that t_end is a whole number of steps.
    estimator : default ``Quadrature()`` (exact in 1-D); a stochastic estimator draws the samples of
        step n for every stage of step n.
    normalized : the normalized flow of arXiv:2207.06246: every hidden neuron's (w_i, b_i) on the
        unit sphere; G is projected on the tangent space at every stage, and (w_i, b_i) renormalized
        after every step. theta0 is first moved onto the manifold by ``Problem.normalize``.
    record_every : time between records (default t_end / 100); records land exactly on multiples.
    backend : "auto", "numpy", "cupy", "cpu" or "cuda" (``rf.backends()``); ``prob.explain(estimator)``
        says which route and loop run.
    record_theta : also keep (T, K, P) snapshots in ``Run.thetas``.
    max_abs : a network whose parameters exceed this (> 0) in absolute value, or become non-finite,
        is frozen and flagged (``Run.diverged``, status "diverged", ``Run.reason``).
    max_growth : a network whose risk becomes non-finite, or exceeds ``max_growth`` (> 1; ``inf``
        turns the factor test off) times its risk at t = 0, is frozen there and flagged the same way
        (dopri5: tested at every accepted state).
    frozen : (P,) bool mask (``prob.mask(...)``) of parameters that keep their values (zero velocity).
    max_steps : dopri5 (and rosenbrock) stops every network still running after this many step
        attempts (status "max_steps").
    max_rejections : dopri5 (and rosenbrock) gives up on a network after this many consecutive rejections
        (status "max_rejections"); ``min_step``: it gives up when the step falls below this ("min_step").
    progress : a progress bar on stderr (default: when stderr is a terminal). Ctrl-C stops a run
        between two steps and returns the partial Run (``Run.interrupted``, a RuntimeWarning).

    Returns
    -------
    Run (t in flow time); ``Run.risk_rose`` flags the fixed-step networks whose risk rose (a step too
    large for the method: warned once).
    """
    theta, estimator, like = _check_common(prob, theta0, estimator)
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    t_end = as_real(t_end, "t_end")
    if t_end <= 0:
        raise ValueError(f"t_end: expected a positive time, got {t_end}")
    rtol, atol = as_real(rtol, "rtol"), as_real(atol, "atol")
    if rtol <= 0:
        raise ValueError(f"rtol: expected rtol > 0, got {rtol}")
    if atol < 0:
        raise ValueError(f"atol: expected atol >= 0, got {atol}")
    if dt is not None:
        dt = as_real(dt, "dt")
        if dt <= 0:
            raise ValueError(f"dt: expected a positive step, got {dt}")
    rec_dt = t_end / 100 if record_every is None else as_real(record_every, "record_every")
    if rec_dt <= 0:
        raise ValueError(f"record_every: expected a positive time interval, got {rec_dt}")
    max_steps = as_int(max_steps, "max_steps", minimum=1)
    max_rejections = as_int(max_rejections, "max_rejections", minimum=1)
    min_step = as_real(min_step, "min_step")
    if min_step < 0:
        raise ValueError(f"min_step: expected a step size >= 0, got {min_step}")
    max_abs, max_growth = _check_options(max_abs, max_growth, record_theta, normalized, progress)
    if method == "rosenbrock":
        stiff.check_arguments(normalized, estimator)
    if normalized:
        theta = _onto_manifold(prob, theta, rescale_outgoing=True)
    field_ = _Field(prob, prob.plan(estimator, backend, like), normalized, _check_frozen(frozen, prob, normalized),
                    like)
    if method == "rosenbrock":
        _check_request("t_end, record_every", theta, math.ceil(t_end / rec_dt) + 1, 0, record_theta)
        return _rosenbrock(prob, theta, t_end, dt, rtol, atol, field_, rec_dt, record_theta, max_abs, max_steps,
                           max_rejections, min_step, progress, max_growth)
    if method == "dopri5":
        if estimator.stochastic:
            raise ValueError("estimator: dopri5 needs a deterministic vector field; use Quadrature, "
                             "QuasiMonteCarlo, Points or MonteCarlo(resample=False)")
        _check_request("t_end, record_every", theta, math.ceil(t_end / rec_dt) + 1, 0, record_theta)
        return _dopri5(prob, theta, t_end, dt, rtol, atol, field_, rec_dt, record_theta, max_abs,
                       max_steps, max_rejections, min_step, progress, max_growth)
    n_steps = max(1, int(round(t_end / (dt if dt is not None else t_end / 1000))))
    h = t_end / n_steps
    rec_stride = max(1, int(round(rec_dt / h)))
    _check_request("t_end, dt, record_every", theta, n_steps // rec_stride + 2, 0, record_theta)
    _check_steps("t_end, dt", n_steps)
    # the energy identity is checked where the field is deterministic (a resampled risk moves anyway)
    rise_tol = -1.0 if estimator.stochastic else _rise_tol(theta)
    native = _native_plan(field_.plan) or _device_plan(field_.plan)
    if native is not None:
        t0 = time.perf_counter()
        hook = _progress_hook(_Progress(n_steps, progress))
        device = {}
        if native.loop == "CUDA":
            res = cuda_backend.gd_run(native, prob.spec, theta, n_steps, 0, rec_stride, {"h": np.array([h])}, max_abs,
                                      max_growth, hook, record_theta, frozen=field_.frozen, method=method,
                                      rise_tol=rise_tol, normalized=normalized)
            res["theta"] = np.array(to_host(res["theta"]), copy=True)
            device = {"blocks": int(res["blocks"]), "compactions": int(res.get("compactions", 0)),
                      "stop_step": res["stop_iter"]}
        else:
            res = cpu_backend.flow_run(native, prob.spec, theta, method, n_steps, 0, rec_stride, np.array([h]),
                                       max_abs, normalized, hook, record_theta, max_growth, rise_tol,
                                       frozen=field_.frozen)
        rec = _record_indices(n_steps, rec_stride)[:res["records"]]
        done = int(res["steps_done"])
        return _finish_like(field_.like, prob, res["theta"], list(rec * h), list(res["risk"]), list(res["grad_norm"]),
                       list(res["energy"]), _recorded(res), record_theta, res["active"].astype(bool),
                       np.full(theta.shape[0], done), np.zeros(theta.shape[0], dtype=np.int64), None,
                       method, done, t0, {"dt": h, "evaluations": int(res["evaluations"]), "loop": native.loop,
                                          "estimator": repr(estimator), **device},
                       reason=res["reason"], growth=res["growth"], risk_rose=res["risk_rose"],
                       interrupted=_flow_interrupted(res["interrupted"], done, n_steps, h))
    A, B = _TABLEAUX[method]
    K = theta.shape[0]
    active = np.ones(K, dtype=bool)
    energy = np.zeros(K)
    watch = _Watch(K, max_growth, rise_tol)
    rec_t, rec_risk, rec_gn, rec_en, rec_theta = [], [], [], [], []
    bar = _Progress(n_steps, progress)
    t0 = time.perf_counter()
    loop = _Steps(n_steps, active)
    for n, idx in loop:
        th = theta[idx].astype(np.float64)
        risk, k0 = field_(theta[idx], n)
        why, _ = watch.evaluated(idx, n == 0, risk, k0)
        if n % rec_stride == 0 or n == n_steps:
            rec_t.append(n * h)
            rec_risk.append(watch.last_risk.copy())
            rec_gn.append(watch.last_gn.copy())
            rec_en.append(energy.copy())
            if record_theta:
                rec_theta.append(theta.copy())
        if n == n_steps:
            continue  # the last state is recorded; the loop ends here
        ks = [k0.astype(np.float64)]
        for s in range(1, len(B)):
            stage = th - h * sum(A[s, j] * ks[j] for j in range(s) if A[s, j] != 0)
            if not np.all(_finite_rows(stage)):
                # C++ evaluates the non-finite stage and its new parameters come out non-finite
                why = np.where((why == _RUNNING) & ~_finite_rows(stage), _PARAMS_NOT_FINITE, why)
                stage = np.where(_finite_rows(stage)[:, None], stage, th)
            _, ks_s = field_(stage.astype(theta.dtype), n)
            ks.append(ks_s.astype(np.float64))
        new = th - h * sum(b * k for b, k in zip(B, ks) if b != 0)
        if normalized:
            new = _retract(prob, new)
        why = np.where(why == _RUNNING, _params_reason(new, max_abs), why)
        ok = why == _RUNNING
        watch.reason[idx[~ok]] = why[~ok]
        theta[idx[ok]] = new[ok].astype(theta.dtype)
        energy[idx[ok]] += h * sum(b * np.sum(k * k, axis=1) for b, k in zip(B, ks) if b != 0)[ok]
        active[idx[~ok]] = False
        bar.update(n + 1)
    return _finish_like(field_.like, prob, theta, rec_t, rec_risk, rec_gn, rec_en, rec_theta, record_theta, active,
                   np.full(K, loop.done), np.zeros(K, dtype=np.int64), None, method, loop.done, t0,
                   {"dt": h, "evaluations": field_.evaluations, "estimator": repr(field_.est)},
                   reason=watch.reason, growth=watch.growth, risk_rose=watch.rose,
                   interrupted=_flow_interrupted(loop.interrupted, loop.done, n_steps, h))


def _flow_interrupted(hit: bool, done: int, n_steps: int, h: float) -> str:
    """The warning of an interrupted fixed-step flow ("" when it was not)."""
    return (f"interrupted at step {done} of {n_steps} (t = {done * h:.6g}); continue from run.theta with "
            f"t_end reduced by {done * h:.6g} and the same dt" if hit else "")


def _dopri5(prob, theta, t_end, h0, rtol, atol, field_, rec_dt, record_theta, max_abs, max_steps,
            max_rejections, min_step, progress, max_growth):
    """Dormand–Prince 5(4) with a step size, time and status per network; records on a time grid."""
    K = theta.shape[0]
    grid = record_grid(t_end, rec_dt)
    # the whole loop in C++ (cpp/src/cpu/dopri5_cpu.cpp, a port of this function) where it can run the field
    native = _native_plan(field_.plan) or _device_plan(field_.plan)
    if native is not None:
        t0 = time.perf_counter()
        hook = _progress_hook(_Progress(t_end, progress))
        device = {}
        if native.loop == "CUDA":   # the whole adaptive loop on the device (cuda/src/dopri5_loop.cu)
            res = cuda_backend.dopri5_run(native, prob.spec, theta, t_end, h0, rtol, atol, grid, max_abs,
                                          max_steps, max_rejections, min_step, hook, record_theta, max_growth,
                                          frozen=field_.frozen, normalized=field_.normalized)
            res["theta"] = np.array(to_host(res["theta"]), copy=True)
            device = {"blocks": int(res["blocks"]), "compactions": int(res.get("compactions", 0))}
        else:
            res = cpu_backend.dopri5_run(native, prob.spec, theta, t_end, h0, rtol, atol, grid, max_abs, max_steps,
                                         max_rejections, min_step, field_.normalized, hook, record_theta, max_growth,
                                         frozen=field_.frozen)
        status = res["status"]
        return _finish_like(field_.like, prob, res["theta"], list(grid), list(res["risk"]), list(res["grad_norm"]),
                       list(res["energy"]), _recorded(res), record_theta, status == "ok", res["accepted"], res["rejected"],
                       status, "dopri5", 0, t0,
                       {"evaluations": int(res["evaluations"]), "loop": native.loop, "rtol": rtol,
                        "atol": atol, "estimator": repr(field_.est), "t_reached": res["t"], **device},
                       reason=res["reason"], growth=res["growth"],
                       interrupted=_dopri5_interrupted(res["interrupted"], status, res["t"]))
    rec, t, energy, accepted, rejected, streak, status, done, reason, growth, th = start_state(grid, theta,
                                                                                              record_theta)
    risk, k1 = field_(theta, 0)
    k1 = k1.astype(np.float64)
    risk0 = risk.copy()
    # a network whose starting risk is not finite has nowhere to go
    start_bad = ~np.isfinite(risk)
    status[start_bad], reason[start_bad], done[start_bad] = "diverged", _RISK_NOT_FINITE, True
    h = initial_step(th, k1, h0, rtol, atol, t_end)
    bar = _Progress(t_end, progress)
    t0 = time.perf_counter()
    rec.due(np.ones(K, dtype=bool), t, risk, np.linalg.norm(k1, axis=1), energy, th)
    iters = 0
    with _CtrlC() as stop:
        while not done.all():
            iters += 1
            if halted(stop.hit, iters, max_steps, status, done):
                break
            idx = np.flatnonzero(~done)
            target, hh = rec.landing_step(h, t, idx)
            y = th[idx]
            ks = [k1[idx]]
            for s in range(1, 7):
                stage = y - hh[:, None] * sum(_DP_A[s, j] * ks[j] for j in range(s) if _DP_A[s, j] != 0)
                fin = _finite_rows(stage)
                stage = np.where(fin[:, None], stage, y)
                r_s, k_s = field_(stage.astype(theta.dtype), 0)
                ks.append(k_s.astype(np.float64))
            y_new = y - hh[:, None] * sum(b * k for b, k in zip(_DP_B, ks) if b != 0)
            if field_.normalized:
                y_new = _retract(prob, y_new)
            err_vec = hh[:, None] * sum(e * k for e, k in zip(_DP_E, ks) if e != 0)
            sc = atol + rtol * np.maximum(np.abs(y), np.abs(y_new))
            err = np.sqrt(np.mean((err_vec / sc) ** 2, axis=1))
            bad_why = _params_reason(y_new, max_abs)
            # a NaN error estimate alone comes from a non-finite stage gradient
            bad_why = np.where((bad_why == _RUNNING) & ~np.isfinite(err), _GRAD_NOT_FINITE, bad_why)
            bad = bad_why != _RUNNING
            risk_why = np.zeros(idx.size, dtype=np.uint8)
            acc = (err <= 1.0) & ~bad
            # FSAL: the 7th stage is G at y_new (exact for the plain flow; projected field when normalized)
            k_last, r_last = ks[6], r_s
            a_idx = idx[acc]
            if a_idx.size:
                energy[a_idx] += hh[acc] * sum(b * np.sum(k * k, axis=1) for b, k in zip(_DP_B, ks) if b != 0)[acc]
                th[a_idx] = y_new[acc]
                t[a_idx] = np.where(np.abs(t[a_idx] + hh[acc] - target[acc]) <= 1e-12 * t_end, target[acc],
                                    t[a_idx] + hh[acc])
                if field_.normalized:  # the field at the retracted point
                    r_last_a, k_last_a = field_(y_new[acc].astype(theta.dtype), 0)
                    k1[a_idx] = k_last_a.astype(np.float64)
                    risk_a = r_last_a
                else:
                    k1[a_idx] = k_last[acc]
                    risk_a = r_last[acc]
                accepted[a_idx] += 1
                streak[a_idx] = 0
                risk_why[acc] = _risk_reason(risk_a, risk0[a_idx], max_growth)
                grew = risk_why[acc] == _RISK_GREW
                growth[a_idx[grew]] = risk_a[grew] / risk0[a_idx[grew]]
                rec.due_accepted(a_idx, t, risk_a, np.linalg.norm(k1[a_idx], axis=1), energy, th)
            r_idx = idx[~acc]
            rejected[r_idx] += 1
            streak[r_idx] += 1
            # step size update (standard controller, exponent -1/5; no growth after a rejection)
            fac = step_size_factor(err, -0.2, bad)
            h[idx] = hh * np.where(acc, fac, np.minimum(fac, 1.0))
            end_of_step(status, reason, idx, h, streak, bad, bad_why, risk_why, max_rejections, min_step)
            done |= (t >= t_end - 1e-12 * t_end) | (status != "ok")
            bar.update(float(np.min(t)))
    theta_out = th.astype(theta.dtype)
    return _finish_like(field_.like, prob, theta_out, list(grid), list(rec.risk), list(rec.grad_norm),
                   list(rec.energy), list(rec.theta) if record_theta else [], record_theta, status == "ok", accepted,
                   rejected, status.astype(str), "dopri5", 0, t0,
                   {"evaluations": field_.evaluations, "rtol": rtol, "atol": atol,
                    "estimator": repr(field_.est), "t_reached": t}, reason=reason, growth=growth,
                   interrupted=_dopri5_interrupted(stop.hit, status.astype(str), t))


def _rosenbrock(prob, theta, t_end, h0, rtol, atol, field_, rec_dt, record_theta, max_abs, max_steps,
                max_rejections, min_step, progress, max_growth):
    """The stiff integrator (``reluflow.stiff``, RODAS3) on dopri5's record grid, as a Run."""
    grid = record_grid(t_end, rec_dt)
    t0 = time.perf_counter()
    with _CtrlC() as stop:
        res = stiff.rosenbrock_run(prob, field_, theta, t_end, h0, rtol, atol, grid, max_abs, max_steps,
                                   max_rejections, min_step, record_theta, max_growth, stop,
                                   _progress_hook(_Progress(t_end, progress)))
    status = res["status"]
    return _finish_like(field_.like, prob, res["theta"], list(grid), list(res["risk"]), list(res["grad_norm"]),
                        list(res["energy"]), [] if res["thetas"] is None else list(res["thetas"]), record_theta,
                        status == "ok", res["accepted"], res["rejected"], status, "rosenbrock", 0, t0,
                        {"evaluations": res["evaluations"], "hessians": res["hessians"],
                         "hessian_calls": res["hessian_calls"], "rtol": rtol, "atol": atol,
                         "estimator": repr(field_.est), "t_reached": res["t"], "tableau": "RODAS3"},
                        reason=res["reason"], growth=res["growth"],
                        interrupted=_dopri5_interrupted(res["interrupted"], status, res["t"]))


def _dopri5_interrupted(hit: bool, status: np.ndarray, t: np.ndarray) -> str:
    """The warning of an interrupted dopri5 run ("" when it was not)."""
    running = np.asarray(status) == "interrupted"
    return (f"interrupted with {int(running.sum())} of {t.size} networks still running (status "
            f"'interrupted', from t = {t[running].min() if running.any() else t.min():.6g}; each network's "
            f"time in run.info['t_reached']); continue from run.theta" if hit else "")


def normalized_gradient_flow(prob: Problem, theta0, t_end: float, **kwargs) -> Run:
    """The normalized gradient flow (``gradient_flow(..., normalized=True)``), seed arXiv:2207.06246."""
    return gradient_flow(prob, theta0, t_end, normalized=True, **kwargs)
