"""The C++ CPU backend: thin marshalling around ``reluflow._core`` (fused OpenMP/SIMD kernels).

Same signatures as :mod:`reluflow.backends.reference` minus ``xp``. float32 theta is passed to the
kernels as float32 (computed in float32 inside a tile, summed in float64 across tiles); results are
float64, deterministic (bitwise the same for any number of threads).
"""
from __future__ import annotations

import numpy as np

from ..layout import Layout


def _core():
    from .. import _core  # noqa: PLC0415

    return _core


def _theta(theta) -> np.ndarray:
    theta = np.asarray(theta)
    if theta.dtype not in (np.float32, np.float64):
        theta = theta.astype(np.float64)
    return np.ascontiguousarray(theta)


def _x(layout: Layout, x) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim == 1 and layout.widths[0] == 1:
        x = x.reshape(-1, 1)
    return x


def realization(layout: Layout, theta, x, kernel: str = "auto"):
    """N_theta(x) for every network: theta (K, P), x (N, d) -> (K, N, out), float64."""
    return _core().realization(list(layout.widths), _theta(theta), _x(layout, x), kernel)


def risk_and_grad(layout: Layout, theta, x, w, y, want_grad: bool = True, kernel: str = "auto"):
    """Weighted risk ``sum_j w_j |N(x_j) - y_j|^2`` (K,) and its generalized gradient (K, P), float64.

    theta (K, P) float32 or float64; x (N, d); w (N,); y (N, out). The gradient is None when
    ``want_grad`` is False. ``kernel``: "auto", "shallow", "deep" or "scalar" (for cross-checks).
    """
    x = _x(layout, x)
    w = np.ascontiguousarray(w, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    if y.ndim == 1 and layout.widths[-1] == 1:
        y = y.reshape(-1, 1)
    risk, grad = _core().risk_and_grad(list(layout.widths), _theta(theta), x, w, y, bool(want_grad), kernel)
    return risk, grad
