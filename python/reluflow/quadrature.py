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

This module makes the nodes (the estimator's job); which path evaluates them is the planner's
choice (``reluflow.plan``): the numpy backend runs this partition path network by network (the
reference); the ``cpu`` backend runs the same formulas in C++ (``_core.quad1d_risk_and_grad``), and
for shallow 1-D nets ``[1, H, out]`` with piecewise-polynomial targets and densities an O(H log H)
sweep over the sorted kinks (``reluflow.backends.cpu``): the same exact value to rounding.

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

import numpy as np

from .estimators import Nodes, Quadrature
from .geometry import forward, kink_partition, vanishing_on_pieces
from .spec import ProblemSpec

__all__ = ["kink_partition", "quadrature_nodes", "fixed_1d", "partition_grid", "kink_hessian_terms", "nodes_1d", "nodes_tensor", "check_dim", "check_quadrature_input",
           "target_degree", "DEFAULT_CELLS", "DEFAULT_ORDER_MULTI_D", "DEFAULT_ORDER_INEXACT", "MAX_DIM"]

#: default cells per axis of the composite tensor rule, by input dimension
DEFAULT_CELLS = {2: 16, 3: 8, 4: 4}
#: default Gauss–Legendre points per axis and cell for d >= 2
DEFAULT_ORDER_MULTI_D = 4
#: default points per piece in 1-D when the target is not piecewise polynomial (``exact=False``)
DEFAULT_ORDER_INEXACT = 8
#: largest input dimension the tensor rule accepts
MAX_DIM = 4


# ---- nodes ----------------------------------------------------------------------------------------

def target_degree(spec: ProblemSpec, estimator: Quadrature) -> int | None:
    """The target's polynomial degree per piece, or None (not piecewise polynomial, ``exact=False``)."""
    degree = spec.target_spec.degree
    if degree is None and estimator.exact:
        raise ValueError(
            f"estimator: Quadrature() is exact only for piecewise-polynomial targets, and the target "
            f"{spec.target!r} is not one; use Quadrature(exact=False) for a convergent approximation, or "
            f"MonteCarlo(n) / QuasiMonteCarlo(n)")
    return degree


def _density(spec: ProblemSpec, x: np.ndarray) -> np.ndarray:
    """Density of the 1-D input distribution at the points x (n,) (interior points of its pieces)."""
    if spec.density.kind == "uniform":
        lo, hi = spec.support
        return np.full(x.shape, 1.0 / (hi - lo))
    return np.asarray(spec.input.pdf(x), dtype=np.float64).reshape(x.shape)


def _gauss_legendre_on(a: np.ndarray, b: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre with q points on every interval [a_i, b_i]: nodes and weights (m * q,)."""
    t, gw = np.polynomial.legendre.leggauss(q)
    half, mid = 0.5 * (b - a), 0.5 * (a + b)
    return ((mid[:, None] + half[:, None] * t[None, :]).reshape(-1),
            (half[:, None] * gw[None, :]).reshape(-1))


def fixed_1d(spec: ProblemSpec, estimator: Quadrature) -> tuple[float, float, np.ndarray, int]:
    """What every network of a 1-D problem shares: ``(lo, hi, fixed, q)``.

    ``lo, hi``: the support of the input distribution; ``fixed`` (n,): the density's breaks and (for a
    piecewise-polynomial target) the target's breaks, sorted, distinct, inside ``[lo, hi]``; ``q``: the
    Gauss–Legendre points per piece (``estimator.order``, else just enough for the integrand's degree,
    else ``DEFAULT_ORDER_INEXACT`` for a target that is not piecewise polynomial).
    """
    lo, hi = spec.support
    degree = target_degree(spec, estimator)
    parts = [np.asarray(spec.input.breaks(), dtype=np.float64)]
    if degree is not None:
        parts.append(np.asarray(spec.target.breaks(lo, hi), dtype=np.float64))
    fixed = np.unique(np.concatenate(parts))
    fixed = fixed[(fixed >= lo) & (fixed <= hi)]
    if estimator.order is not None:
        q = estimator.order
    elif degree is None:
        q = DEFAULT_ORDER_INEXACT
    else:
        q = spec.exact_order()                    # exact to degree 2q - 1
    return lo, hi, fixed, q


def partition_grid(spec: ProblemSpec, theta, fixed) -> np.ndarray:
    """The pieces of one network theta (P,): its kinks merged with the fixed breaks (``fixed_1d``'s
    result), sorted, distinct, inside [lo, hi], ends included."""
    lo, hi, breaks, _q = fixed
    grid = np.unique(np.concatenate([kink_partition(spec.layout, theta, lo, hi), breaks]))
    return grid[(grid >= lo) & (grid <= hi)]


def kink_hessian_terms(spec: ProblemSpec, theta, fixed) -> tuple[np.ndarray, np.ndarray]:
    """The Hessian terms of the kinks that move with theta, for the exact 1-D quadrature risk.

    R = int |N - f|^2 rho; its gradient integrates g . dN/dtheta (g = 2 (N - f) rho), and dN/dtheta
    jumps where a hidden neuron n switches, at a zero x* of its pre-activation z_n (a kink). The kink
    moves with theta (dx*/dtheta = -u / z_n'(x*), u = dz_n/dtheta at x*) and the jump there is
    delta_n u (delta_n = d(g . N)/d a_n at x*), so differentiating the integral over the moving pieces
    adds, for every kink, the symmetric rank-one term ``c u u^T`` with c = delta_n(x*) / |z_n'(x*)|
    (the same for either crossing direction). A kink lying on a fixed break, or on another kink, is
    not differentiable in general; the generic case is assumed there.

    Parameters
    ----------
    theta : (P,) one network, float64; fixed : ``fixed_1d``'s result.

    Returns
    -------
    c (m,), U (m, P): the Hessian of the risk is the fixed-pattern Hessian of the quadrature's weighted
    sum plus ``U.T @ (c[:, None] * U)``.
    """
    lay = spec.layout
    theta = np.asarray(theta, dtype=np.float64).reshape(-1)
    params = [(W[0], b[0]) for W, b in lay.unpack(theta[None])]
    L = lay.num_layers
    grid = partition_grid(spec, theta, fixed)
    e = grid[1:-1]                                         # interior break points (finite)
    if e.size == 0:
        return np.zeros(0), np.zeros((0, lay.num_params))
    # activity on every piece, from a point inside it (probes stand in for unbounded end pieces)
    mids = 0.5 * (grid[:-1] + grid[1:])
    if np.isinf(grid[0]):
        mids[0] = grid[1] - max(1.0, abs(grid[1]))
    if np.isinf(grid[-1]):
        mids[-1] = grid[-2] + max(1.0, abs(grid[-2]))
    z_mid = forward([(W[None], b[None]) for W, b in params], mids[:, None])
    # forward at the kinks, the x-tangents dz/dx, and d(g . N)/d a_k by backpropagation
    zs = forward([(W[None], b[None]) for W, b in params], e[:, None])
    zs = [z[0] for z in zs]                                # (m, l_k)
    acts = [e[:, None]] + [np.maximum(z, 0.0) for z in zs[:-1]]
    dz = [np.broadcast_to(params[0][0][:, 0], zs[0].shape)]
    for k in range(1, L - 1):
        dz.append((dz[-1] * (zs[k - 1] > 0)) @ params[k][0].T)
    f = np.asarray(spec.target(e[:, None]), dtype=np.float64).reshape(e.size, -1)
    rho = _density(spec, e)
    delta = 2.0 * (zs[-1] - f) * rho[:, None]             # d(g . N)/dN: g = 2 (N - f) rho
    d_act = [None] * (L - 1)                               # d(g . N)/d a_k (m, l_k), k = 1..L-1
    for k in range(L - 1, 0, -1):
        d_act[k - 1] = delta @ params[k][0]
        delta = d_act[k - 1] * (zs[k - 1] > 0)
    cs, us = [], []
    for k in range(L - 1):                                 # hidden layer k + 1
        flips = (z_mid[k][0, :-1] > 0) != (z_mid[k][0, 1:] > 0)     # (m, l): neuron switches at e_i
        for i, n in zip(*np.nonzero(flips)):
            slope = abs(dz[k][i, n])
            if slope == 0.0:
                continue
            u = np.zeros(lay.num_params)
            grads = lay.unpack(u[None])                    # views into u
            seed = np.zeros(zs[k].shape[1])
            seed[n] = 1.0                                  # dz_n / d(layer k+1 parameters) and below
            for j in range(k, -1, -1):
                gW, gb = grads[j]
                gW[0] += np.outer(seed, acts[j][i])
                gb[0] += seed
                if j > 0:
                    seed = (seed @ params[j][0]) * (zs[j - 1][i] > 0)
            cs.append(d_act[k][i, n] / slope)
            us.append(u)
    if not cs:
        return np.zeros(0), np.zeros((0, lay.num_params))
    return np.asarray(cs), np.stack(us)


def nodes_1d(spec: ProblemSpec, theta, estimator: Quadrature, fixed=None) -> Nodes:
    """Nodes of one network theta (P,); ``fixed``: :func:`fixed_1d`'s result when already computed."""
    lo, hi, breaks, q = fixed_1d(spec, estimator) if fixed is None else fixed
    grid = partition_grid(spec, theta, (lo, hi, breaks, q))
    a, b = grid[:-1], grid[1:]
    keep = b > a                                  # drop empty pieces
    x, w = _gauss_legendre_on(a[keep], b[keep], q)
    vanish = vanishing_on_pieces(spec.layout, theta, grid)[keep]
    zero = np.repeat(vanish, q, axis=0) if vanish.any() else None
    return Nodes(x[:, None], w * _density(spec, x), zero=zero)


def _axis_rule(lo: float, hi: float, cells: int, order: int):
    """Composite Gauss–Legendre on [lo, hi]: nodes and weights (cells * order,), weights sum to hi - lo."""
    edges = np.linspace(lo, hi, cells + 1)
    edges[0], edges[-1] = lo, hi
    return _gauss_legendre_on(edges[:-1], edges[1:], order)


def nodes_tensor(spec: ProblemSpec, estimator: Quadrature) -> Nodes:
    """The composite tensor Gauss–Legendre nodes of d = 2..4 (the same for every network)."""
    d = spec.dim
    target_degree(spec, estimator)                # refuses Function unless exact=False
    if spec.density.kind != "uniform":
        raise ValueError(f"input: Quadrature in d = {d} needs a Uniform box, got {spec.input!r}; use "
                         f"QuasiMonteCarlo(n)")
    low, high = spec.density.low, spec.density.high
    cells = estimator.cells if estimator.cells is not None else DEFAULT_CELLS[d]
    order = estimator.order if estimator.order is not None else DEFAULT_ORDER_MULTI_D
    rules = [_axis_rule(float(low[i]), float(high[i]), cells, order) for i in range(d)]
    grids = np.meshgrid(*[r[0] for r in rules], indexing="ij")
    wgrids = np.meshgrid(*[r[1] for r in rules], indexing="ij")
    x = np.stack([g.reshape(-1) for g in grids], axis=1)
    w = np.prod(np.stack([g.reshape(-1) for g in wgrids], axis=1), axis=1)
    volume = float(np.prod(high - low))
    return Nodes(x, w / volume)


def check_quadrature_input(spec: ProblemSpec) -> None:
    """Quadrature needs a bounded input distribution (a box, or a 1-D piecewise-polynomial density) and
    d <= MAX_DIM; ValueError naming ``estimator`` otherwise."""
    if spec.density.kind == "gaussian":
        raise ValueError(
            f"estimator: Quadrature integrates over a box or a 1-D piecewise-polynomial density, and the "
            f"input {spec.input!r} is unbounded; use MonteCarlo(n) or QuasiMonteCarlo(n) (or rf.Exact(), "
            f"the closed form for shallow nets under Gaussian input, where available)")
    check_dim(spec)


def check_dim(spec: ProblemSpec) -> None:
    """Quadrature takes d <= MAX_DIM; ValueError otherwise."""
    if spec.dim > MAX_DIM:
        raise ValueError(
            f"estimator: Quadrature supports input dimension d <= {MAX_DIM} (a tensor grid grows as "
            f"(cells * order)^d), got d = {spec.dim}; use QuasiMonteCarlo(n) or MonteCarlo(n)")


def quadrature_nodes(problem, theta, estimator: Quadrature) -> Nodes:
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

    problem : a ``Problem`` or its ``ProblemSpec``; theta : (P,) parameters of the network (1-D only).
    """
    if not isinstance(estimator, Quadrature):
        raise TypeError(f"estimator: expected a Quadrature, got {type(estimator).__name__}")
    spec = getattr(problem, "spec", problem)
    check_quadrature_input(spec)
    if spec.dim == 1:
        return nodes_1d(spec, theta, estimator)
    return nodes_tensor(spec, estimator)
