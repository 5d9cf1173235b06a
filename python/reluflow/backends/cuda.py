"""The CUDA backend: the fused dense risk/gradient kernels of ``reluflow._cuda`` (cuda/src/risk_grad.cu)
on CuPy arrays, read without a copy (``__cuda_array_interface__``) and answered as CuPy arrays.

What runs where, per route of the plan (``reluflow.plan``):

* ``dense`` and ``tensor_grid``: the nodes are made on the host by the C++ samplers (bitwise the numpy
  estimators' nodes) and moved to the device; an affine or piecewise-polynomial target or a shallow
  Teacher (up to 16 outputs) is evaluated per node inside the kernel (targets.h, net.h), any other
  target (data, a deep Teacher, a Function) on the host (``cpu.target_values``) and its values moved
  to the device; then the CUDA kernel runs over nodes x networks.
* ``partition`` (exact 1-D quadrature of any depth): every network's kink partition, nodes and target
  values in C++ on the host (``cpu.quad1d_nodes_batch``, OpenMP over networks; one copy of theta to the
  host), then one ragged kernel over all networks' nodes on the device (``_cuda.risk_and_grad_ragged``);
  a Function target or a very high order keeps the Python loop (``reference.partition_loop``) over the
  dense kernel.
* ``point_sweep`` (shallow 1-D nets, out <= 3): nodes and target values made on the host as for ``dense``,
  then the sweep on the device (``_cuda.point_sweep``: CUB radix sorts of the nodes and the kinks,
  fixed-order double-double scans, binary searches; cuda/src/sweep_points.cu), float64.
* ``exact_sweep`` (shallow 1-D nets, piecewise-polynomial target and density): ``_cuda.exact_sweep`` for
  out <= 3 (a segmented radix sort of the kinks, the pieces between kinks and breaks integrated by
  Gauss–Legendre, fixed-order double-double scans), the cpu sweep for more outputs (``method="sweep"``).

float32 theta is computed in float32 and accumulated in float64 (see reluflow/risk_grad_grid.h);
results are float64 and bitwise reproducible (no atomics), independent of the batch.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..estimators import Nodes
from ..layout import Layout
from ..plan import MAX_KERNEL_TARGET_OUT, kernel_target
from ..quadrature import nodes_tensor
from ..registry import cuda_extension, cupy_module
from ..spec import ProblemSpec
from . import cpu, reference

__all__ = ["risk_and_grad", "partition", "point_sweep", "exact_sweep", "realization", "evaluate", "fixed_nodes", "PATHS", "MAX_KERNEL_TARGET_OUT", "kernel_target",
           "gd_run", "LOOP_METHODS", "dopri5_run"]

#: ``path`` of :func:`risk_and_grad`: "auto" (shallow when the widths allow it), "shallow" (two-pass kernel
#: of [d, H, out], d <= 8, out <= 3) or "deep" (any widths; for cross-checks)
PATHS = ("auto", "shallow", "deep")


def _modules():
    ext, why = cuda_extension()
    if ext is None:
        raise ValueError(f"backend: 'cuda' is not available here: {why}")
    cp, why = cupy_module()
    if cp is None:
        raise ValueError(f"backend: 'cuda' needs CuPy for its arrays: {why}")
    return ext, cp


def _device_f64(cp, a, name: str, shape: tuple):
    a = cp.ascontiguousarray(cp.asarray(a, dtype=cp.float64))
    if a.ndim == 1 and len(shape) == 2 and shape[1] == 1:
        a = a.reshape(-1, 1)
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
    return a



def risk_and_grad(layout: Layout, theta, x, w, y, want_grad: bool = True, path: str = "auto",
                  spec: dict | None = None):
    """Weighted risk ``sum_j w_j |N(x_j) - y_j|^2`` (K,) and its generalized gradient (K, P) on the GPU.

    Parameters
    ----------
    theta : (K, P) float32 or float64 (other dtypes are cast to float64); x : (N, d) (or (N,) when
        d = 1); w : (N,); y : (N, out) (or (N,) when out = 1), or None with ``spec``: the target of
        ``spec`` (a ``ProblemSpec.native()`` dict; see :func:`kernel_target`) evaluated in the kernel. CuPy arrays (numpy arrays are copied to the device).
    path : see ``PATHS``.

    Returns
    -------
    risk (K,), grad (K, P) (None unless ``want_grad``): float64 CuPy arrays, on the current stream.
    """
    ext, cp = _modules()
    if path not in PATHS:
        raise ValueError(f"path: expected one of {PATHS}, got {path!r}")
    theta = cp.asarray(theta)
    if theta.dtype not in (cp.float32, cp.float64):
        theta = theta.astype(cp.float64)
    theta = cp.ascontiguousarray(theta)
    if theta.ndim != 2 or theta.shape[1] != layout.num_params:
        raise ValueError(f"theta: expected shape (K, {layout.num_params}), got {theta.shape}")
    x = cp.asarray(x)
    N = x.shape[0] if x.ndim >= 1 else -1
    x = _device_f64(cp, x, "x", (N, layout.widths[0]))
    w = _device_f64(cp, w, "w", (N,))
    if y is not None:
        y = _device_f64(cp, y, "y", (N, layout.widths[-1]))
    elif spec is None:
        raise ValueError("y: required unless spec= gives a target the kernel evaluates (kernel_target)")
    K = theta.shape[0]
    risk = cp.empty(K, dtype=cp.float64)
    grad = cp.empty((K, layout.num_params), dtype=cp.float64) if want_grad else None
    ext.risk_and_grad(list(layout.widths), theta, x, w, y, risk=risk, grad=grad, path=path,
                      stream=cp.cuda.get_current_stream().ptr, spec=spec)
    return risk, grad


def partition(spec: ProblemSpec, estimator, theta, want_grad: bool = True):
    """Exact 1-D quadrature of K networks of any depth on their kink partitions (SPEC §3), on the GPU.

    Every network's partition, Gauss–Legendre nodes and target values are made on the host in C++
    (``cpu.quad1d_nodes_batch``, OpenMP over networks, from one copy of theta), copied once, and one ragged
    kernel runs all networks, each over its own nodes (``_cuda.risk_and_grad_ragged``;
    reluflow/risk_grad_grid.h "ragged nodes": a network's bits depend on its own nodes only).

    Parameters
    ----------
    theta : (K, P) float32 or float64 (other dtypes are cast to float64); CuPy or numpy.

    Returns
    -------
    risk (K,), grad (K, P) (None unless ``want_grad``): float64 CuPy arrays; NaN for a network with a
    non-finite parameter.
    """
    ext, cp = _modules()
    theta = cp.asarray(theta)
    if theta.dtype not in (cp.float32, cp.float64):
        theta = theta.astype(cp.float64)
    theta = cp.ascontiguousarray(theta)
    layout = spec.layout
    if theta.ndim != 2 or theta.shape[1] != layout.num_params:
        raise ValueError(f"theta: expected shape (K, {layout.num_params}), got {theta.shape}")
    host = np.asarray(cp.asnumpy(theta), dtype=np.float64)
    offset, x, w, y, zero = cpu.quad1d_nodes_batch(spec, estimator, host)
    K = theta.shape[0]
    risk = cp.empty(K, dtype=cp.float64)
    grad = cp.empty((K, layout.num_params), dtype=cp.float64) if want_grad else None
    ext.risk_and_grad_ragged(list(layout.widths), theta, cp.asarray(x.reshape(-1, 1)), cp.asarray(w), cp.asarray(y),
                             offset, None if zero is None else cp.asarray(zero), risk=risk, grad=grad,
                             stream=cp.cuda.get_current_stream().ptr)
    bad = ~np.isfinite(host).all(axis=1)
    if bad.any():  # no nodes were made for them: NaN, as on the cpu backend
        idx = cp.asarray(np.flatnonzero(bad))
        risk[idx] = np.nan
        if grad is not None:
            grad[idx] = np.nan
    return risk, grad


def point_sweep(layout: Layout, theta, x, w, y, want_grad: bool = True):
    """Weighted risk ``sum_j w_j |N(x_j) - y_j|^2`` (K,) and its generalized gradient (K, P) of shallow 1-D
    nets ``[1, H, out]`` (out <= 3) by the point sweep on the GPU: O(N + H) per network.

    Parameters
    ----------
    theta : (K, P), computed in float64 (float32 is widened, as on the cpu backend's sweep); x : (N,) or
        (N, 1) finite nodes; w : (N,); y : (N, out) (or (N,) when out = 1). CuPy arrays (numpy arrays are
        copied to the device).

    Returns
    -------
    risk (K,), grad (K, P) (None unless ``want_grad``): float64 CuPy arrays, on the current stream.
    """
    ext, cp = _modules()
    widths = list(layout.widths)
    if len(widths) != 3 or widths[0] != 1 or widths[2] > 3:
        raise ValueError(f"layout: the cuda point sweep needs a shallow 1-D net [1, H, out] with out <= 3, got "
                         f"widths {widths}")
    theta = cp.ascontiguousarray(cp.asarray(theta, dtype=cp.float64))
    if theta.ndim != 2 or theta.shape[1] != layout.num_params:
        raise ValueError(f"theta: expected shape (K, {layout.num_params}), got {theta.shape}")
    x = cp.asarray(x)
    N = x.shape[0] if x.ndim >= 1 else -1
    x = _device_f64(cp, x, "x", (N, 1)).reshape(N)
    if not bool(cp.isfinite(x).all()):
        raise ValueError("x: expected finite nodes (NaN or inf found)")
    w = _device_f64(cp, w, "w", (N,))
    y = _device_f64(cp, y, "y", (N, widths[2]))
    K = theta.shape[0]
    risk = cp.empty(K, dtype=cp.float64)
    grad = cp.empty((K, layout.num_params), dtype=cp.float64) if want_grad else None
    ext.point_sweep(widths, theta, x, w, y, risk=risk, grad=grad, stream=cp.cuda.get_current_stream().ptr)
    return risk, grad


def exact_sweep(spec: ProblemSpec, theta, want_grad: bool = True):
    """Exact quadrature risk (K,) and generalized gradient (K, P) of shallow 1-D nets on the GPU, by the
    sweep over the sorted kinks (float64 whatever theta's dtype): ``_cuda.exact_sweep`` for out <= 3, the
    cpu sweep (copied to the device) for more outputs. ValueError unless the problem has a piecewise-
    polynomial target and density. Float64 CuPy arrays; grad None unless ``want_grad``."""
    why = spec.exact_sweep_unsupported()
    if why is not None:
        raise ValueError(f"problem: {why}")
    ext, cp = _modules()
    theta = cp.ascontiguousarray(cp.asarray(theta, dtype=cp.float64))
    if theta.ndim == 1:
        theta = theta.reshape(1, -1)
    if theta.ndim != 2 or theta.shape[1] != spec.num_params:
        raise ValueError(f"theta: expected shape (K, {spec.num_params}) or ({spec.num_params},), got {theta.shape}")
    if spec.out_dim > 3:
        risk, grad = cpu.shallow1d_exact(spec, theta)
        return cp.asarray(risk), (cp.asarray(grad) if want_grad else None)
    K = theta.shape[0]
    risk = cp.empty(K, dtype=cp.float64)
    grad = cp.empty((K, spec.num_params), dtype=cp.float64) if want_grad else None
    ext.exact_sweep(list(spec.widths), theta, risk=risk, grad=grad, spec=spec.native(),
                    stream=cp.cuda.get_current_stream().ptr)
    return risk, grad


def realization(layout: Layout, theta, x):
    """N_theta(x) for every network, (K, N, out) float64 CuPy (the reference forward pass on CuPy)."""
    _, cp = _modules()
    return reference.realization(layout, theta, cp.asarray(x), cp)


def fixed_nodes(plan, spec: ProblemSpec, step: int = 0) -> Nodes:
    """The nodes of a plan whose nodes do not depend on theta (routes dense and tensor_grid) at
    ``step`` with their target values, as CuPy arrays: made on the host by the C++ samplers (bitwise
    the numpy estimators' nodes) and ``targets.h``, then copied to the device."""
    _, cp = _modules()
    nodes = cpu.fixed_nodes(plan, spec, step)
    return Nodes(cp.asarray(nodes.x), cp.asarray(nodes.w), cp.asarray(nodes.y))


def evaluate(plan, spec: ProblemSpec, theta, step: int, want_grad: bool, xp=None):
    """Risk (K,) and gradient (K, P) (None unless ``want_grad``) of ``plan``: float64 CuPy arrays."""
    _, cp = _modules()

    def kernel(layout, th, x, w, y, g, zero=None):
        if zero is not None:
            # a degenerate network (a pre-activation identically zero on a piece, issue 15.10): the
            # kernels do not take zero flags yet; the reference on the device does
            return reference.risk_and_grad(layout, th, x, w, y, g, cp, zero)
        return risk_and_grad(layout, th, x, w, y, g)

    if plan.route == "partition":
        if plan.native:
            return partition(spec, plan.estimator, theta, want_grad)
        return reference.partition_loop(spec, theta, plan.estimator, want_grad, kernel, cp)
    if plan.route == "exact_sweep":
        return exact_sweep(spec, theta, want_grad)
    if plan.route == "point_sweep":
        nodes = cpu.fixed_nodes(plan, spec, step)
        return point_sweep(spec.layout, theta, cp.asarray(nodes.x), cp.asarray(nodes.w), cp.asarray(nodes.y),
                           want_grad)
    if plan.route not in ("dense", "tensor_grid"):
        raise ValueError(f"plan: route {plan.route!r} does not run on the cuda backend (backends.get sends "
                         f"it to the cpu backend)")
    nodes = (nodes_tensor(spec, plan.estimator) if plan.route == "tensor_grid"
             else cpu.point_nodes(spec, plan.estimator, step))
    x, w = cp.asarray(nodes.x), cp.asarray(nodes.w)
    if nodes.y is None and kernel_target(spec):
        # the target in the kernel (targets.h, net.h): no (N, out) array made on the host or copied
        return risk_and_grad(spec.layout, theta, x, w, None, want_grad, spec=spec.native())
    return kernel(spec.layout, theta, x, w, cp.asarray(cpu.target_values(spec, nodes)), want_grad)



# ---- the integrator loop on the device -------------------------------------------------------------

#: ``method`` of :func:`gd_run`: gradient descent, or the fixed-step gradient flows
LOOP_METHODS = ("gd", "euler", "heun", "rk4")


def _loop_nodes(cp, plan, spec: ProblemSpec) -> dict:
    """The fixed nodes of a device loop's run as keyword arguments of ``_cuda.gd_loop`` /
    ``dopri5_loop``: x, w on the device and y (N, out), or spec= for a target the kernel evaluates."""
    nodes = cpu.point_nodes(spec, plan.estimator, 0)
    kw = {"x": _device_f64(cp, nodes.x, "x", (nodes.x.shape[0], spec.layout.widths[0])),
          "w": _device_f64(cp, nodes.w, "w", (nodes.x.shape[0],))}
    if nodes.y is None and kernel_target(spec):
        kw["spec"] = spec.native()  # the target in the kernel
    else:
        kw["y"] = _device_f64(cp, cpu.target_values(spec, nodes), "y", (nodes.x.shape[0], spec.layout.widths[-1]))
    return kw


def device_target_fn(cp, spec: ProblemSpec) -> Callable:
    """The per-step target of a device SGD loop whose target the kernels do not evaluate (a ``Function``,
    a deep Teacher, more than 16 outputs): ``y = f(x)`` for the step's CuPy nodes x (n, d), (n, out)
    float64 on the device, called by ``_cuda.gd_loop`` once per step on the loop's stream.

    A Function's ``fn`` gets the CuPy array itself (array-API code runs on the device; numpy's ufuncs
    dispatch to CuPy's); one that only takes numpy arrays (CuPy refuses the implicit conversion with a
    TypeError on the first call) is evaluated on a host copy from then on. Its first values are checked
    (shape, finite); later non-finite values make the risk non-finite, which the loop's watch flags. A
    deep Teacher or a native target with many outputs: the reference realization / Python target on the
    device's nodes.
    """
    t = spec.target_spec
    if t.kind == "teacher":
        teacher, th = Layout(t.arrays["widths"]), cp.asarray(np.asarray(t.arrays["theta"])[None, :])
        return lambda x: reference.realization(teacher, th, x, cp)[0]
    fn = getattr(spec.target, "fn", None)
    state = {"host": fn is None, "checked": False}

    def call(x):
        y = None
        if not state["host"]:
            try:
                y = cp.asarray(fn(x), dtype=cp.float64)
            except TypeError:
                if state["checked"]:
                    raise
                state["host"] = True
        if state["host"]:
            y = cp.asarray(spec.target(cp.asnumpy(x)), dtype=cp.float64)
        y = y.reshape(x.shape[0], -1) if y.ndim == 1 else y
        if not state["checked"]:
            if y.shape != (x.shape[0], spec.out_dim):
                raise ValueError(f"target: fn returned shape {y.shape} for {x.shape[0]} points; expected "
                                 f"({x.shape[0]}, {spec.out_dim})")
            if not bool(cp.isfinite(y).all()):
                raise ValueError("target: fn returned NaN or inf")
            state["checked"] = True
        return y

    return call


def _loop_theta(cp, theta):
    """The device loops' own copy of theta (K, P) (host or device): float32/float64 kept, other dtypes as
    float64, C-contiguous; the loop updates it in place."""
    th = cp.array(theta, copy=True)
    if th.dtype not in (cp.float32, cp.float64):
        th = th.astype(cp.float64)
    return cp.ascontiguousarray(th)


def gd_run(plan, spec: ProblemSpec, theta, steps: int, start_step: int, record_every: int, lr: dict,
           max_abs: float, max_growth: float, progress: Callable | None, record_theta: bool = False,
           frozen: np.ndarray | None = None, method: str = "gd", rise_tol: float = -1.0,
           normalized: bool = False) -> dict:
    """Gradient descent / SGD, or the fixed-step gradient flow ``method`` ("euler", "heun", "rk4": lr
    {"h": (1,)} the step dt), with the whole loop on the device (``_cuda.gd_loop``, cuda/src/gd_loop.cu)
    for a plan with ``loop == "CUDA"``.

    theta (K, P) float32/float64 (host or device; copied to the device). ``lr``: {"h": (1,) or (steps,)
    float64} or {"h_fn": f(first, count) -> (count,) step sizes of local steps first..first+count-1}
    (a callable schedule, asked once per block). ``progress(steps_done)`` is called once per block (about
    every 0.25 s), where Ctrl-C stops the loop.

    Returns a dict as ``cpu.flow_run``'s (theta as a (K, P) CuPy array; risk, grad_norm, energy (T, K);
    thetas (T, K, P) or None; active, reason, growth (K,); evaluations, interrupted, steps_done, records)
    plus stop_iter (K,): the local iteration whose watch first saw a network frozen (-1: running), and
    blocks: the host synchronizations of the run. ``rise_tol`` >= 0 (the deterministic flows): risk_rose
    (K,) flags a risk above the previous step's x (1 + rise_tol), as the cpu loop. ``normalized``: every
    gradient projected on the tangent space of the hidden neurons' spheres and every update retracted
    (theta must already lie on the manifold).
    """
    ext, cp = _modules()
    if method not in LOOP_METHODS:
        raise ValueError(f"method: expected one of {LOOP_METHODS}, got {method!r}")
    if plan.loop != "CUDA":
        raise ValueError(f"plan: loop {plan.loop!r} does not run on the device (needs the cuda backend, "
                         f"route 'dense')")
    th = _loop_theta(cp, theta)
    kw = {}
    if plan.source == "resample":
        kw = {"resample": True, "seed": plan.estimator.seed, "n": plan.estimator.n, "spec": spec.native()}
        if not kernel_target(spec):
            kw["target_fn"] = device_target_fn(cp, spec)
    else:
        kw = _loop_nodes(cp, plan, spec)
    fz = None if frozen is None else np.ascontiguousarray(frozen, dtype=np.uint8)
    res = ext.gd_loop(list(spec.widths), th, steps=int(steps), start_step=int(start_step),
                      record_every=int(record_every), max_abs=float(max_abs), max_growth=float(max_growth),
                      frozen=fz, record_theta=bool(record_theta), progress=progress,
                      stream=cp.cuda.get_current_stream().ptr, method=method, rise_tol=float(rise_tol),
                      normalized=bool(normalized), **lr, **kw)
    res["theta"] = th
    return res


#: ``_cuda.dopri5_loop``'s status codes, in order (cpu/dopri5_cpu.h's Dopri5Status)
DOPRI5_STATUS = ("ok", "diverged", "max_rejections", "min_step", "max_steps", "interrupted")


def dopri5_run(plan, spec: ProblemSpec, theta, t_end: float, h0: float | None, rtol: float, atol: float,
               grid, max_abs: float, max_steps: int, max_rejections: int, min_step: float,
               progress: Callable | None, record_theta: bool = False, max_growth: float = 1e6,
               frozen: np.ndarray | None = None, normalized: bool = False) -> dict:
    """Dormand–Prince 5(4) with a step size, error control and status per network, the whole loop on the
    device (``_cuda.dopri5_loop``, cuda/src/dopri5_loop.cu) for a plan with ``loop == "CUDA"`` and fixed
    nodes (dopri5 needs a deterministic field); records on ``grid`` (T,) increasing times in [0, t_end].
    ``normalized``: the flow on the hidden neurons' spheres (theta on the manifold, no ``frozen``), as the
    cpu loop's: every evaluation projected, the new point retracted before its error test and the field
    evaluated again there.

    theta (K, P) float32/float64 (host or device; copied). ``progress(t_min)`` is called once per block of
    iterations (about every 0.25 s) with the smallest time of a running network; True stops there.

    Returns a dict as ``cpu.dopri5_run``'s: theta (K, P) CuPy; risk, grad_norm, energy (T, K) (NaN where
    never reached); thetas (T, K, P) or None; status (K,) names; accepted, rejected, reason, growth, t (K,);
    evaluations (the cpu loop's count of kernel calls), interrupted; plus blocks (host synchronizations) and
    compactions (block boundaries where the evaluations shrank to the running networks: at most 3/4 of the
    evaluated ones left; the done ones' rows are not evaluated any more).
    """
    ext, cp = _modules()
    if plan.loop != "CUDA" or plan.source != "fixed":
        raise ValueError(f"plan: loop {plan.loop!r} with source {plan.source!r} does not run dopri5 on the "
                         f"device (needs the cuda backend, route 'dense', fixed nodes)")
    th = _loop_theta(cp, theta)
    fz = None if frozen is None else np.ascontiguousarray(frozen, dtype=np.uint8)
    res = ext.dopri5_loop(list(spec.widths), th, grid=np.ascontiguousarray(grid, dtype=np.float64),
                          t_end=float(t_end), h0=-1.0 if h0 is None else float(h0), rtol=float(rtol),
                          atol=float(atol), max_abs=float(max_abs), max_growth=float(max_growth),
                          max_steps=int(max_steps), max_rejections=int(max_rejections), min_step=float(min_step),
                          frozen=fz, record_theta=bool(record_theta), progress=progress,
                          stream=cp.cuda.get_current_stream().ptr, normalized=bool(normalized),
                          **_loop_nodes(cp, plan, spec))
    res["status"] = np.asarray(DOPRI5_STATUS)[res["status"]]
    res["theta"] = th
    return res
