"""Input distributions mu (SPEC §5, §8): a uniform box, 1-D piecewise-polynomial densities and the
normal distribution.

Each maps uniforms ``u (n, d)`` in (0, 1) (from Philox or Sobol) to samples ``x (n, d)`` with the same
elementary float64 operations as the C++ samplers, so both give bitwise the same nodes.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._normal import normal_quantile
from ._validate import as_coefficient_rows, as_float_array, as_int, strictly_increasing

__all__ = ["Distribution", "Uniform", "PiecewisePolynomial", "Gaussian"]

_BISECTION_STEPS = 64  # the inverse CDF's bisection halves the piece 64 times: below one ulp


class Distribution:
    """Base class: ``dim``, ``low`` (d,), ``high`` (d,), ``from_uniform(u) -> x``."""

    dim: int | None = None
    degree: int = 0  # polynomial degree of the density on each piece

    def bind(self, dim: int) -> "Distribution":
        """This distribution in dimension ``dim`` (checks compatibility)."""
        raise NotImplementedError

    def from_uniform(self, u: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def breaks(self) -> np.ndarray:
        return np.empty(0)

    def typical_box(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` (d,): a box holding the distribution's typical points, for probes and plots:
        the support of a bounded distribution (``low``, ``high``); mean -/+ 4 standard deviations
        for the Gaussian."""
        return np.asarray(self.low, dtype=np.float64), np.asarray(self.high, dtype=np.float64)


def _check_side(low: np.ndarray, high: np.ndarray) -> None:
    """The box's sides ``high - low`` must be finite: the sampler computes ``low + (high - low) u``."""
    with np.errstate(over="ignore"):
        side = np.asarray(high, dtype=np.float64) - np.asarray(low, dtype=np.float64)
    if not np.all(np.isfinite(side)):
        raise ValueError(f"high: the box's side high - low overflows (low={np.asarray(low).tolist()}, "
                         f"high={np.asarray(high).tolist()}); use a box whose sides are below 1.8e308")


class Uniform(Distribution):
    """Uniform distribution on the box ``[low, high]`` (scalars, or length-d arrays).

    ``dim`` defaults to the length of ``low``/``high``, or to the problem's input dimension when both
    are scalars. Sampling: ``x = low + (high - low) * u``.
    """

    def __init__(self, low: float | Sequence[float] = 0.0, high: float | Sequence[float] = 1.0,
                 dim: int | None = None):
        low = as_float_array(low, "low", ndim=(0, 1))
        high = as_float_array(high, "high", ndim=(0, 1))
        if dim is not None:
            dim = as_int(dim, "dim", minimum=1)
        sizes = {a.size for a in (low, high) if a.ndim == 1}
        if len(sizes) > 1:
            raise ValueError(f"low, high: expected arrays of the same length, got {low.shape} and {high.shape}")
        if sizes:
            n = sizes.pop()
            if dim is not None and dim != n:
                raise ValueError(f"dim: expected {n} (the length of low/high), got {dim}")
            dim = n
        self._low, self._high, self.dim = low, high, dim
        if dim is not None:
            self._set_dim(dim)
        elif not np.all(high > low):  # scalars: the box is checked now, not when a Problem binds it
            raise ValueError(f"high: expected high > low, got low={low.tolist()}, high={high.tolist()}")
        else:
            _check_side(low, high)

    def _set_dim(self, dim: int) -> None:
        self.low = np.broadcast_to(self._low, (dim,)).astype(np.float64)
        self.high = np.broadcast_to(self._high, (dim,)).astype(np.float64)
        if not np.all(self.high > self.low):
            raise ValueError(f"high: expected high > low in every coordinate, got low={self.low.tolist()}, "
                             f"high={self.high.tolist()}")
        _check_side(self.low, self.high)
        self.dim = dim

    def bind(self, dim: int) -> "Uniform":
        if self.dim is not None:
            if self.dim != dim:
                raise ValueError(f"input: Uniform box has dimension {self.dim}, but widths[0] = {dim}")
            return self
        return Uniform(self._low, self._high, dim)

    def from_uniform(self, u):
        return self.low + (self.high - self.low) * u

    def breaks(self):
        return np.array([self.low[0], self.high[0]]) if self.dim == 1 else np.empty(0)

    def density_coeffs(self):
        """1-D only: (breaks, coeffs) of the density as a piecewise polynomial (local powers)."""
        return np.array([self.low[0], self.high[0]]), np.array([[1.0 / (self.high[0] - self.low[0])]])

    def __repr__(self) -> str:
        if self.dim is None:
            return f"Uniform({self._low.tolist()}, {self._high.tolist()})"
        return f"Uniform(low={self.low.tolist()}, high={self.high.tolist()})"


def _poly_min_on(c: np.ndarray, h: float) -> float:
    """Minimum of sum_p c[p] t^p over t in [0, h]."""
    cand = [0.0, h]
    if c.size > 2:
        dc = np.arange(1, c.size) * c[1:]
        dc = np.trim_zeros(dc, "b")
        if dc.size > 1:
            for r in np.roots(dc[::-1]):
                if abs(r.imag) < 1e-12 and 0.0 < r.real < h:
                    cand.append(float(r.real))
    return min(float(np.polynomial.polynomial.polyval(t, c)) for t in cand)


class PiecewisePolynomial(Distribution):
    """1-D density, piecewise polynomial: on ``[breaks[i], breaks[i+1]]`` proportional to
    ``sum_p coeffs[i, p] * (x - breaks[i])**p``; normalized to mass 1; zero outside the breaks.

    Parameters
    ----------
    breaks : (m+1,) strictly increasing.
    coeffs : (m, deg+1), the density must be non-negative (checked) with positive total mass; a ragged
        list of rows (pieces of different degree) is padded with zeros.

    Sampling is by exact inverse CDF: the piece is chosen from the cumulative masses, the point in it
    by 64 bisection steps on the piece's CDF polynomial (no transcendental functions, so the C++
    sampler reproduces it bitwise).
    """

    dim = 1

    def __init__(self, breaks: Sequence[float] | np.ndarray, coeffs: Sequence | np.ndarray):
        breaks = as_float_array(breaks, "breaks", ndim=1)
        strictly_increasing(breaks, "breaks")
        coeffs = as_coefficient_rows(coeffs, "coeffs", ndim=(1, 2))
        if coeffs.ndim == 1:
            coeffs = coeffs[:, None]
        if coeffs.shape[1] < 1:
            raise ValueError(f"coeffs: expected at least one coefficient per piece, got shape {coeffs.shape}")
        if coeffs.shape[0] != breaks.size - 1:
            raise ValueError(f"coeffs: expected one row per piece ({breaks.size - 1} pieces), got shape {coeffs.shape}")
        h = np.diff(breaks)
        scale = np.max(np.abs(coeffs)) if coeffs.size else 0.0
        for i in range(coeffs.shape[0]):
            if _poly_min_on(coeffs[i], h[i]) < -1e-12 * max(scale, 1e-300):
                raise ValueError(f"coeffs: the density must be non-negative; piece {i} "
                                 f"[{breaks[i]}, {breaks[i + 1]}] takes negative values")
        p = np.arange(coeffs.shape[1])
        # antiderivative coefficients of each piece, in powers t^1 .. t^(deg+1)
        anti = coeffs / (p + 1)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below
            masses = np.array([np.sum(anti[i] * h[i] ** (p + 1)) for i in range(coeffs.shape[0])])
        total = masses.sum()
        if not np.isfinite(total):
            raise ValueError(f"coeffs: the density's total mass overflows ({total}); rescale the "
                             f"coefficients or the breaks (the density is normalized to mass 1 anyway)")
        if not total > 0:
            raise ValueError("coeffs: the density must have positive total mass")
        self._breaks = breaks
        self.coeffs = coeffs / total
        self.anti = anti / total                      # (m, deg+1): CDF_i(t) = sum_p anti[i,p] t^(p+1)
        self.cum = np.concatenate([[0.0], np.cumsum(masses / total)])  # (m+1,)
        self.degree = coeffs.shape[1] - 1
        self.low, self.high = breaks[:1].copy(), breaks[-1:].copy()

    def bind(self, dim: int) -> "PiecewisePolynomial":
        if dim != 1:
            raise ValueError(f"input: PiecewisePolynomial is a 1-D density, but widths[0] = {dim}")
        return self

    def piece_cdf(self, i: np.ndarray, t: np.ndarray) -> np.ndarray:
        """CDF of piece i at local coordinate t (mass below breaks[i] excluded), Horner, no FMA."""
        a = self.anti[i]
        val = a[:, -1]
        for p in range(self.degree - 1, -1, -1):
            val = val * t + a[:, p]
        return val * t

    def from_uniform(self, u):
        u = np.asarray(u, dtype=np.float64)[:, 0]
        m = self.coeffs.shape[0]
        i = np.clip(np.searchsorted(self.cum, u, side="right") - 1, 0, m - 1)
        target = u - self.cum[i]
        lo = np.zeros_like(u)
        hi = self._breaks[i + 1] - self._breaks[i]
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            below = self.piece_cdf(i, mid) < target
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return (self._breaks[i] + 0.5 * (lo + hi))[:, None]

    def breaks(self):
        return self._breaks.copy()

    def density_coeffs(self):
        return self._breaks.copy(), self.coeffs.copy()

    def pdf(self, x: np.ndarray) -> np.ndarray:
        """Density at points x (N,) or (N, 1): (N,)."""
        t = np.asarray(x, dtype=np.float64).reshape(-1)
        i = np.clip(np.searchsorted(self._breaks, t, side="right") - 1, 0, self.coeffs.shape[0] - 1)
        s = t - self._breaks[i]
        c = self.coeffs[i]
        val = c[:, -1]
        for p in range(self.degree - 1, -1, -1):
            val = val * s + c[:, p]
        inside = (t >= self._breaks[0]) & (t <= self._breaks[-1])
        return np.where(inside, val, 0.0)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Cumulative distribution function at x: (N,)."""
        t = np.asarray(x, dtype=np.float64).reshape(-1)
        tc = np.clip(t, self._breaks[0], self._breaks[-1])
        i = np.clip(np.searchsorted(self._breaks, tc, side="right") - 1, 0, self.coeffs.shape[0] - 1)
        return self.cum[i] + self.piece_cdf(i, tc - self._breaks[i])

    def __repr__(self) -> str:
        return f"dists.PiecewisePolynomial(breaks={self._breaks.tolist()}, degree={self.degree})"


def _as_covariance(cov: np.ndarray) -> np.ndarray:
    """A full (d, d) covariance: symmetric (to 1e-12 of its largest entry, then symmetrized) and
    positive definite, else a ValueError naming ``cov``."""
    if cov.shape[0] != cov.shape[1]:
        raise ValueError(f"cov: expected a square (d, d) matrix, got shape {cov.shape}")
    scale = float(np.max(np.abs(cov))) if cov.size else 0.0
    if not np.all(np.abs(cov - cov.T) <= 1e-12 * scale):
        raise ValueError("cov: expected a symmetric matrix, got one with cov[i, j] != cov[j, i]")
    return 0.5 * (cov + cov.T)


class Gaussian(Distribution):
    """Normal distribution N(mean, cov) on R^d (SPEC §8).

    Parameters
    ----------
    mean : scalar (the same in every coordinate) or (d,).
    cov : scalar (variance, isotropic), (d,) (diagonal variances) or (d, d) (full, symmetric positive
        definite; checked).
    dim : d; defaults to the length of ``mean``/``cov``, or to the problem's input dimension when both
        are scalars (as for ``Uniform``).

    Attributes: ``mean (d,)``, ``cov (d, d)``, ``chol (d, d)`` the lower Cholesky factor L (cov = L L^T),
    computed once here and passed as data to the C++ samplers; ``low``/``high`` (d,) are -inf/+inf (the
    support is all of R^d, so ``Quadrature``, which needs a box or a 1-D density, refuses it).

    Sampling (MonteCarlo and QuasiMonteCarlo alike): ``z_i = Phi^{-1}(u_i)`` per coordinate by Wichura's
    AS 241 with a portable logarithm (``reluflow._normal``; relative error about 1e-15, at most a few
    ulp), then ``x_k = mean_k + (((0 + L_k0 z_0) + L_k1 z_1) + ... + L_kk z_k)`` in that order,
    skipping the zero entries of L. The C++ samplers (``cpp/include/reluflow/dists.h``) repeat the same
    float64 operations, so numpy and C++ give bitwise the same nodes. Uniforms lie strictly inside
    (0, 1) (Philox: ``(k + 1/2) 2^-52``, Sobol: ``(k + 1/2) 2^-32``), so every z is finite: at most
    8.21 in absolute value for Philox, 6.34 for Sobol.
    """

    def __init__(self, mean: float | Sequence[float] = 0.0, cov: float | Sequence | np.ndarray = 1.0,
                 dim: int | None = None):
        mean = as_float_array(mean, "mean", ndim=(0, 1))
        cov = as_float_array(cov, "cov", ndim=(0, 1, 2))
        if dim is not None:
            dim = as_int(dim, "dim", minimum=1)
        sizes = {}
        if mean.ndim == 1:
            sizes["mean"] = mean.size
        if cov.ndim >= 1:
            if cov.ndim == 2 and cov.shape[0] != cov.shape[1]:
                raise ValueError(f"cov: expected a square (d, d) matrix, got shape {cov.shape}")
            sizes["cov"] = cov.shape[0]
        if len(set(sizes.values())) > 1:
            raise ValueError(f"mean, cov: expected the same dimension, got mean of shape {mean.shape} and "
                             f"cov of shape {cov.shape}")
        if sizes:
            n = next(iter(sizes.values()))
            name = next(iter(sizes))
            if n < 1:
                raise ValueError(f"{name}: expected at least one coordinate, got shape "
                                 f"{(mean if name == 'mean' else cov).shape}")
            if dim is not None and dim != n:
                raise ValueError(f"dim: expected {n} (the length of {' and '.join(sizes)}), got {dim}")
            dim = n
        if cov.ndim < 2 and not np.all(cov > 0):
            raise ValueError(f"cov: expected positive variances, got {cov.tolist()}")
        if cov.ndim == 2:
            cov = _as_covariance(cov)
        self._mean, self._cov, self.dim = mean, cov, dim
        if dim is not None:
            self._set_dim(dim)

    def _set_dim(self, dim: int) -> None:
        self.mean = np.array(np.broadcast_to(self._mean, (dim,)), dtype=np.float64)
        if self._cov.ndim == 2:
            self.cov = self._cov.copy()
            try:
                chol = np.linalg.cholesky(self.cov)
            except np.linalg.LinAlgError:
                chol = None
            if chol is None or not (np.all(np.isfinite(chol)) and np.all(np.diag(chol) > 0)):
                raise ValueError("cov: expected a symmetric positive definite matrix (its Cholesky "
                                 "factorization failed: cov is singular or indefinite)")
            self.chol = np.tril(chol)
        else:
            var = np.array(np.broadcast_to(self._cov, (dim,)), dtype=np.float64)
            self.cov = np.diag(var)
            self.chol = np.diag(np.sqrt(var))
        if not np.all(np.isfinite(self.chol)):
            raise ValueError(f"cov: expected finite variances, got {self._cov.tolist()}")
        self.low = np.full(dim, -np.inf)
        self.high = np.full(dim, np.inf)
        self.dim = dim

    def bind(self, dim: int) -> "Gaussian":
        if self.dim is not None:
            if self.dim != dim:
                raise ValueError(f"input: Gaussian has dimension {self.dim}, but widths[0] = {dim}")
            return self
        return Gaussian(self._mean, self._cov, dim)

    def from_uniform(self, u):
        """Nodes x (n, d) of uniforms u (n, d) in (0, 1): ``mean + L Phi^{-1}(u)`` (see the class)."""
        z = normal_quantile(np.asarray(u, dtype=np.float64))
        acc = np.zeros(z.shape)
        L = self.chol
        for i in range(self.dim):
            rows = i + np.flatnonzero(L[i:, i] != 0.0)      # row k >= i uses z_i where L[k, i] != 0
            if rows.size:
                acc[:, rows] = acc[:, rows] + z[:, i:i + 1] * L[rows, i]
        return self.mean + acc

    def typical_box(self):
        sd = np.sqrt(np.diag(self.cov))
        return self.mean - 4.0 * sd, self.mean + 4.0 * sd

    def __repr__(self) -> str:
        if self.dim is None:
            return f"Gaussian(mean={self._mean.tolist()}, cov={self._cov.tolist()})"
        cov = self.cov
        if np.array_equal(cov, np.diag(np.diag(cov))):
            var = np.diag(cov)
            cov_text = var[0].item() if np.all(var == var[0]) else var.tolist()
        else:
            cov_text = cov.tolist()
        mean_text = self.mean[0].item() if np.all(self.mean == self.mean[0]) else self.mean.tolist()
        return f"Gaussian(mean={mean_text}, cov={cov_text}, dim={self.dim})"
