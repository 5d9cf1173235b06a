"""Target functions f of the risk ``∫ |N(x) - f(x)|^2 mu(dx)`` (SPEC §5).

Every target maps points ``x`` of shape ``(N, d)`` to values of shape ``(N, out)`` (float64).
1-D piecewise targets also report their ``breaks`` and polynomial ``degree``, which the exact
quadrature uses to build its partition.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ._validate import as_coefficient_rows, as_float_array, as_int, strictly_increasing
from .geometry import kink_partition, realization
from .layout import Layout

__all__ = ["Target", "Affine", "PiecewiseLinear", "PiecewisePolynomial", "Teacher", "Function"]


class Target:
    """Base class. ``dim``: input dimension (None = any), ``out_dim``: output dimension."""

    dim: int | None = None
    out_dim: int = 1
    degree: int | None = None  # polynomial degree on each piece (None: not piecewise polynomial)
    native: bool = True        # evaluated inside the kernels (all but Function)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """f(x): x (N, d) -> (N, out) float64."""
        raise NotImplementedError

    def breaks(self, lo: float = -np.inf, hi: float = np.inf) -> np.ndarray:
        """Points strictly inside the 1-D interval (lo, hi) where f is not polynomial, increasing
        (empty for smooth targets)."""
        return np.empty(0)


def _check_x(x: np.ndarray, dim: int | None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        raise ValueError(f"x: expected an (N, {dim if dim is not None else 'd'}) array, got shape {x.shape}")
    return x


class Affine(Target):
    """f(x) = A x + b.

    Parameters
    ----------
    A : (out, d) or (d,) array (a 1-D A means out = 1).
    b : scalar or (out,) array, default 0.
    """

    def __init__(self, A: Sequence | np.ndarray, b: float | Sequence | np.ndarray = 0.0):
        A = as_float_array(A, "A", ndim=(0, 1, 2))
        if A.ndim == 0:
            A = A.reshape(1, 1)
        elif A.ndim == 1:
            A = A[None, :]
        b = as_float_array(b, "b", ndim=(0, 1))
        b = np.broadcast_to(b, (A.shape[0],)).copy() if b.ndim == 0 else b
        if b.shape != (A.shape[0],):
            raise ValueError(f"b: expected a scalar or a length-{A.shape[0]} array (rows of A), got shape {b.shape}")
        self.A, self.b = A, b
        self.dim, self.out_dim, self.degree = A.shape[1], A.shape[0], 1

    def __call__(self, x):
        x = _check_x(x, self.dim)
        return x @ self.A.T + self.b

    def __repr__(self) -> str:
        return f"Affine(A={self.A.tolist()}, b={self.b.tolist()})"


class PiecewisePolynomial(Target):
    """1-D piecewise polynomial: on ``[breaks[i], breaks[i+1]]``,
    ``f(x) = sum_p coeffs[i, p] * (x - breaks[i])**p`` (local powers, increasing degree).

    Parameters
    ----------
    breaks : (m+1,) strictly increasing.
    coeffs : (m, deg+1) for a scalar output, or (m, deg+1, out); a ragged list of rows (pieces of
        different degree) is padded with zeros.

    Left of ``breaks[0]`` the first piece's polynomial is used, right of ``breaks[-1]`` the last's.
    """

    def __init__(self, breaks: Sequence | np.ndarray, coeffs: Sequence | np.ndarray):
        breaks = as_float_array(breaks, "breaks", ndim=1)
        strictly_increasing(breaks, "breaks")
        coeffs = as_coefficient_rows(coeffs, "coeffs", ndim=(2, 3))
        if coeffs.shape[1] < 1:
            raise ValueError(f"coeffs: expected at least one coefficient per piece, got shape {coeffs.shape}")
        if coeffs.shape[0] != breaks.size - 1:
            raise ValueError(f"coeffs: expected one row per piece ({breaks.size - 1} pieces for "
                             f"{breaks.size} breaks), got shape {coeffs.shape}")
        if coeffs.ndim == 2:
            coeffs = coeffs[:, :, None]
        self._breaks, self.coeffs = breaks, coeffs
        self.dim, self.out_dim, self.degree = 1, coeffs.shape[2], coeffs.shape[1] - 1

    def piece_index(self, t: np.ndarray) -> np.ndarray:
        """Index of the piece holding each point of t (N,), clipped to the end pieces."""
        return np.clip(np.searchsorted(self._breaks, t, side="right") - 1, 0, self.coeffs.shape[0] - 1)

    def __call__(self, x):
        t = _check_x(x, 1)[:, 0]
        i = self.piece_index(t)
        s = (t - self._breaks[i])[:, None]
        c = self.coeffs[i]  # (N, deg+1, out)
        val = c[:, -1, :].copy()
        for p in range(self.degree - 1, -1, -1):  # Horner
            val = val * s + c[:, p, :]
        return val

    def breaks(self, lo=-np.inf, hi=np.inf):
        b = self._breaks
        return b[(b > lo) & (b < hi)].copy()

    def __repr__(self) -> str:
        return f"PiecewisePolynomial(breaks={self._breaks.tolist()}, degree={self.degree}, out={self.out_dim})"


class PiecewiseLinear(PiecewisePolynomial):
    """Continuous 1-D piecewise-linear interpolant of ``values`` at ``knots`` (constant outside).

    Parameters
    ----------
    knots : (m,) strictly increasing, m >= 2.
    values : (m,) or (m, out).
    """

    def __init__(self, knots: Sequence | np.ndarray, values: Sequence | np.ndarray):
        knots = as_float_array(knots, "knots", ndim=1)
        strictly_increasing(knots, "knots")
        values = as_float_array(values, "values", ndim=(1, 2))
        if values.shape[0] != knots.size:
            raise ValueError(f"values: expected one value per knot ({knots.size}), got shape {values.shape}")
        if values.ndim == 1:
            values = values[:, None]
        slopes = np.diff(values, axis=0) / np.diff(knots)[:, None]
        # constant pieces on (-inf, k_0] and [k_{m-1}, inf) are encoded as two extra pieces
        breaks = np.concatenate([[knots[0] - 1.0], knots, [knots[-1] + 1.0]])
        coeffs = np.zeros((knots.size + 1, 2, values.shape[1]))
        coeffs[0, 0] = values[0]
        coeffs[1:-1, 0] = values[:-1]
        coeffs[1:-1, 1] = slopes
        coeffs[-1, 0] = values[-1]
        super().__init__(breaks, coeffs)
        self.knots, self.values = knots, values

    def breaks(self, lo=-np.inf, hi=np.inf):
        k = self.knots
        return k[(k > lo) & (k < hi)].copy()

    def __repr__(self) -> str:
        return f"PiecewiseLinear(knots={self.knots.tolist()}, values={self.values.squeeze(-1).tolist()})"


class Teacher(Target):
    """A ReLU network as target: ``widths`` as in ``Problem`` and one flat parameter vector ``theta (P,)``."""

    def __init__(self, widths: Sequence[int], theta: Sequence | np.ndarray):
        self.layout = Layout(widths, name="widths")
        theta = as_float_array(theta, "theta", ndim=(1, 2))
        if theta.ndim == 2:
            if theta.shape[0] != 1:
                raise ValueError(f"theta: expected one network (P,) for a Teacher, got shape {theta.shape}")
            theta = theta[0]
        if theta.size != self.layout.num_params:
            raise ValueError(f"theta: expected {self.layout.num_params} parameters for widths "
                             f"{self.layout.widths}, got {theta.size}")
        self.theta = theta
        self.dim, self.out_dim = self.layout.widths[0], self.layout.widths[-1]
        self.degree = 1 if self.dim == 1 else None

    def __call__(self, x):
        x = _check_x(x, self.dim)
        return realization(self.layout, self.theta[None, :], x)[0]

    def breaks(self, lo=-np.inf, hi=np.inf):
        """The teacher's own kinks strictly inside (lo, hi) (1-D): found layer by layer like the
        network's (``geometry.kink_partition``; infinite lo/hi are allowed)."""
        if self.dim != 1:
            return np.empty(0)
        return kink_partition(self.layout, self.theta, lo, hi)[1:-1]

    def __repr__(self) -> str:
        return f"Teacher(widths={self.layout.widths})"


class Function(Target):
    """Any vectorized callable ``fn(x (N, d)) -> (N,) or (N, out)``.

    Evaluated in Python on each set of nodes (one call per step), so it works with Monte-Carlo, QMC
    and ``Points``; ``Quadrature`` refuses it unless built with ``exact=False``.
    """

    native = False

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], out_dim: int | None = None):
        if not callable(fn):
            raise TypeError(f"fn: expected a callable taking x (N, d), got {type(fn).__name__}")
        self.fn = fn
        self.out_dim = 1 if out_dim is None else as_int(out_dim, "out_dim", minimum=1)

    def __call__(self, x):
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(self.fn(x), dtype=np.float64)
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2 or y.shape[0] != x.shape[0]:
            raise ValueError(f"target: fn returned shape {y.shape} for {x.shape[0]} points; expected "
                             f"({x.shape[0]},) or ({x.shape[0]}, out)")
        if not np.all(np.isfinite(y)):
            raise ValueError("target: fn returned NaN or inf")
        return y

    def __repr__(self) -> str:
        return f"Function({getattr(self.fn, '__name__', self.fn)!r})"
