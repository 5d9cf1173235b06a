"""``rf.Quadrature``: the reference (numpy) implementation of deterministic quadrature (SPEC §3).

1-D (``widths[0] == 1``): **exact up to rounding** for piecewise-polynomial targets and densities.
A ReLU network of one input is continuous and piecewise affine; its pieces are delimited by the kinks
of its hidden neurons. On every piece of the partition formed by

* the kinks of every hidden neuron of the network (:func:`kink_partition`),
* the target's breaks (``Target.breaks``),
* the density's breaks (``Distribution.breaks``), restricted to the support of the input distribution,

the integrand ``|N(x) - f(x)|^2 rho(x)`` is a polynomial of degree
``2 * max(1, target.degree) + density.degree``, so Gauss–Legendre with
``q = ceil((degree + 1) / 2)`` points per piece integrates it exactly (and the gradient integrand,
whose degree is not larger, too).

Shallow 1-D nets ``[1, H, out]`` with an Affine / PiecewiseLinear / PiecewisePolynomial target and a
Uniform or piecewise-polynomial density also have an O(H log H) path, ``reluflow.sweep`` (one sweep
over the sorted kinks, prefix sums of the residual's moments): the same exact value to rounding. It
runs for ``backend="cpu"`` (or ``Quadrature(method="sweep")``), see :func:`quadrature_method`; the
numpy backend keeps this module's partition path, the reference. Deeper 1-D nets on the ``cpu``
backend run the partition path itself in C++ (``_core.quad1d_risk_and_grad``, the same formulas as
:func:`kink_partition` and ``_nodes_1d``), see :func:`quadrature_risk_and_grad`.

d = 2..4: composite tensor Gauss–Legendre on the box of the uniform input distribution, ``cells``
cells and ``order`` points per axis, the same nodes for every network. This is **convergent, not
exact** (the kinks are hyperplanes that cut the cells), with error O(cells^-2) for a generic net.

d > 4: refused (the tensor grid grows as (cells * order)^d); use ``QuasiMonteCarlo``.

Note on the gradient. For a fixed network the exact risk is ``sum over pieces`` of smooth integrals
whose limits (the kinks) move with theta. Differentiating, the boundary terms are
``integrand(kink) * d kink / d theta`` taken from both sides of each kink with opposite signs; they
cancel because the integrand is continuous across a kink (N is continuous; f and rho may jump only
at their own breaks, which do not move with theta). So the gradient of the exact risk is the
integral of the derivative of the integrand, which is what the kernel computes from the fixed
nodes: the gradient of the weighted sum with the nodes held fixed is the exact gradient of the exact
risk (with relu'(0) = 0 on the measure-zero set where a pre-activation vanishes identically on a piece).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .backends import reference
from .dists import Uniform
from .estimators import Nodes, Quadrature
from .layout import Layout

if TYPE_CHECKING:  # pragma: no cover
    from .problem import Problem

__all__ = ["kink_partition", "quadrature_nodes", "quadrature_risk_and_grad", "quadrature_method", "METHODS",
           "DEFAULT_CELLS", "DEFAULT_ORDER_MULTI_D", "DEFAULT_ORDER_INEXACT", "MAX_DIM"]

#: default cells per axis of the composite tensor rule, by input dimension
DEFAULT_CELLS = {2: 16, 3: 8, 4: 4}
#: default Gauss–Legendre points per axis and cell for d >= 2
DEFAULT_ORDER_MULTI_D = 4
#: default points per piece in 1-D when the target is not piecewise polynomial (``exact=False``)
DEFAULT_ORDER_INEXACT = 8
#: largest input dimension the tensor rule accepts
MAX_DIM = 4
#: largest ``order`` the C++ 1-D partition path takes (kMaxOrder in cpp/src/bind_quad1d.cpp); larger
#: orders run the per-network Python loop
_NATIVE_MAX_ORDER = 256


def _to_numpy(a) -> np.ndarray:
    """A host float64 copy of a numpy or cupy array."""
    if not isinstance(a, np.ndarray) and hasattr(a, "get"):
        a = a.get()
    return np.asarray(a, dtype=np.float64)


# ---- kinks of a 1-D network ---------------------------------------------------------------------

def _preactivations(params, x: np.ndarray, upto: int) -> np.ndarray:
    """Pre-activation z_upto (n, l_upto) of hidden layer ``upto`` (0-based) at the 1-D points x (n,)."""
    W, b = params[0]
    z = x[:, None] * W[:, 0][None, :] + b[None, :]
    for W, b in params[1:upto + 1]:
        z = np.maximum(z, 0.0) @ W.T + b[None, :]
    return z


def _zeros_on_pieces(e: np.ndarray, z: np.ndarray, left_open: bool, right_open: bool) -> np.ndarray:
    """Zeros of affine pre-activations on the pieces [e_j, e_{j+1}].

    ``e`` (n,) finite increasing points, ``z`` (n, l) the pre-activations there; each column of z is
    affine on every [e_j, e_{j+1}]. A zero strictly inside a finite piece exists iff the end values
    have strictly opposite signs; it is found by linear interpolation from the end closer to it (the
    interpolation parameter is in [0, 1/2], computed from |z_a| + |z_b| without cancellation), which is
    exact for an affine function up to rounding. ``left_open``: the first piece is really
    (-inf, e_1] and e_0 only a probe in it, so the line is extrapolated to the left of e_1 (likewise
    ``right_open`` for the last piece).
    """
    out = []
    za, zb = z[:-1], z[1:]
    a, b = e[:-1, None], e[1:, None]
    h = b - a
    cross = za * zb < 0
    # an unbounded end piece is left to the extrapolation below (which also covers its finite part)
    cross[0] &= not left_open
    cross[-1] &= not right_open
    if np.any(cross):
        with np.errstate(divide="ignore", invalid="ignore"):
            ta = za / (za - zb)     # in (0, 1) where cross: zero at a + ta * h
            tb = zb / (zb - za)     # = 1 - ta: zero at b - tb * h
            x = np.where(ta <= 0.5, a + ta * h, b - tb * h)
        x = np.clip(x, a, b)
        out.append(x[cross])
    # unbounded end pieces: the affine line through the probe and the first finite point
    for open_, i_in, i_probe in ((left_open, 1, 0), (right_open, -2, -1)):
        if not open_:
            continue
        z_in, z_pr = z[i_in], z[i_probe]
        dz = z_in - z_pr
        with np.errstate(divide="ignore", invalid="ignore"):
            s = z_in / dz          # zero at e_in - s * (e_in - e_probe); beyond e_in (outwards) iff s > 0
            x = e[i_in] - s * (e[i_in] - e[i_probe])
        ok = (dz != 0) & (s > 0) & np.isfinite(x)
        out.append(x[ok])
    return np.concatenate(out) if out else np.empty(0)


def kink_partition(layout: Layout, theta, lo: float, hi: float) -> np.ndarray:
    """Sorted breakpoints ``[lo, k_1, ..., k_m, hi]`` of a 1-D ReLU network on [lo, hi].

    Parameters
    ----------
    layout : the network's ``Layout`` (``widths[0] == 1``).
    theta : (P,) parameters (float32 or float64; computed in float64).
    lo, hi : the interval, ``lo < hi``; either may be infinite.

    Returns
    -------
    float64 array: ``lo``, the distinct kinks of every hidden neuron strictly inside (lo, hi) in
    increasing order, then ``hi``. Between two consecutive entries the network is affine.

    Layer 1: neuron i has its kink at ``-b_i / w_i``; a neuron with ``w_i = 0`` is constant (no kink).
    Layer k > 1: on each piece of the partition of the layers before k, every pre-activation of layer k
    is affine in x, so its zero in the piece (if any) is found exactly from its values at the piece's
    ends. Coinciding kinks are merged; kinks outside (lo, hi) are dropped; a layer whose
    pre-activations keep one sign on a piece adds nothing there (dead or always-active neurons).
    Infinite ends: the unbounded end pieces are handled by extrapolating the affine pre-activation
    from a finite probe point inside the piece.
    """
    lo, hi = float(lo), float(hi)
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise ValueError(f"lo, hi: expected lo < hi, got lo={lo}, hi={hi}")
    if layout.widths[0] != 1:
        raise ValueError(f"layout: kink_partition is for 1-D networks (widths[0] == 1), got widths "
                         f"{list(layout.widths)}")
    theta = _to_numpy(theta).reshape(-1)
    if theta.size != layout.num_params:
        raise ValueError(f"theta: expected {layout.num_params} parameters for widths {list(layout.widths)}, "
                         f"got {theta.size}")
    params = [(W[0], b[0]) for W, b in layout.unpack(theta[None, :])]

    def inside(v):
        v = v[np.isfinite(v)]
        return v[(v > lo) & (v < hi)]

    # layer 1: kinks at -b_i / w_i
    w1, b1 = params[0][0][:, 0], params[0][1]
    moving = w1 != 0
    pts = np.unique(inside(-b1[moving] / w1[moving]))

    # deeper hidden layers: zeros of the (piecewise affine) pre-activations, piece by piece
    for k in range(1, layout.num_layers - 1):
        left_open, right_open = math.isinf(lo), math.isinf(hi)
        if pts.size == 0 and left_open and right_open:
            # no kink anywhere before layer k means w_1 = 0: the whole network is constant
            break
        e = np.concatenate([[lo], pts, [hi]])
        # finite probe points replace infinite ends (any point of the unbounded piece will do)
        if left_open:
            e[0] = e[1] - max(1.0, abs(e[1]))
        if right_open:
            e[-1] = e[-2] + max(1.0, abs(e[-2]))
        z = _preactivations(params, e, k)
        new = _zeros_on_pieces(e, z, left_open, right_open)
        if new.size:
            pts = np.unique(np.concatenate([pts, inside(new)]))
    return np.concatenate([[lo], pts, [hi]])


# ---- nodes ----------------------------------------------------------------------------------------

def _target_degree(problem: "Problem", estimator: Quadrature) -> int | None:
    """The target's polynomial degree per piece, or None (not piecewise polynomial, ``exact=False``)."""
    target = problem.target
    degree = target.degree if target.native else None
    if degree is None and estimator.exact:
        raise ValueError(
            f"estimator: Quadrature() is exact only for piecewise-polynomial targets, and the target "
            f"{target!r} is not one; use Quadrature(exact=False) for a convergent approximation, or "
            f"MonteCarlo(n) / QuasiMonteCarlo(n)")
    return degree


def _density(dist, x: np.ndarray) -> np.ndarray:
    """Density of the 1-D input distribution at the points x (n,) (interior points of its pieces)."""
    if isinstance(dist, Uniform):
        return np.full(x.shape, 1.0 / (float(dist.high[0]) - float(dist.low[0])))
    if hasattr(dist, "pdf"):
        return np.asarray(dist.pdf(x), dtype=np.float64).reshape(x.shape)
    raise ValueError(f"input: Quadrature needs the density of {dist!r} (a Uniform or a "
                     f"dists.PiecewisePolynomial)")


def _fixed_1d(problem: "Problem", estimator: Quadrature) -> tuple[float, float, np.ndarray, int]:
    """What every network of a 1-D problem shares: ``(lo, hi, fixed, q)``.

    ``lo, hi``: the support of the input distribution; ``fixed`` (n,): the density's breaks and (for a
    piecewise-polynomial target) the target's breaks, sorted, distinct, inside ``[lo, hi]``; ``q``: the
    Gauss–Legendre points per piece (``estimator.order``, else just enough for the integrand's degree,
    else ``DEFAULT_ORDER_INEXACT`` for a target that is not piecewise polynomial).
    """
    dist = problem.input
    lo, hi = float(dist.low[0]), float(dist.high[0])
    degree = _target_degree(problem, estimator)
    parts = [np.asarray(dist.breaks(), dtype=np.float64)]
    if degree is not None:
        parts.append(np.asarray(problem.target.breaks(lo, hi), dtype=np.float64))
    fixed = np.unique(np.concatenate(parts))
    fixed = fixed[(fixed >= lo) & (fixed <= hi)]
    if estimator.order is not None:
        q = estimator.order
    elif degree is None:
        q = DEFAULT_ORDER_INEXACT
    else:
        integrand_degree = 2 * max(1, degree) + int(dist.degree)
        q = (integrand_degree + 2) // 2           # ceil((deg + 1) / 2): exact to degree 2q - 1
    return lo, hi, fixed, q


def _nodes_1d(problem: "Problem", theta, estimator: Quadrature, fixed=None) -> Nodes:
    """Nodes of one network theta (P,); ``fixed``: :func:`_fixed_1d`'s result when already computed."""
    dist = problem.input
    lo, hi, breaks, q = _fixed_1d(problem, estimator) if fixed is None else fixed
    grid = np.unique(np.concatenate([kink_partition(problem.layout, theta, lo, hi), breaks]))
    grid = grid[(grid >= lo) & (grid <= hi)]
    a, b = grid[:-1], grid[1:]
    keep = b > a                                  # drop empty pieces
    a, b = a[keep], b[keep]
    t, gw = np.polynomial.legendre.leggauss(q)
    half, mid = 0.5 * (b - a), 0.5 * (a + b)
    x = (mid[:, None] + half[:, None] * t[None, :]).reshape(-1)
    w = (half[:, None] * gw[None, :]).reshape(-1) * _density(dist, x)
    return Nodes(x[:, None], w)


def _native_1d_args(problem: "Problem") -> dict | None:
    """Keyword arguments describing ``problem``'s target and density to ``_core.quad1d_risk_and_grad``
    (the C++ partition path), or None when it cannot take them (a ``Function`` target, or a density
    other than ``dists.Uniform`` / ``dists.PiecewisePolynomial``): the per-network Python loop runs then.
    A 1-D ``Teacher`` is described by its widths and parameters (``target_kind="teacher"``)."""
    from .dists import PiecewisePolynomial as PPDensity  # noqa: PLC0415
    from .targets import Teacher, native_target_args  # noqa: PLC0415

    target, dist = problem.target, problem.input
    if isinstance(target, Teacher):
        if target.dim != 1 or target.out_dim != problem.out_dim:
            return None
        tgt = {"target_kind": "teacher", "teacher_widths": list(target.layout.widths),
               "teacher_theta": np.ascontiguousarray(target.theta, dtype=np.float64)}
    else:
        tgt = native_target_args(target)
        if tgt is None or getattr(target, "dim", 1) != 1:
            return None
    if isinstance(dist, Uniform):
        dst = {"dist_kind": "uniform", "low": np.ascontiguousarray(dist.low[:1], dtype=np.float64),
               "high": np.ascontiguousarray(dist.high[:1], dtype=np.float64)}
    elif isinstance(dist, PPDensity):
        dst = {"dist_kind": "piecewise_polynomial",
               "breaks": np.ascontiguousarray(dist.breaks(), dtype=np.float64),
               "anti": np.ascontiguousarray(dist.anti, dtype=np.float64),
               "cum": np.ascontiguousarray(dist.cum, dtype=np.float64),
               "density_coeffs": np.ascontiguousarray(dist.coeffs, dtype=np.float64)}
    else:
        return None
    return {**dst, **tgt}


def _native_1d_core():
    """``reluflow._core`` when it has the C++ 1-D partition path, else None."""
    try:
        from . import _core  # noqa: PLC0415
    except ImportError:
        return None
    return _core if hasattr(_core, "quad1d_risk_and_grad") else None


def native_partition_args(problem: "Problem", estimator: Quadrature, theta, backend: str, xp=np,
                          fixed=None) -> dict | None:
    """Keyword arguments of the C++ 1-D partition path (``_core.quad1d_risk_and_grad`` and the
    ``"quad1d"`` vector field of the C++ integrator loops), or None where the Python loop runs.

    It runs for 1-D problems on ``backend == "cpu"`` with a float32 / float64 numpy theta, a native or
    Teacher target, a Uniform or ``dists.PiecewisePolynomial`` density and ``order <= 256``.
    """
    if problem.dim != 1 or backend != "cpu" or xp is not np:
        return None
    if not (isinstance(theta, np.ndarray) and theta.dtype in (np.float32, np.float64)):
        return None
    core, args = _native_1d_core(), _native_1d_args(problem)
    if core is None or args is None:
        return None
    lo, hi, breaks, q = _fixed_1d(problem, estimator) if fixed is None else fixed
    if q > _NATIVE_MAX_ORDER:
        return None
    return {"lo": lo, "hi": hi, "fixed_breaks": np.ascontiguousarray(breaks, dtype=np.float64),
            "order": int(q), **args}


def _axis_rule(lo: float, hi: float, cells: int, order: int):
    """Composite Gauss–Legendre on [lo, hi]: nodes and weights (cells * order,), weights sum to hi - lo."""
    edges = np.linspace(lo, hi, cells + 1)
    edges[0], edges[-1] = lo, hi
    t, gw = np.polynomial.legendre.leggauss(order)
    half, mid = 0.5 * np.diff(edges), 0.5 * (edges[:-1] + edges[1:])
    return ((mid[:, None] + half[:, None] * t[None, :]).reshape(-1),
            (half[:, None] * gw[None, :]).reshape(-1))


def _nodes_tensor(problem: "Problem", estimator: Quadrature) -> Nodes:
    d, dist = problem.dim, problem.input
    _target_degree(problem, estimator)            # refuses Function unless exact=False
    if not isinstance(dist, Uniform):
        raise ValueError(f"input: Quadrature in d = {d} needs a Uniform box, got {dist!r}; use "
                         f"QuasiMonteCarlo(n)")
    cells = estimator.cells if estimator.cells is not None else DEFAULT_CELLS[d]
    order = estimator.order if estimator.order is not None else DEFAULT_ORDER_MULTI_D
    rules = [_axis_rule(float(dist.low[i]), float(dist.high[i]), cells, order) for i in range(d)]
    grids = np.meshgrid(*[r[0] for r in rules], indexing="ij")
    wgrids = np.meshgrid(*[r[1] for r in rules], indexing="ij")
    x = np.stack([g.reshape(-1) for g in grids], axis=1)
    w = np.prod(np.stack([g.reshape(-1) for g in wgrids], axis=1), axis=1)
    volume = float(np.prod(dist.high - dist.low))
    return Nodes(x, w / volume)


def _check_dim(problem: "Problem") -> None:
    if problem.dim > MAX_DIM:
        raise ValueError(
            f"estimator: Quadrature supports input dimension d <= {MAX_DIM} (a tensor grid grows as "
            f"(cells * order)^d), got d = {problem.dim}; use QuasiMonteCarlo(n) or MonteCarlo(n)")


def quadrature_nodes(problem: "Problem", theta, estimator: Quadrature) -> Nodes:
    """Quadrature nodes for one network.

    d = 1: Gauss–Legendre on every piece of the partition of [low, high] (the input distribution's
    support) by the network's kinks, the target's breaks and the density's breaks; weights include
    the density. Exact up to rounding for piecewise-polynomial targets and densities (``order``
    points per piece when given, else just enough for the integrand's degree).
    d = 2..4: composite tensor Gauss–Legendre on the uniform box (``theta`` is not used): convergent,
    not exact. d > 4: ValueError.

    ``exact=False`` matters only for targets that are not piecewise polynomial (``targets.Function``):
    their breaks are unknown, so the partition has only the network's kinks and the density's breaks,
    with ``order`` (default 8) points per piece; piecewise-polynomial targets stay exact either way.

    theta : (P,) parameters of the network (1-D only).
    """
    if not isinstance(estimator, Quadrature):
        raise TypeError(f"estimator: expected a Quadrature, got {type(estimator).__name__}")
    _check_dim(problem)
    if problem.dim == 1:
        return _nodes_1d(problem, theta, estimator)
    return _nodes_tensor(problem, estimator)


#: values of the estimator's ``method`` attribute (``Quadrature(method=...)``)
METHODS = ("auto", "sweep", "partition")


def quadrature_method(problem: "Problem", estimator: Quadrature, backend: str = "numpy", xp=np) -> str:
    """Which 1-D algorithm runs: ``"sweep"`` (exact O(H log H) sorted sweep of ``reluflow.sweep``,
    shallow 1-D nets only) or ``"partition"`` (Gauss–Legendre on the kink partition, any depth).

    ``getattr(estimator, "method", "auto")``:

    * ``"partition"``: always the partition path (the reference).
    * ``"sweep"``: the sweep; ValueError when the problem is not a shallow 1-D net with a supported
      target and density, or the C++ extension is missing.
    * ``"auto"``: the sweep when ``backend == "cpu"``, theta is a numpy array, the problem is supported,
      the extension imports and the estimator's ``order`` (if given) is at least the exact order (a
      smaller explicit order asks for the inexact partition rule, which only the partition path
      reproduces); otherwise the partition path. The ``numpy`` backend stays the plain reference.
    """
    from . import sweep  # noqa: PLC0415

    method = getattr(estimator, "method", "auto")
    if method not in METHODS:
        raise ValueError(f"estimator: method must be one of {METHODS}, got {method!r}")
    if method == "partition":
        return "partition"
    if method == "sweep":
        why = sweep.shallow1d_unsupported_reason(problem)
        if why is not None:
            raise ValueError(f"estimator: method='sweep': {why}; use method='partition' or 'auto'")
        if not sweep.core_available():
            raise ValueError("estimator: method='sweep' needs the C++ extension reluflow._core, which is "
                             "not importable here; use method='partition'")
        return "sweep"
    if backend != "cpu" or xp is not np or not sweep.shallow1d_applicable(problem):
        return "partition"
    order = getattr(estimator, "order", None)
    if order is not None and order < sweep.exact_order(problem):
        return "partition"
    return "sweep" if sweep.core_available() else "partition"


def quadrature_risk_and_grad(problem: "Problem", theta, estimator: Quadrature, want_grad: bool, xp=np,
                             backend: str = "numpy", kernel=None):
    """Risk and generalized gradient by quadrature: theta (K, P) -> risk (K,), grad (K, P) or None.

    float64 results in ``xp`` arrays. In 1-D every network has its own partition, so the kernel runs
    once per network on that network's nodes (exact up to rounding, see the module docstring; the
    gradient with the nodes held fixed is the exact gradient of the exact risk). For d = 2..4 all
    networks share one tensor grid (convergent, not exact); d > 4 raises ValueError.

    ``backend``: the resolved backend name. Shallow 1-D nets with supported targets and densities go
    through the exact O(H log H) sweep (``reluflow.sweep``, the same value to rounding) when the
    estimator's ``method`` asks for it, or is ``"auto"`` and ``backend == "cpu"``; see
    :func:`quadrature_method`. The ``"numpy"`` default keeps the partition path (the reference).
    Otherwise in 1-D, on ``backend == "cpu"`` with a float32 / float64 numpy theta, a native target
    (Affine, PiecewiseLinear, PiecewisePolynomial) and a Uniform or piecewise-polynomial
    density, the whole partition path runs in C++ (``_core.quad1d_risk_and_grad``: the kinks, nodes and
    target values of each network, then the fused dense kernel; OpenMP over networks, the results
    independent of the thread count), the same nodes as the Python loop to rounding; ``kernel`` is not
    used there. Other 1-D cases run the per-network Python loop.
    ``kernel``: the dense ``kernel(layout, theta, x, w, y, want_grad)`` fed with the nodes (default:
    the reference in ``xp``).
    """
    if kernel is None:
        kernel = lambda lay, th, x, w, y, g: reference.risk_and_grad(lay, th, x, w, y, g, xp)  # noqa: E731
    _check_dim(problem)
    if quadrature_method(problem, estimator, backend, xp) == "sweep":
        from .sweep import exact_shallow1d  # noqa: PLC0415

        risk, grad = exact_shallow1d(problem, theta, estimator)
        return xp.asarray(risk), (xp.asarray(grad) if want_grad else None)
    layout = problem.layout
    if problem.dim > 1:
        nodes = _nodes_tensor(problem, estimator)
        y = problem.target_values(nodes)
        return kernel(layout, theta, xp.asarray(nodes.x), xp.asarray(nodes.w), xp.asarray(y), want_grad)
    fixed = _fixed_1d(problem, estimator)
    native = native_partition_args(problem, estimator, theta, backend, xp, fixed)
    if native is not None:
        # the whole per-network pipeline (kinks, nodes, target, dense kernel) in C++, parallel over
        # networks; the same partition and nodes as below to rounding
        return _native_1d_core().quad1d_risk_and_grad(list(layout.widths), np.ascontiguousarray(theta),
                                                      want_grad=bool(want_grad), **native)
    theta_host = _to_numpy(theta)
    risks, grads = [], []
    for k in range(theta_host.shape[0]):
        nodes = _nodes_1d(problem, theta_host[k], estimator, fixed)
        y = problem.target_values(nodes)
        # the nodes are fixed while differentiating: the boundary terms of the moving kinks cancel
        # because the integrand is continuous across a kink, so this is the exact gradient
        r, g = kernel(layout, theta[k:k + 1], xp.asarray(nodes.x), xp.asarray(nodes.w), xp.asarray(y),
                      want_grad)
        risks.append(r)
        grads.append(g)
    risk = xp.concatenate(risks)
    grad = xp.concatenate(grads) if want_grad else None
    return risk, grad
