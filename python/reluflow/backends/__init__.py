"""The backends: each evaluates a ``Plan`` (``reluflow.plan``) for a batch of networks.

* :mod:`.reference` — array-API code on numpy, CuPy or any other namespace ``xp`` (theta's): the judge
  of the others;
* :mod:`.cpu` — the C++ extension ``reluflow._core`` (OpenMP/SIMD kernels and integrator loops);
* :mod:`.cuda` — the CUDA extension ``reluflow._cuda`` (the fused dense kernel on CuPy arrays).

Every backend module offers ``evaluate(plan, spec, theta, step, want_grad) -> (risk, grad)`` (float64)
and ``realization(layout, theta, x)``; the ``cpu`` backend also runs the integrator loops.
"""
from __future__ import annotations

from ..registry import BACKEND_NAMES, BackendInfo, backends, resolve
from . import cpu, cuda, reference

__all__ = ["BackendInfo", "backends", "resolve", "BACKEND_NAMES", "get"]


def get(plan):
    """The backend module that evaluates ``plan``: the C++ one for the cpu backend and for the routes
    only C++ has (``Quadrature(method="sweep")`` asked on another backend), the CUDA one for the cuda
    backend (its sweeps too), else the reference (with ``xp`` theta's array-API namespace: numpy, CuPy,
    array-api-strict, ...)."""
    if plan.route == "gaussian_closed_form":
        return reference                     # numpy closed form on every backend (results in theta's namespace)
    if plan.backend == "cpu":
        return cpu
    if plan.route in ("exact_sweep", "point_sweep"):   # the cpu's, and the cuda backend's own
        return cuda if plan.backend == "cuda" else cpu
    return cuda if plan.backend == "cuda" else reference
