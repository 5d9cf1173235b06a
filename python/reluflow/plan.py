"""The planner: the one place that decides which route computes a risk and which loop integrates it.

``plan(spec, estimator, backend, dtype)`` returns a :class:`Plan`; ``Problem.risk_and_grad``, every
integrator and the diagnostics ask it, and ``Problem.explain`` prints it. The choice depends only on
the problem, the estimator and the shapes they imply (number of nodes N, widths) — never on the
number of networks K, the thread count, the machine's load or a timing — so a network's result is
bitwise the same whatever batch it runs in and however many threads run it (SPEC §7).

Routes
------
``dense``        weighted nodes (Points, MonteCarlo, QuasiMonteCarlo) through the fused kernel;
``point_sweep``  the same nodes on a shallow 1-D net ``[1, H, out]``: one sweep over sorted nodes and
                 kinks, O(N + H) per network after one sort (cpu; cuda for out <= 3: radix sorts and
                 scans, ``reluflow/sweep_grid.h``);
``exact_sweep``  exact 1-D quadrature of a shallow net by one sweep over its sorted kinks, O(H log H)
                 (cpu; cuda for out <= 3; piecewise-polynomial target and density);
``partition``    exact 1-D quadrature of any depth: Gauss–Legendre on every piece of the network's
                 kink partition (C++ on cpu; on cuda nodes in C++ on the host, one ragged
                 kernel on the device; per network in Python otherwise);
``tensor_grid``  d = 2..4: composite tensor Gauss–Legendre, the same nodes for every network.
``gaussian_closed_form``  ``Exact()`` for a shallow net under Gaussian input: risk, gradient and Hessian
                 from bivariate normal integrals (``reluflow.gaussian_exact``, numpy, float64).

``Exact()`` elsewhere in 1-D plans as ``Quadrature()`` (exact to rounding there) and is refused
otherwise.

Loops: ``"C++"`` (the whole integrator loop in ``_core``, GIL released), ``"CUDA"`` (gradient descent,
SGD and the flows euler/heun/rk4 (``_cuda.gd_loop``) and dopri5 (``_cuda.dopri5_loop``) with the whole
loop on the device: cuda backend, dense route, normalized runs too; rosenbrock keeps the Python
driver there for now) or
``"Python"`` (the reference driver in ``reluflow.flows`` around
``Problem.risk_and_grad``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .estimators import Estimator, Exact, MonteCarlo, Points, QuasiMonteCarlo, Quadrature
from .quadrature import check_quadrature_input, fixed_1d
from .registry import core
from .spec import ProblemSpec

__all__ = ["Plan", "plan", "ROUTES", "POINT_METHODS", "QUADRATURE_METHODS", "NATIVE_MAX_ORDER", "kernel_target",
           "MAX_KERNEL_TARGET_OUT"]

ROUTES = ("dense", "point_sweep", "exact_sweep", "partition", "tensor_grid", "gaussian_closed_form")
#: ``method`` of ``Problem.risk_and_grad`` for point estimators
POINT_METHODS = ("auto", "dense", "sweep")
#: ``Quadrature(method=...)``
QUADRATURE_METHODS = ("auto", "sweep", "partition")
#: largest Gauss–Legendre ``order`` the C++ partition path takes (kMaxOrder in cpp/src/bindings/bind_quad1d.cpp)
NATIVE_MAX_ORDER = 256


@dataclass(frozen=True)
class Plan:
    """What runs: ``backend`` (resolved name), ``route`` (see ``ROUTES``), ``native`` (whether the
    route's kernel is C++ or CUDA; False: numpy reference code, or the per-network Python loop of the
    partition path), ``loop`` ("C++", "CUDA" or "Python": the integrators' loop), ``source`` (the nodes as
    the C++ loops take them: "fixed", "resample", "exact_shallow1d", "quad1d" or None) and ``why``
    (one line per decision)."""

    backend: str
    route: str
    native: bool
    loop: str
    source: str | None
    estimator: Estimator
    dtype: str
    why: tuple[str, ...] = field(default=())

    def _engine(self) -> str:
        if not self.native:
            return "Python/array code"
        return "CUDA" if self.backend == "cuda" else "C++"

    def explain(self, K: int | None = None) -> str:
        """The plan as text: backend, route, loop and the reasons."""
        head = (f"backend {self.backend!r}, {self.dtype}{'' if K is None else f', K = {K} networks'}: "
                f"route {self.route!r} ({self._engine()}), integrator loop "
                f"{self.loop}")
        lines = [head, f"  estimator: {self.estimator!r}"]
        lines += [f"  - {w}" for w in self.why]
        if K is not None:
            lines.append("  - the route does not depend on K, the thread count or the load: each network's "
                         "result is bitwise the same in any batch")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.explain()


def _num_nodes(estimator: Estimator) -> int | None:
    if isinstance(estimator, (MonteCarlo, QuasiMonteCarlo)):
        return estimator.n
    if isinstance(estimator, Points):
        return estimator.x.shape[0]
    return None


def point_sweep_cheaper(N: int, H: int) -> bool:
    """Cost model of the point sweep against the dense kernel, per network (ns, one core).

    Dense: ~13 flops per node-neuron pair at ~20 GFLOP/s: ``0.65 N H``. Sweep: ~5 ns per node and
    ~25 ns per neuron, plus one sort of the nodes per call (~3 ns per element and level) shared by the
    batch; the sort is charged as if shared by 32 networks. Deliberately a function of N and H only:
    with K or the thread count in it, a network's bits would depend on its batch or the machine.
    """
    dense = 0.65 * N * H
    sweep = 5.0 * N + 25.0 * H + 3.0 * N * math.log2(N + 2) / 32
    return sweep < dense


#: most Gauss–Legendre points per piece of the CUDA exact sweep (sweep_grid::kMaxExactOrder)
EXACT_SWEEP_MAX_ORDER_CUDA = 32


def point_sweep_cheaper_gpu(N: int, H: int) -> bool:
    """Cost model of the CUDA point sweep against the CUDA dense kernel (seconds, an H100).

    Dense: ~10 flops per node-neuron pair at ~60% of the FP32 peak, plus its launches:
    ``1.5e-13 N H + 2e-5``. Sweep: two radix sorts and ~15 launches, then ~2 ns per node and neuron:
    ``1e-4 + 2e-9 (N + H)``. Predictions, not yet measured on a GPU (cuda/NOTES.md). A function of N and
    H only, like :func:`point_sweep_cheaper`.
    """
    return 1e-4 + 2e-9 * (N + H) < 1.5e-13 * N * H + 2e-5


def _point_route(spec: ProblemSpec, estimator: Estimator, backend: str, method: str, why: list) -> str:
    if method not in POINT_METHODS:
        raise ValueError(f"method: expected one of {POINT_METHODS}, got {method!r}")
    applicable = spec.shallow_1d and (backend == "cpu" or (backend == "cuda" and spec.out_dim <= 3))
    if method == "dense":
        why.append("method='dense' asked for the fused dense kernel")
        return "dense"
    if method == "sweep":
        if not applicable:
            raise ValueError("method: 'sweep' needs a shallow 1-D net [1, H, out] on the cpu backend, or on the "
                             "cuda backend with out <= 3")
        why.append("method='sweep' asked for the point sweep")
        return "point_sweep"
    if not applicable:
        why.append("fused dense kernel over nodes x networks (the point sweep needs a shallow 1-D net "
                   "on the cpu backend, or on cuda with out <= 3)")
        return "dense"
    N, H = _num_nodes(estimator), spec.widths[1]
    cheaper = point_sweep_cheaper(N, H) if backend == "cpu" else point_sweep_cheaper_gpu(N, H)
    if cheaper:
        why.append(f"point sweep: shallow 1-D net, O(N + H) per network beats the dense O(N H) at "
                   f"N = {N}, H = {H} (cost model of N and H only)")
        return "point_sweep"
    why.append(f"dense kernel: at N = {N}, H = {H} it beats the point sweep (cost model of N and H only)")
    return "dense"


def _quadrature_route(spec: ProblemSpec, estimator: Quadrature, backend: str, why: list) -> str:
    check_quadrature_input(spec)
    if spec.dim > 1:
        why.append(f"d = {spec.dim}: composite tensor Gauss–Legendre (convergent, not exact), the same "
                   f"nodes for every network")
        return "tensor_grid"
    method = estimator.method
    if method not in QUADRATURE_METHODS:
        raise ValueError(f"estimator: method must be one of {QUADRATURE_METHODS}, got {method!r}")
    if method == "partition":
        why.append("Quadrature(method='partition'): Gauss–Legendre on the kink partition")
        return "partition"
    unsupported = spec.exact_sweep_unsupported()
    if method == "sweep":
        if unsupported is not None:
            raise ValueError(f"estimator: method='sweep': {unsupported}; use method='partition' or 'auto'")
        if core()[0] is None:
            raise ValueError("estimator: method='sweep' needs the C++ extension reluflow._core, which is "
                             "not importable here; use method='partition'")
        why.append("Quadrature(method='sweep'): exact O(H log H) sweep over the sorted kinks (C++)")
        return "exact_sweep"
    device_sweep = (backend == "cuda" and unsupported is None and spec.out_dim <= 3
                    and spec.exact_order() <= EXACT_SWEEP_MAX_ORDER_CUDA)
    if backend != "cpu" and not device_sweep:
        why.append(f"the {backend} backend keeps the reference: Gauss–Legendre on each network's kink "
                   f"partition" + (" (the device sweep takes shallow 1-D nets with out <= 3 and piecewise-"
                                   "polynomial target and density)" if backend == "cuda" else ""))
        return "partition"
    if unsupported is not None:
        why.append(f"partition path: {unsupported}")
        return "partition"
    if estimator.order is not None and estimator.order < spec.exact_order():
        why.append(f"order = {estimator.order} is below the exact order {spec.exact_order()}: only the "
                   f"partition path reproduces that inexact rule")
        return "partition"
    why.append("exact O(H log H) sweep over the sorted kinks: shallow 1-D net, piecewise-polynomial "
               "target and density" + (" (on the device, CUDA: a segmented radix sort of the kinks, "
                                       "fixed-order double-double scans over the pieces)" if backend == "cuda" else ""))
    return "exact_sweep"


def _exact_estimator(spec: ProblemSpec, why: list) -> "Exact | Quadrature":
    """What ``Exact()`` means for this problem: itself (the Gaussian closed form) or ``Quadrature()``
    (1-D, exact to rounding); ValueError naming ``estimator`` where no exact risk is available."""
    widths, t = list(spec.widths), spec.target_spec
    if spec.density.kind == "gaussian":
        if len(widths) != 3:
            raise ValueError(f"estimator: Exact() under Gaussian input has a closed form for shallow nets "
                             f"[d, H, out] only, got widths {widths}; use MonteCarlo or QuasiMonteCarlo")
        teacher_ok = t.kind == "teacher" and len(t.arrays["widths"]) == 3
        if t.kind != "affine" and not teacher_ok:
            raise ValueError(f"estimator: Exact() under Gaussian input needs an Affine or a shallow Teacher "
                             f"[d, k, out] target, got {type(spec.target).__name__}"
                             + (f" with widths {list(t.arrays['widths'])}" if t.kind == "teacher" else "")
                             + "; use MonteCarlo or QuasiMonteCarlo")
        why.append("Exact(): shallow net under Gaussian input: risk, gradient and Hessian in closed form "
                   "(bivariate normal integrals, numpy float64)")
        return Exact()
    if spec.dim == 1:
        why.append("Exact() in 1-D: the exact quadrature (Quadrature())")
        return Quadrature()
    raise ValueError(f"estimator: Exact() has no closed form for a {spec.density.kind} input in d = "
                     f"{spec.dim}; use Quadrature() (convergent tensor grid, d <= 4), MonteCarlo or "
                     f"QuasiMonteCarlo, or a Gaussian input (dists.Gaussian) with a shallow net")


def _partition_native(spec: ProblemSpec, estimator: Quadrature, backend: str, why: list) -> bool:
    """Whether the 1-D partition path runs natively: on cpu the kinks, nodes, target and kernel of each
    network in C++; on cuda the kinks, nodes and target in C++ on the host, then one ragged kernel over
    every network's nodes on the device."""
    if backend not in ("cpu", "cuda"):
        return False
    if spec.target_spec.kind == "function":
        why.append("a Function target is evaluated in Python: the partition path loops over networks in "
                   "Python (cpu kernel per network)")
        return False
    q = fixed_1d(spec, estimator)[3]
    if q > NATIVE_MAX_ORDER:
        why.append(f"order {q} > {NATIVE_MAX_ORDER}: the partition path loops over networks in Python")
        return False
    if backend == "cuda":
        why.append("every network's kink partition, nodes and target values in C++ on the host (OpenMP over "
                   "networks), then one ragged CUDA kernel over all networks' nodes on the device")
    else:
        why.append("the kink partition, nodes, target values and fused kernel of each network in C++, "
                   "OpenMP over networks")
    return True


def plan(spec: ProblemSpec, estimator: Estimator, backend: str, dtype=np.float64, method: str = "auto") -> Plan:
    """The route and loop for ``estimator`` on ``backend`` (a resolved name: numpy, cupy, cpu, cuda).

    ``method``: for point estimators on shallow 1-D nets, "dense", "sweep" or "auto" (the cost model
    of :func:`point_sweep_cheaper`); Quadrature carries its own ``method``. Raises ValueError for
    combinations that cannot run (naming the argument).
    """
    if not isinstance(estimator, Estimator):
        raise TypeError(f"estimator: expected Points, MonteCarlo, QuasiMonteCarlo, Quadrature or Exact, "
                        f"got {type(estimator).__name__}")
    dtype = np.dtype(dtype).name
    why: list[str] = []
    if isinstance(estimator, Exact):
        estimator = _exact_estimator(spec, why)
    if isinstance(estimator, Exact):
        route, native, source = "gaussian_closed_form", False, None
    elif isinstance(estimator, Quadrature):
        route = _quadrature_route(spec, estimator, backend, why)
        if route == "exact_sweep":
            native, source = True, "exact_shallow1d"
        elif route == "partition":
            native = _partition_native(spec, estimator, backend, why)
            source = "quad1d" if native else None
        else:
            native, source = backend in ("cpu", "cuda"), "fixed"
    elif isinstance(estimator, (Points, MonteCarlo, QuasiMonteCarlo)):
        route = _point_route(spec, estimator, backend, method, why)
        native = backend in ("cpu", "cuda")
        resample = isinstance(estimator, MonteCarlo) and estimator.resample
        source = "resample" if resample else "fixed"
        if resample and backend == "cpu":
            why.append("fresh Philox samples every step, drawn in C++" + (
                "; the target evaluated in C++" if spec.target_spec.native else
                "; the target by one vectorized Python callback per step"))
    else:
        raise TypeError(f"estimator: {type(estimator).__name__} is not supported by the planner")
    if backend == "cuda" and route in ("dense", "tensor_grid"):
        why.append("the fused CUDA kernel over nodes x networks; nodes made on the host (C++ samplers) and "
                   "copied to the device; " + ("the target evaluated in the kernel (targets.h)"
                                               if spec.target_spec.native else
                                               "a shallow teacher evaluated in the kernel (net.h), other "
                                               "targets' values made on the host and copied"))
    elif backend == "cuda" and route == "point_sweep":
        why.append("the point sweep on the device (CUDA: CUB radix sorts of the nodes and the kinks, "
                   "fixed-order double-double scans); nodes and target values made on the host and copied")
    elif backend == "cuda" and route == "partition" and not native:
        why.append("each network's kink partition in Python, its nodes through the fused CUDA kernel")
    loop = "C++" if backend == "cpu" and source is not None else "Python"
    if backend == "cuda" and route == "dense" and source in ("fixed", "resample"):
        loop = "CUDA"
        why.append("integrators: the whole loop on the device (gradient descent / SGD and the flows euler, heun, "
                   "rk4, dopri5 (step size and error control per network): nodes, kernels, stages, update and "
                   "divergence watch queued on one stream, records copied back in blocks" +
                   ("" if source == "fixed" or kernel_target(spec) else
                    "; SGD's target values by one vectorized callback per step on the device's nodes (CuPy)") +
                   "; normalized runs "
                   "too (projection and retraction on the device); rosenbrock keeps the Python driver)")
    elif loop == "Python":
        why.append("integrators: the Python driver around risk_and_grad" + (
            "" if backend != "cpu" else " (this route has no C++ loop)"))
    else:
        why.append("integrators: the whole loop in C++ (GIL released)")
    return Plan(backend, route, native, loop, source if loop in ("C++", "CUDA") else None, estimator, dtype,
                tuple(why))


#: most outputs of a target the CUDA kernels evaluate themselves (grid::kMaxTargetOut)
MAX_KERNEL_TARGET_OUT = 16


def kernel_target(spec: ProblemSpec) -> bool:
    """Whether the CUDA kernels evaluate the target of ``spec`` themselves: affine, piecewise polynomial
    or a shallow Teacher, with at most ``MAX_KERNEL_TARGET_OUT`` outputs (SGD on the device without a
    host callback needs it; ``backends.cuda`` asks the same)."""
    t = spec.target_spec
    shallow_teacher = t.kind == "teacher" and len(t.arrays["widths"]) == 3
    return (t.native or shallow_teacher) and spec.out_dim <= MAX_KERNEL_TARGET_OUT
