"""The reference backend: plain array code (numpy, or cupy as ``xp``), the judge of the others.

Deliberately simple: forward through all layers for a chunk of nodes, residual, backward, gradient
accumulation. Chunked over nodes so that memory stays bounded (at most ``_CHUNK_ELEMS`` activations
per layer at once), computed in float64 whatever the input dtype.
"""
from __future__ import annotations

import numpy as np

from ..layout import Layout

_CHUNK_ELEMS = 1 << 21  # K * chunk * width elements per activation array


def _chunk_size(layout: Layout, K: int, N: int) -> int:
    return max(1, min(N, _CHUNK_ELEMS // max(1, K * max(layout.widths))))


def _forward(params, x, xp):
    """Activations of a chunk: x (n, d) -> (list of pre-activations z_k (K, n, l_k), output (K, n, out))."""
    W1, b1 = params[0]
    z = xp.matmul(x, xp.swapaxes(W1, 1, 2)) + b1[:, None, :]  # (n,d)@(K,d,l) -> (K,n,l)
    zs = [z]
    for W, b in params[1:]:
        a = xp.maximum(z, 0.0)
        z = xp.matmul(a, xp.swapaxes(W, 1, 2)) + b[:, None, :]
        zs.append(z)
    return zs


def realization(layout: Layout, theta, x, xp=np):
    """N_theta(x) for every network: theta (K, P), x (N, d) -> (K, N, out), float64."""
    theta = xp.asarray(theta, dtype=xp.float64)
    x = xp.asarray(x, dtype=xp.float64)
    params = layout.unpack(theta)
    K, N = theta.shape[0], x.shape[0]
    out = xp.empty((K, N, layout.widths[-1]), dtype=xp.float64)
    step = _chunk_size(layout, K, N)
    for s in range(0, N, step):
        out[:, s:s + step] = _forward(params, x[s:s + step], xp)[-1]
    return out


def risk_and_grad(layout: Layout, theta, x, w, y, want_grad: bool = True, xp=np):
    """Weighted risk ``sum_j w_j |N(x_j) - y_j|^2`` and its generalized gradient (relu'(0) = 0).

    Parameters
    ----------
    theta : (K, P); x : (N, d); w : (N,); y : (N, out) target values at the nodes.

    Returns
    -------
    risk (K,) float64, grad (K, P) float64 (None when ``want_grad`` is False).
    """
    theta = xp.asarray(theta, dtype=xp.float64)
    x, w, y = (xp.asarray(a, dtype=xp.float64) for a in (x, w, y))
    params = layout.unpack(theta)
    K, N = theta.shape[0], x.shape[0]
    risk = xp.zeros(K, dtype=xp.float64)
    grad = xp.zeros_like(theta) if want_grad else None
    grads = layout.unpack(grad) if want_grad else None
    step = _chunk_size(layout, K, N)
    for s in range(0, N, step):
        xc, wc, yc = x[s:s + step], w[s:s + step], y[s:s + step]
        zs = _forward(params, xc, xp)
        r = zs[-1] - yc[None]                                  # residual (K, n, out)
        risk += xp.einsum("n,kno->k", wc, r * r)
        if not want_grad:
            continue
        delta = 2.0 * wc[None, :, None] * r                    # d risk / d output
        for k in range(layout.num_layers - 1, -1, -1):
            a_prev = xc if k == 0 else xp.maximum(zs[k - 1], 0.0)  # (n,d) broadcasts over K
            gW, gb = grads[k]
            gW += xp.matmul(xp.swapaxes(delta, 1, 2), a_prev)
            gb += delta.sum(axis=1)
            if k > 0:
                # generalized gradient: relu'(z) = 1 if z > 0 else 0, compared with '>'
                delta = xp.matmul(delta, params[k][0]) * (zs[k - 1] > 0)
    return risk, grad
