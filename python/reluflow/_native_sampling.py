"""Thin bridge from the Python input distributions (``reluflow.dists``) to the C++ samplers.

``_core.mc_nodes`` / ``_core.qmc_nodes`` (``cpp/include/reluflow/dists.h``) apply the same float64
operations in the same order as ``Distribution.from_uniform``, so

* ``mc_nodes(dist, seed, step, n)`` is bitwise
  ``dist.from_uniform(_philox.uniforms(seed, STREAM_MONTE_CARLO, step, 0, n, dist.dim))``,
* ``qmc_nodes(dist, seed, n)`` is bitwise ``dist.from_uniform(_sobol.sobol_uniforms(n, dist.dim, seed))``,
* ``from_uniform(dist, u)`` is bitwise ``dist.from_uniform(u)`` for any uniforms ``u (n, d)``

(tested in tests/test_samplers.py).
"""
from __future__ import annotations

import numpy as np

from . import dists as _dists

__all__ = ["native_dist_args", "from_uniform", "mc_nodes", "qmc_nodes"]


def _core():
    from . import _core as core  # imported lazily: the numpy backend works without the extension

    return core


def native_dist_args(dist: _dists.Distribution) -> dict:
    """The keyword arguments describing ``dist`` to ``_core.mc_nodes`` / ``_core.qmc_nodes``.

    ``{"kind": "uniform", "low": (d,), "high": (d,)}`` for a bound :class:`dists.Uniform`, or
    ``{"kind": "piecewise_polynomial", "breaks": (m+1,), "anti": (m, deg+1), "cum": (m+1,)}`` (the
    normalized arrays the numpy sampler uses) for :class:`dists.PiecewisePolynomial`.
    """
    if isinstance(dist, _dists.Uniform):
        if dist.dim is None:
            raise ValueError("dist: the Uniform box has no dimension yet; bind it (dist.bind(d)) or give "
                             "low/high arrays")
        return {"kind": "uniform",
                "low": np.ascontiguousarray(dist.low, dtype=np.float64),
                "high": np.ascontiguousarray(dist.high, dtype=np.float64)}
    if isinstance(dist, _dists.PiecewisePolynomial):
        return {"kind": "piecewise_polynomial",
                "breaks": np.ascontiguousarray(dist.breaks(), dtype=np.float64),
                "anti": np.ascontiguousarray(dist.anti, dtype=np.float64),
                "cum": np.ascontiguousarray(dist.cum, dtype=np.float64)}
    raise TypeError(f"dist: the C++ samplers know dists.Uniform and dists.PiecewisePolynomial, "
                    f"got {type(dist).__name__}")


def from_uniform(dist: _dists.Distribution, u: np.ndarray) -> np.ndarray:
    """``dist.from_uniform(u)`` computed by C++: u (n, d) uniforms -> nodes (n, d)."""
    return _core().dist_from_uniform(np.ascontiguousarray(u, dtype=np.float64), **native_dist_args(dist))


def mc_nodes(dist: _dists.Distribution, seed: int, step: int, n: int) -> np.ndarray:
    """Monte-Carlo nodes (n, d) of ``step`` (Philox stream 2, sample indices 0..n-1), from C++."""
    return _core().mc_nodes(int(seed), int(step), int(n), **native_dist_args(dist))


def qmc_nodes(dist: _dists.Distribution, seed: int, n: int) -> np.ndarray:
    """Scrambled-Sobol nodes (n, d) of ``seed``, from C++."""
    return _core().qmc_nodes(int(n), int(seed), **native_dist_args(dist))
