"""The backends: each evaluates a ``Plan`` (``reluflow.plan``) for a batch of networks.

* :mod:`.reference` — array-API code on numpy, CuPy or any other namespace ``xp`` (theta's): the judge
  of the others;
* :mod:`.cpu` — the C++ extension ``reluflow._core`` (OpenMP/SIMD kernels and integrator loops);
* ``cuda`` — the CUDA extension (kernels not yet wired: the registry says so).

Every backend module offers ``evaluate(plan, spec, theta, step, want_grad) -> (risk, grad)`` (float64)
and ``realization(layout, theta, x)``; the ``cpu`` backend also runs the integrator loops.
"""
from __future__ import annotations

from ..registry import BACKEND_NAMES, BackendInfo, backends, resolve
from . import cpu, reference

__all__ = ["BackendInfo", "backends", "resolve", "BACKEND_NAMES", "get"]


def get(plan):
    """The backend module that evaluates ``plan``: the C++ one for the cpu backend and for the routes
    only C++ has (``Quadrature(method="sweep")`` asked on another backend), else the reference (with
    ``xp`` theta's array-API namespace: numpy, CuPy, array-api-strict, ...)."""
    return cpu if plan.backend == "cpu" or plan.route in ("exact_sweep", "point_sweep") else reference
