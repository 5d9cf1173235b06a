"""Thin bridge from the input distributions to the C++ samplers (``cpp/include/reluflow/dists.h``).

``_core.mc_nodes`` / ``_core.qmc_nodes`` apply the same float64 operations in the same order as
``Distribution.from_uniform``, so

* ``mc_nodes(dist, seed, step, n)`` is bitwise
  ``dist.from_uniform(_philox.uniforms(seed, STREAM_MONTE_CARLO, step, 0, n, dist.dim))``,
* ``qmc_nodes(dist, seed, n)`` is bitwise ``dist.from_uniform(_sobol.sobol_uniforms(n, dist.dim, seed))``,
* ``from_uniform(dist, u)`` is bitwise ``dist.from_uniform(u)`` for any uniforms ``u (n, d)``

(tested in tests/test_samplers.py). The arrays come from the distribution's ``DensitySpec``.
"""
from __future__ import annotations

import numpy as np

from . import dists as _dists
from .registry import core
from .spec import DensitySpec

__all__ = ["native_dist_args", "from_uniform", "mc_nodes", "qmc_nodes", "mc_nodes_of", "qmc_nodes_of"]


def _core():
    core_, why = core()
    if core_ is None:  # pragma: no cover
        raise ImportError(why)
    return core_


def native_dist_args(dist: _dists.Distribution) -> dict:
    """The ``spec`` dict describing ``dist`` to the C++ samplers (``DensitySpec.native()``):
    ``{"density_kind": "uniform", "low", "high", ...}`` or ``{"density_kind": "piecewise_polynomial",
    "density_breaks", "density_anti", "density_cum", ...}``."""
    return DensitySpec.of(dist).native()


def from_uniform(dist: _dists.Distribution, u: np.ndarray) -> np.ndarray:
    """``dist.from_uniform(u)`` computed by C++: u (n, d) uniforms -> nodes (n, d)."""
    return _core().dist_from_uniform(np.ascontiguousarray(u, dtype=np.float64), spec=native_dist_args(dist))


def mc_nodes_of(density: DensitySpec, seed: int, step: int, n: int) -> np.ndarray:
    """Monte-Carlo nodes (n, d) of ``step`` (Philox stream 2, sample indices 0..n-1), from C++."""
    return _core().mc_nodes(int(seed), int(step), int(n), spec=density.native())


def qmc_nodes_of(density: DensitySpec, seed: int, n: int) -> np.ndarray:
    """Scrambled-Sobol nodes (n, d) of ``seed``, from C++."""
    return _core().qmc_nodes(int(n), int(seed), spec=density.native())


def mc_nodes(dist: _dists.Distribution, seed: int, step: int, n: int) -> np.ndarray:
    """:func:`mc_nodes_of` for a distribution object."""
    return mc_nodes_of(DensitySpec.of(dist), seed, step, n)


def qmc_nodes(dist: _dists.Distribution, seed: int, n: int) -> np.ndarray:
    """:func:`qmc_nodes_of` for a distribution object."""
    return qmc_nodes_of(DensitySpec.of(dist), seed, n)
