"""The C++ CPU backend: thin marshalling around ``reluflow._core`` (fused OpenMP/SIMD kernels, the
1-D sweeps and partition path, the samplers and the integrator loops).

float32 theta is passed to the kernels as float32 (computed in float32 inside a tile, summed in
float64 across tiles); results are float64 and bitwise the same for any number of threads. Every
array describing the problem comes from its ``ProblemSpec``; which route runs is the ``Plan``'s
decision (``reluflow.plan``), never this module's.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .. import _native_sampling
from ..estimators import Estimator, MonteCarlo, Nodes, QuasiMonteCarlo
from ..layout import Layout
from ..quadrature import fixed_1d, nodes_tensor
from ..registry import core
from ..spec import ProblemSpec
from . import reference

__all__ = ["realization", "risk_and_grad", "risk_grad_hvp", "quadrature_hvp", "shallow1d_exact", "shallow1d_points", "evaluate", "point_nodes", "target_values", "field_args", "field_of",
           "flow_run", "dopri5_run"]


def _core():
    core_, why = core()
    if core_ is None:  # pragma: no cover - the registry refuses backend="cpu" first
        raise ImportError(why)
    return core_


def _theta(theta) -> np.ndarray:
    theta = np.asarray(theta)
    if theta.dtype not in (np.float32, np.float64):
        theta = theta.astype(np.float64)
    return np.ascontiguousarray(theta)


def _f64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


def _x(layout: Layout, x) -> np.ndarray:
    x = _f64(x)
    if x.ndim == 1 and layout.widths[0] == 1:
        x = x.reshape(-1, 1)
    return x


# ---- kernels --------------------------------------------------------------------------------------

def realization(layout: Layout, theta, x, kernel: str = "auto"):
    """N_theta(x) for every network: theta (K, P), x (N, d) -> (K, N, out), float64."""
    return _core().realization(list(layout.widths), _theta(theta), _x(layout, x), kernel)


def risk_and_grad(layout: Layout, theta, x, w, y, want_grad: bool = True, kernel: str = "auto", zero=None):
    """Weighted risk ``sum_j w_j |N(x_j) - y_j|^2`` (K,) and its generalized gradient (K, P), float64.

    theta (K, P) float32 or float64; x (N, d); w (N,); y (N, out). The gradient is None when
    ``want_grad`` is False. ``kernel``: "auto", "shallow", "deep" or "scalar" (for cross-checks).
    ``zero`` (N, l_1 + ... + l_{L-1}) bool or None: hidden pre-activations set to exactly 0 at each
    node (``Nodes.zero``; runs the scalar kernel).
    """
    x = _x(layout, x)
    y = _f64(y)
    if y.ndim == 1 and layout.widths[-1] == 1:
        y = y.reshape(-1, 1)
    extra = {} if zero is None else {"zero": np.ascontiguousarray(zero, dtype=np.uint8)}
    return _core().risk_and_grad(list(layout.widths), _theta(theta), x, _f64(w), y, bool(want_grad), kernel,
                                 **extra)


def risk_grad_hvp(layout: Layout, theta, V, x, w, y, xp=None, zero=None, kinks=None):
    """Risk (K,), gradient (K, P) and Hessian-vector products (K, B, P) of the weighted risk
    ``sum_j w_j |N(x_j) - y_j|^2`` in C++ (``reluflow/hvp.h``), float64 numpy arrays whatever theta's dtype.

    The exact Hessian of that weighted sum with relu'' = 0 and relu'(0) = 0, as
    ``reference.risk_grad_hvp`` (same signature; ``xp`` is ignored: host numpy in and out).
    theta (K, P); V (K, B, P); x (N, d); w (N,); y (N, out); zero (N, l_1 + ... + l_{L-1}) bool or None.
    ``kinks`` = (c (m,), U (m, P)) or None: ``sum_i c_i (u_i . v) u_i`` added to every product (the
    moving kinks of the exact 1-D quadrature, shared by the K networks; ``reference.hvp_with_kinks``).
    Bitwise the same for any number of threads, and for a network alone or in a batch.
    """
    x = _x(layout, x)
    y = _f64(y)
    if y.ndim == 1 and layout.widths[-1] == 1:
        y = y.reshape(-1, 1)
    theta, V = _f64(theta), _f64(V)
    extra = {}
    if zero is not None:
        extra["zero"] = np.ascontiguousarray(zero, dtype=np.uint8)
    if kinks is not None:
        c, U = (_f64(a) for a in kinks)
        K = theta.shape[0]
        extra["kink_c"] = np.ascontiguousarray(np.broadcast_to(c, (K,) + c.shape))
        extra["kink_u"] = np.ascontiguousarray(np.broadcast_to(U, (K,) + U.shape))
    return _core().risk_grad_hvp(list(layout.widths), theta, V, x, _f64(w), y, **extra)


def quadrature_hvp(spec: ProblemSpec, theta, V, estimator) -> np.ndarray:
    """Hessian-vector products of the exact 1-D quadrature risk, theta (K, P), V (K, B, P) -> (K, B, P)
    float64: ``reference.quadrature_hvp`` (each network's nodes and kink terms found in numpy) with the
    C++ kernel (node sums and kink terms) of :func:`risk_grad_hvp`."""
    def kernel(layout, th, Vk, x, w, y, xp, zero=None, kinks=None):
        return risk_grad_hvp(layout, th, Vk, x, w, y, zero=zero, kinks=kinks)[2]

    return reference.quadrature_hvp(spec, _f64(theta), _f64(V), estimator, np, kernel=kernel)


def shallow1d_exact(spec: ProblemSpec, theta) -> tuple[np.ndarray, np.ndarray]:
    """Exact quadrature risk (K,) and generalized gradient (K, P) of shallow 1-D nets by one sweep over
    the sorted kinks, O(H log H) per network (float64 whatever theta's dtype; ``theta`` (K, P) or (P,),
    numpy or cupy). ValueError unless the problem has a piecewise-polynomial target and density."""
    why = spec.exact_sweep_unsupported()
    if why is not None:
        raise ValueError(f"problem: {why}")
    th = _f64(theta.get() if hasattr(theta, "get") else theta)
    return _core().shallow1d_exact(th.reshape(-1, spec.num_params), spec.out_dim, spec=spec.native())


def shallow1d_points(layout: Layout, theta, x, w, y) -> tuple[np.ndarray, np.ndarray]:
    """Weighted risk ``sum_j w_j |N(x_j) - y_j|^2`` (K,) and its gradient (K, P) of shallow 1-D nets by
    one sweep over sorted nodes and kinks (float64). x (N,) or (N, 1), w (N,), y (N, out) or (N,)."""
    if len(layout.widths) != 3 or layout.widths[0] != 1:
        raise ValueError(f"problem: the point sweep needs a shallow 1-D network [1, H, out], got widths "
                         f"{list(layout.widths)}")
    x = _f64(x)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    return _core().shallow1d_points(_f64(theta).reshape(-1, layout.num_params), layout.widths[-1], x, _f64(w),
                                    _f64(y))


# ---- nodes and target values ------------------------------------------------------------------------

def point_nodes(spec: ProblemSpec, estimator: Estimator, step: int = 0) -> Nodes:
    """The weighted nodes of a point estimator at ``step``: Monte-Carlo and QMC nodes drawn by the C++
    samplers (bitwise the numpy estimators' nodes), Points as given."""
    if isinstance(estimator, MonteCarlo):
        x = _native_sampling.mc_nodes_of(spec.density, estimator.seed, step if estimator.resample else 0,
                                         estimator.n)
        return Nodes(x, np.full(estimator.n, 1.0 / estimator.n))
    if isinstance(estimator, QuasiMonteCarlo):
        x = _native_sampling.qmc_nodes_of(spec.density, estimator.seed, estimator.n)
        return Nodes(x, np.full(estimator.n, 1.0 / estimator.n))
    return estimator.nodes(spec, step)


def target_values(spec: ProblemSpec, nodes: Nodes) -> np.ndarray:
    """y (N, out): the data of ``nodes``, or the target at them: Affine and piecewise polynomials by
    ``targets.h``, a Teacher by the C++ realization, a ``Function`` in Python."""
    if nodes.y is not None:
        return nodes.y
    t = spec.target_spec
    if t.native:
        return _core().target_values(list(spec.widths), _f64(nodes.x), spec=spec.native())
    if t.kind == "teacher":
        teacher = Layout(t.arrays["widths"])
        return realization(teacher, t.arrays["theta"][None, :], nodes.x)[0]
    return spec.target(nodes.x)


def quad1d_args(spec: ProblemSpec, estimator, fixed=None) -> dict:
    """Keyword arguments of the C++ 1-D partition path (``_core.quad1d_risk_and_grad`` and the
    ``quad1d`` field of the C++ loops): fixed breaks, order and the problem (its ``spec``: support,
    density, target)."""
    _lo, _hi, breaks, q = fixed_1d(spec, estimator) if fixed is None else fixed
    return {"fixed_breaks": _f64(breaks), "order": int(q), "spec": spec.native()}


def quad1d_nodes_batch(spec: ProblemSpec, estimator, theta) -> tuple:
    """The exact 1-D quadrature's nodes of K networks side by side (``_core.quad1d_nodes_batch``: every
    network's kink partition, nodes and target values in C++, OpenMP over networks), as the device's
    ragged kernel takes them (``backends.cuda.partition``).

    theta (K, P): host array (computed in float64). Returns ``(offset (K + 1,) int64, x (N,), w (N,),
    y (N, out), zero (N, hidden) uint8 or None)``: network k's nodes are rows ``offset[k]:offset[k + 1]``;
    ``zero`` flags the hidden pre-activations that vanish identically around a node; a network with a
    non-finite parameter gets no nodes."""
    return _core().quad1d_nodes_batch(list(spec.layout.widths), np.asarray(theta), **quad1d_args(spec, estimator))


def fixed_nodes(plan, spec: ProblemSpec, step: int = 0) -> Nodes:
    """The weighted nodes of a plan whose nodes do not depend on theta (routes dense, point_sweep and
    tensor_grid) at ``step``, with their target values ``y``: Monte-Carlo and QMC nodes and native
    targets from C++."""
    if plan.route not in ("dense", "point_sweep", "tensor_grid"):
        raise ValueError(f"plan: route {plan.route!r} has no node set independent of theta")
    nodes = nodes_tensor(spec, plan.estimator) if plan.route == "tensor_grid" else point_nodes(spec, plan.estimator, step)
    return Nodes(nodes.x, nodes.w, target_values(spec, nodes))


# ---- one evaluation -----------------------------------------------------------------------------

def evaluate(plan, spec: ProblemSpec, theta, step: int, want_grad: bool, xp=np):
    """Risk (K,) and gradient (K, P) (None unless ``want_grad``) of ``plan``, float64 numpy arrays."""
    estimator, route, lay = plan.estimator, plan.route, spec.layout
    if route == "exact_sweep":
        risk, grad = shallow1d_exact(spec, theta)
        return risk, (grad if want_grad else None)
    if route == "partition":
        if plan.native:
            return _core().quad1d_risk_and_grad(list(lay.widths), np.ascontiguousarray(theta),
                                                want_grad=bool(want_grad), **quad1d_args(spec, estimator))
        return reference.partition_loop(spec, theta, estimator, want_grad, risk_and_grad)
    nodes = fixed_nodes(plan, spec, step)
    if route == "point_sweep":
        risk, grad = shallow1d_points(lay, theta, nodes.x, nodes.w, nodes.y)
        return risk, (grad if want_grad else None)
    return risk_and_grad(lay, theta, nodes.x, nodes.w, nodes.y, want_grad)


# ---- the integrator loops ------------------------------------------------------------------------

def field_args(plan, spec: ProblemSpec) -> dict:
    """The vector field of ``plan`` as the C++ loops take it (``cpp/src/bindings/bind_field.h``)."""
    estimator = plan.estimator
    if plan.source == "resample":
        target = {}
        if not spec.target_spec.native:  # Teacher (C++ realization) or Function (Python): one callback per step
            target = {"target_fn": lambda x: _f64(target_values(spec, Nodes(x, np.ones(x.shape[0]))))}
        return {"source": "resample", "seed": estimator.seed, "n": estimator.n,
                "sweep": plan.route == "point_sweep", "spec": spec.native(), **target}
    if plan.source == "exact_shallow1d":
        return {"source": "exact_shallow1d", "spec": spec.native()}
    if plan.source == "quad1d":
        return {"source": "quad1d", **quad1d_args(spec, estimator)}
    if plan.source == "fixed":
        nodes = fixed_nodes(plan, spec, 0)
        return {"source": "fixed", "x": _f64(nodes.x), "w": _f64(nodes.w), "y": _f64(nodes.y),
                "sweep": plan.route == "point_sweep"}
    raise ValueError(f"plan: route {plan.route!r} has no C++ loop")


def field_of(plan, spec: ProblemSpec, normalized: bool, frozen: np.ndarray | None = None):
    """The C++ vector field of ``plan`` (a ``_core.Field``): its arguments and the problem's ``spec``
    parsed and checked once per run, then handed to the loop as ``field=``; ``frozen`` (P,) bool: the
    parameters whose velocity is 0."""
    extra = {} if frozen is None else {"frozen": np.ascontiguousarray(frozen, dtype=np.uint8)}
    return _core().Field(list(spec.widths), normalized=bool(normalized), **field_args(plan, spec), **extra)


def flow_run(plan, spec: ProblemSpec, theta, method: str, steps: int, start_step: int, record_every: int,
             h, max_abs: float, normalized: bool, progress: Callable | None, record_theta: bool = False,
             max_growth: float = 1e6, rise_tol: float = -1.0, frozen: np.ndarray | None = None) -> dict:
    """The fixed-step loop (GD/SGD, euler, heun, rk4) in C++: theta (K, P), h (steps,) step sizes or (1,)
    for the same step every step.
    Returns a dict: theta, risk/grad_norm/energy records (T, K), active (K,), reason (K,) codes of why a
    network was frozen and growth (K,) its risk factor (flows._REASONS), risk_rose (K,) (the risk rose
    by more than ``rise_tol`` relative from a step to the next; negative: not checked), evaluations, and thetas
    (T, K, P) with ``record_theta`` (else None). Reports to ``progress(steps_done)`` about every 0.25 s,
    which is also where Ctrl-C stops it: ``interrupted`` is then True, theta the state after ``steps_done``
    steps, and the records are cut to the ``records`` written."""
    res = _core().flow_run(list(spec.widths), np.ascontiguousarray(theta), method, steps, start_step,
                           record_every, _f64(h), float(max_abs), float(max_growth), float(rise_tol),
                           progress=progress, record_theta=bool(record_theta),
                           field=field_of(plan, spec, normalized, frozen))
    # Ctrl-C: only the records written before it
    n = res["records"]
    for key in ("risk", "grad_norm", "energy", "thetas"):
        if res[key] is not None:
            res[key] = res[key][:n]
    return res


def dopri5_run(plan, spec: ProblemSpec, theta, t_end: float, h0: float | None, rtol: float, atol: float,
               grid, max_abs: float, max_steps: int, max_rejections: int, min_step: float,
               normalized: bool, progress: Callable | None, record_theta: bool = False,
               max_growth: float = 1e6, frozen: np.ndarray | None = None) -> dict:
    """Dormand–Prince 5(4) in C++ with a step size and status per network; records on ``grid``.
    Returns a dict as :func:`flow_run` plus accepted, rejected and ``status`` (names)."""
    core_ = _core()
    res = core_.dopri5_run(list(spec.widths), np.ascontiguousarray(theta), float(t_end),
                           -1.0 if h0 is None else float(h0), float(rtol), float(atol), grid, float(max_abs),
                           int(max_steps), int(max_rejections), float(min_step), float(max_growth),
                           progress=progress, record_theta=bool(record_theta),
                           field=field_of(plan, spec, normalized, frozen))
    res["status"] = np.asarray(core_.dopri5_status_names)[res["status"]]
    return res
