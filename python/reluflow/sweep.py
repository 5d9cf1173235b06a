"""Fast paths for shallow 1-D networks ``[1, H, out]`` (SPEC §3): sweeps over the sorted kinks.

Network ``N(x) = V relu(w x + b) + c`` with parameters ``(w_1..w_H, b_1..b_H, V (out x H), c)``.
Between consecutive kinks ``-b_i / w_i`` it is affine, so one left-to-right sweep over the sorted kinks
gives it piece by piece (crossing neuron i's kink adds or removes ``V_i (w_i x + b_i)``), and since
each neuron is active on a half-line, every gradient component is a prefix (or suffix) sum of two
moments of the weighted residual. The loops are C++ (``reluflow._core.shallow1d_exact`` and
``shallow1d_points``, OpenMP over networks, deterministic).

* :func:`exact_shallow1d`: the exact quadrature risk and gradient for piecewise-polynomial targets
  (``targets.Affine`` / ``PiecewiseLinear`` / ``PiecewisePolynomial``) and densities (``dists.Uniform``
  / ``dists.PiecewisePolynomial``), O(H log H) per network instead of the O(H^2) of Gauss–Legendre on
  the kink partition with the dense kernel. Same value as ``reluflow.quadrature`` to rounding.
* :func:`points_shallow1d`: any weighted 1-D point set (Points, MonteCarlo, QuasiMonteCarlo nodes),
  O((N + H) log(N + H)) per network instead of O(N H); same value as the dense kernel to rounding,
  with the same relu'(0) = 0 convention (a node where ``w_i x_j + b_i`` rounds to 0 is inactive).

Both compute in float64 whatever theta's dtype and return float64 numpy arrays (the caller casts).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import dists, targets

if TYPE_CHECKING:  # pragma: no cover
    from .problem import Problem

__all__ = ["shallow1d_applicable", "shallow1d_unsupported_reason", "exact_shallow1d", "points_shallow1d",
           "core_available"]


def _core():
    from . import _core  # noqa: PLC0415

    return _core


def core_available() -> bool:
    """True when the C++ extension (``reluflow._core``) with the sweeps is importable."""
    try:
        core = _core()
    except ImportError:
        return False
    return hasattr(core, "shallow1d_exact") and hasattr(core, "shallow1d_points")


def _host_f64(a) -> np.ndarray:
    if not isinstance(a, np.ndarray) and hasattr(a, "get"):  # cupy
        a = a.get()
    return np.ascontiguousarray(a, dtype=np.float64)


def _is_shallow_1d(problem: "Problem") -> bool:
    return len(problem.widths) == 3 and problem.widths[0] == 1


def shallow1d_unsupported_reason(problem: "Problem") -> str | None:
    """None when the exact sweep applies to ``problem``, else why not (for error messages)."""
    if not _is_shallow_1d(problem):
        return f"the exact sweep needs a shallow 1-D network [1, H, out], got widths {list(problem.widths)}"
    t = problem.target
    if not isinstance(t, (targets.Affine, targets.PiecewisePolynomial)):
        return (f"the exact sweep needs an Affine, PiecewiseLinear or PiecewisePolynomial target, got "
                f"{type(t).__name__}")
    if isinstance(t, targets.Affine) and t.dim != 1:
        return f"the exact sweep needs a 1-D Affine target, got input dimension {t.dim}"
    d = problem.input
    if not isinstance(d, (dists.Uniform, dists.PiecewisePolynomial)):
        return f"the exact sweep needs a dists.Uniform or dists.PiecewisePolynomial input, got {type(d).__name__}"
    return None


def shallow1d_applicable(problem: "Problem") -> bool:
    """True when :func:`exact_shallow1d` computes ``problem``'s exact quadrature risk: a shallow 1-D
    net ``[1, H, out]``, an Affine / PiecewiseLinear / PiecewisePolynomial target and a Uniform or
    piecewise-polynomial input density. (A ``Teacher`` target falls back to the general path.)"""
    return shallow1d_unsupported_reason(problem) is None


def _support(problem: "Problem") -> tuple[float, float]:
    d = problem.input
    return float(d.low[0]), float(d.high[0])


def target_pieces(problem: "Problem") -> tuple[np.ndarray, np.ndarray]:
    """(breaks (m+1,), coeffs (m, deg+1, out)) of the target in local powers; the end pieces extend
    beyond the breaks."""
    t = problem.target
    if isinstance(t, targets.PiecewisePolynomial):  # PiecewiseLinear too
        return _host_f64(t._breaks), _host_f64(t.coeffs)
    if isinstance(t, targets.Affine):
        lo, hi = _support(problem)
        A = np.asarray(t.A, dtype=np.float64)[:, 0]          # (out,)
        b = np.asarray(t.b, dtype=np.float64)
        coeffs = np.empty((1, 2, A.size))
        coeffs[0, 0] = A * lo + b                             # local powers about lo
        coeffs[0, 1] = A
        return np.array([lo, hi]), coeffs
    raise ValueError(f"target: {shallow1d_unsupported_reason(problem)}")


def density_pieces(problem: "Problem") -> tuple[np.ndarray, np.ndarray]:
    """(breaks (q+1,), coeffs (q, dd+1)) of the input density in local powers (mass 1)."""
    d = problem.input
    if isinstance(d, (dists.Uniform, dists.PiecewisePolynomial)):
        br, co = d.density_coeffs()
        return _host_f64(br), _host_f64(np.atleast_2d(co))
    raise ValueError(f"input: {shallow1d_unsupported_reason(problem)}")


def exact_order(problem: "Problem") -> int:
    """Gauss–Legendre points per piece that make the partition path exact for ``problem``."""
    deg = int(problem.target.degree)
    return (2 * max(1, deg) + int(problem.input.degree) + 2) // 2


def exact_shallow1d(problem: "Problem", theta, estimator=None) -> tuple[np.ndarray, np.ndarray]:
    """Exact quadrature risk ``∫ |N - f|^2 rho`` (K,) and generalized gradient (K, P) of shallow 1-D nets.

    theta : (K, P) (or (P,)) float32 / float64, numpy or cupy; computed in float64.
    estimator : the ``Quadrature`` asking (unused: the sweep is exact whatever its ``order``).

    Returns float64 numpy arrays. Raises ValueError when the problem is not supported
    (see :func:`shallow1d_unsupported_reason`).
    """
    why = shallow1d_unsupported_reason(problem)
    if why is not None:
        raise ValueError(f"problem: {why}")
    th = _host_f64(theta)
    if th.ndim == 1:
        th = th[None, :]
    lo, hi = _support(problem)
    tb, tc = target_pieces(problem)
    db, dc = density_pieces(problem)
    return _core().shallow1d_exact(th, problem.out_dim, lo, hi, tb, tc, db, dc)


def points_shallow1d(problem: "Problem", theta, x, w, y) -> tuple[np.ndarray, np.ndarray]:
    """Weighted risk ``sum_j w_j |N(x_j) - y_j|^2`` (K,) and its generalized gradient (K, P) of
    shallow 1-D nets by one sweep over sorted nodes and kinks.

    theta : (K, P) float32 / float64; x : (N,) or (N, 1) nodes; w : (N,) weights; y : (N, out) target
    values at the nodes (or (N,) for out = 1). Returns float64 numpy arrays.
    """
    if not _is_shallow_1d(problem):
        raise ValueError(f"problem: the point sweep needs a shallow 1-D network [1, H, out], got widths "
                         f"{list(problem.widths)}")
    th = _host_f64(theta)
    if th.ndim == 1:
        th = th[None, :]
    x = _host_f64(x)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    return _core().shallow1d_points(th, problem.out_dim, x, _host_f64(w), _host_f64(y))
