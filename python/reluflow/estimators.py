"""Estimators turn the integral risk into weighted nodes ``(x_j, w_j)`` (SPEC §3).

``nodes(problem, step)`` returns a :class:`Nodes`; a new estimator only has to produce nodes, the
kernels never know where they came from. ``Quadrature`` nodes depend on the network (its kinks), so
they are produced per network by ``reluflow.quadrature``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _philox, _sobol
from ._validate import as_float_array, as_int, as_points

if TYPE_CHECKING:  # pragma: no cover
    from .spec import ProblemSpec

__all__ = ["Nodes", "Estimator", "Points", "MonteCarlo", "QuasiMonteCarlo", "Quadrature", "Exact"]


@dataclass
class Nodes:
    """Weighted nodes: ``x (N, d)``, ``w (N,)`` (float64), and data ``y (N, out)`` or None (evaluate f).

    ``zero`` (N, l_1 + ... + l_{L-1}) bool or None: hidden pre-activations that vanish identically
    around each node (the 1-D quadrature of a degenerate network; ``geometry.vanishing_on_pieces``)."""

    x: np.ndarray
    w: np.ndarray
    y: np.ndarray | None = None
    zero: np.ndarray | None = None


class Estimator:
    """Base class of the risk estimators."""

    #: True when the nodes change from step to step (SGD); the integrators read it.
    stochastic: bool = False

    def nodes(self, problem: "ProblemSpec", step: int = 0) -> Nodes:
        raise NotImplementedError


class Points(Estimator):
    """Explicit nodes.

    Parameters
    ----------
    x : (N, d) points (a 1-D array is N points in 1-D).
    weights : (N,) non-negative weights, default 1/N each.
    y : (N,) or (N, out) data: an empirical data set, the target is then not evaluated.
    """

    def __init__(self, x: Any, weights: Any = None, y: Any = None):
        x = as_float_array(x, "x", ndim=(1, 2))
        self.x = x[:, None] if x.ndim == 1 else x
        n = self.x.shape[0]
        if n < 1:
            raise ValueError("x: expected at least one point")
        if weights is None:
            self.weights = np.full(n, 1.0 / n)
        else:
            self.weights = as_float_array(weights, "weights", ndim=1)
            if self.weights.shape != (n,):
                raise ValueError(f"weights: expected shape ({n},) (one weight per point), got {self.weights.shape}")
            if np.any(self.weights < 0):
                raise ValueError("weights: expected non-negative weights")
            if not self.weights.sum() > 0:
                raise ValueError("weights: expected a positive total weight, got all zeros")
        if y is None:
            self.y = None
        else:
            y = as_float_array(y, "y", ndim=(1, 2))
            self.y = y[:, None] if y.ndim == 1 else y
            if self.y.shape[0] != n:
                raise ValueError(f"y: expected one row per point ({n}), got shape {y.shape}")

    def nodes(self, problem, step=0):
        x = as_points(self.x, problem.dim, "x")
        if self.y is not None and self.y.shape[1] != problem.out_dim:
            raise ValueError(f"y: expected {problem.out_dim} output column(s) (widths[-1]), got shape {self.y.shape}")
        return Nodes(x, self.weights, self.y)

    def __repr__(self) -> str:
        return f"Points(N={self.x.shape[0]}, d={self.x.shape[1]}, data={'yes' if self.y is not None else 'no'})"


class MonteCarlo(Estimator):
    """``n`` i.i.d. samples of the input distribution, weights ``1/n``.

    Parameters
    ----------
    n : number of samples per step.
    seed : Philox key; samples are addressed by (seed, stream, step, sample index).
    resample : True draws fresh samples at every integration step (SGD); False keeps the samples of
        step 0 (the empirical risk of one fixed sample).
    """

    def __init__(self, n: int, seed: int = 0, resample: bool = True):
        self.n = as_int(n, "n", minimum=1)
        self.seed = as_int(seed, "seed", minimum=0)
        if self.seed >= 2**64:
            raise ValueError(f"seed: expected an integer below 2**64, got {seed}")
        if not isinstance(resample, (bool, np.bool_)):
            raise TypeError(f"resample: expected True or False, got {resample!r}")
        self.resample = bool(resample)
        self.stochastic = self.resample

    def uniforms(self, dim: int, step: int = 0) -> np.ndarray:
        """The (n, dim) Philox uniforms of ``step`` (step 0 when ``resample`` is False)."""
        return _philox.uniforms(self.seed, _philox.STREAM_MONTE_CARLO, step if self.resample else 0,
                                0, self.n, dim)

    def nodes(self, problem, step=0):
        x = problem.input.from_uniform(self.uniforms(problem.dim, as_int(step, "step", minimum=0)))
        return Nodes(x, np.full(self.n, 1.0 / self.n))

    def __repr__(self) -> str:
        return f"MonteCarlo(n={self.n}, seed={self.seed}, resample={self.resample})"


class QuasiMonteCarlo(Estimator):
    """``n`` scrambled Sobol points mapped through the input distribution, weights ``1/n``.

    reluflow's own Sobol generator (Joe–Kuo direction numbers, random linear matrix scrambling and a
    digital shift drawn from Philox with ``seed``), computed per point index so that the C++ and CUDA
    samplers give bitwise the same points. Powers of two give the balanced nets.
    """

    def __init__(self, n: int, seed: int = 0):
        self.n = as_int(n, "n", minimum=1)
        self.seed = as_int(seed, "seed", minimum=0)
        if self.seed >= 2**64:
            raise ValueError(f"seed: expected an integer below 2**64, got {seed}")

    def uniforms(self, dim: int) -> np.ndarray:
        return _sobol.sobol_uniforms(self.n, dim, self.seed)

    def nodes(self, problem, step=0):
        x = problem.input.from_uniform(self.uniforms(problem.dim))
        return Nodes(x, np.full(self.n, 1.0 / self.n))

    def __repr__(self) -> str:
        return f"QuasiMonteCarlo(n={self.n}, seed={self.seed})"


class Quadrature(Estimator):
    """Deterministic quadrature of the risk integral.

    In 1-D, **exact up to rounding** for piecewise-polynomial targets and densities: Gauss–Legendre
    nodes on every piece of the partition formed by the kinks of every hidden neuron of each network,
    the target's breaks and the density's breaks, with enough points for the polynomial degree
    (``order`` points per piece; default: just enough). For d >= 2 (up to 4): composite tensor
    Gauss–Legendre with ``order`` points per axis on ``cells`` cells per axis: convergent, not exact.

    Parameters
    ----------
    order : points per piece (1-D) or per cell axis (d >= 2); default: exact degree (1-D), 4 (d >= 2).
    cells : cells per axis for d >= 2 (default 16, 8, 4 for d = 2, 3, 4); ignored in 1-D.
    exact : False allows targets that are not piecewise polynomial (``targets.Function``); the result
        is then a convergent approximation, not exact.
    method : "auto" (default), "sweep" or "partition". For shallow 1-D nets ``[1, H, out]`` with
        piecewise-polynomial targets and densities, "sweep" computes the same exact value in
        O(H log H) from the sorted kinks and prefix sums of moments (C++); "partition" feeds
        Gauss–Legendre nodes on every piece to the dense kernel. "auto" takes the sweep on the
        ``cpu`` backend where it applies; the ``numpy`` backend keeps the partition path (reference).
    """

    def __init__(self, order: int | None = None, cells: int | None = None, exact: bool = True,
                 method: str = "auto"):
        self.order = None if order is None else as_int(order, "order", minimum=1)
        self.cells = None if cells is None else as_int(cells, "cells", minimum=1)
        if not isinstance(exact, (bool, np.bool_)):
            raise TypeError(f"exact: expected True or False, got {exact!r}")
        self.exact = bool(exact)
        if method not in ("auto", "sweep", "partition"):
            raise ValueError(f"method: expected 'auto', 'sweep' or 'partition', got {method!r}")
        self.method = method

    def __repr__(self) -> str:
        return f"Quadrature(order={self.order}, cells={self.cells}, exact={self.exact}, method={self.method!r})"


class Exact(Estimator):
    """The population risk itself, in closed form where one exists (SPEC §8); no nodes, no sampling error.

    * Shallow nets ``[d, H, out]`` under Gaussian input (``dists.Gaussian``) with an ``Affine`` or a
      shallow ``Teacher`` target (biases included): risk, gradient and Hessian from bivariate normal
      integrals (``reluflow.gaussian_exact``), exact to rounding.
    * Any other 1-D problem with a piecewise-polynomial target and density: the exact 1-D quadrature
      (the same as ``Quadrature()``).
    * Refused elsewhere (d >= 2 with a uniform box, deep nets under Gaussian input, a ``Function``
      target), with a ValueError saying why.

    ``prob.explain(rf.Exact())`` says which of these runs.
    """

    def nodes(self, problem, step=0):
        raise ValueError("estimator: Exact() has no nodes: it evaluates the risk in closed form "
                         "(prob.risk_and_grad(theta, rf.Exact())); use MonteCarlo or QuasiMonteCarlo for samples")

    def __repr__(self) -> str:
        return "Exact()"
