"""Geometry of ReLU networks, in plain array code: the forward pass, neuron norms and the kinks of a
1-D network (SPEC §1, §3). The numpy reference of what ``cpp/include/reluflow/net.h`` and
``kinks1d.h`` compute; ``xp`` is numpy or any array-API namespace (cupy).
"""
from __future__ import annotations

import math

import numpy as np

from ._arrays import NUMPY_XP, to_host
from .layout import Layout

__all__ = ["forward", "realization", "neuron_norms", "kink_partition", "vanishing_on_pieces"]

_CHUNK_ELEMS = 1 << 21  # networks * nodes * width elements per activation array, at most
_CHUNK_NODES = 4096     # nodes per chunk, at most


def chunk_size(layout: Layout, N: int) -> int:
    """Nodes per chunk: a function of N and the widths only, never of the number of networks, so that
    a network's sums over the chunks do not depend on the batch it runs in (SPEC §7)."""
    return max(1, min(N, _CHUNK_NODES, _CHUNK_ELEMS // max(layout.widths)))


def network_blocks(layout: Layout, K: int, chunk: int):
    """Slices of at most ``_CHUNK_ELEMS // (chunk * max width)`` networks: the activations of one block
    and one chunk stay under ``_CHUNK_ELEMS`` elements (memory only: no effect on any result)."""
    size = max(1, _CHUNK_ELEMS // (chunk * max(layout.widths)))
    return [slice(k, min(K, k + size)) for k in range(0, K, size)]


def forward(params, x, xp=NUMPY_XP, zero=None):
    """Pre-activations of every layer for a batch of networks: x (n, d) -> [z_1 (K, n, l_1), ...,
    z_L (K, n, out)] (z_L is the output). ``params``: ``Layout.unpack`` of theta (K, P).

    ``zero`` (n, l_1 + ... + l_{L-1}) bool or None: hidden pre-activations known to vanish
    identically around node j (``vanishing_on_pieces``) are set to exactly 0 there, so that
    relu'(0) = 0 applies instead of the sign of a rounding error."""
    W1, b1 = params[0]
    z = xp.matmul(x, xp.matrix_transpose(W1)) + b1[:, None, :]  # (n,d)@(K,d,l) -> (K,n,l)
    zs = [z]
    off = 0
    for W, b in params[1:]:
        if zero is not None:
            z = xp.where(zero[None, :, off:off + z.shape[2]], 0.0, z)
            zs[-1] = z
            off += z.shape[2]
        a = xp.maximum(z, 0.0)
        z = xp.matmul(a, xp.matrix_transpose(W)) + b[:, None, :]
        zs.append(z)
    return zs


def realization(layout: Layout, theta, x, xp=NUMPY_XP):
    """N_theta(x) for every network: theta (K, P), x (N, d) -> (K, N, out), float64 ``xp`` arrays
    (theta and x in the namespace ``xp``, any array-API one, on one device)."""
    theta = xp.asarray(theta, dtype=xp.float64)
    x = xp.asarray(x, dtype=xp.float64)
    params = layout.unpack(theta)
    K, N = theta.shape[0], x.shape[0]
    step = chunk_size(layout, N)
    rows = []
    for blk in network_blocks(layout, K, step):
        block = [(W[blk, ...], b[blk, :]) for W, b in params]
        rows.append(xp.concat([forward(block, x[s:min(N, s + step), :], xp)[-1]
                             for s in range(0, N, step)], axis=1))
    return xp.concat(rows, axis=0)


def neuron_norms(W, b, xp=NUMPY_XP):
    """``|(w_i, b_i)|`` of every neuron of one layer: W (K, l, l_prev), b (K, l) -> (K, l)."""
    return xp.sqrt(xp.sum(W * W, axis=2) + b * b)


# ---- kinks of a 1-D network ---------------------------------------------------------------------

def _to_numpy(a) -> np.ndarray:
    """A host float64 array of a numpy, CuPy or other array-API array (the partition is host work)."""
    return np.asarray(to_host(a), dtype=np.float64)


def _preactivations(params, x: np.ndarray, upto: int) -> np.ndarray:
    """Pre-activation z_upto (n, l_upto) of hidden layer ``upto`` (0-based) at the 1-D points x (n,)."""
    W, b = params[0]
    z = x[:, None] * W[:, 0][None, :] + b[None, :]
    for W, b in params[1:upto + 1]:
        z = np.maximum(z, 0.0) @ W.T + b[None, :]
    return z


def _zeros_on_pieces(e: np.ndarray, z: np.ndarray, left_open: bool, right_open: bool) -> np.ndarray:
    """Zeros of affine pre-activations on the pieces [e_j, e_{j+1}].

    ``e`` (n,) finite increasing points, ``z`` (n, l) the pre-activations there; each column of z is
    affine on every [e_j, e_{j+1}]. A zero strictly inside a finite piece exists iff the end values
    have strictly opposite signs; it is found by linear interpolation from the end closer to it (the
    interpolation parameter is in [0, 1/2], computed from |z_a| + |z_b| without cancellation), which is
    exact for an affine function up to rounding. ``left_open``: the first piece is really
    (-inf, e_1] and e_0 only a probe in it, so the line is extrapolated to the left of e_1 (likewise
    ``right_open`` for the last piece).
    """
    out = []
    za, zb = z[:-1], z[1:]
    a, b = e[:-1, None], e[1:, None]
    h = b - a
    cross = za * zb < 0
    # an unbounded end piece is left to the extrapolation below (which also covers its finite part)
    cross[0] &= not left_open
    cross[-1] &= not right_open
    if np.any(cross):
        with np.errstate(divide="ignore", invalid="ignore"):
            ta = za / (za - zb)     # in (0, 1) where cross: zero at a + ta * h
            tb = zb / (zb - za)     # = 1 - ta: zero at b - tb * h
            x = np.where(ta <= 0.5, a + ta * h, b - tb * h)
        x = np.clip(x, a, b)
        out.append(x[cross])
    # unbounded end pieces: the affine line through the probe and the first finite point
    for open_, i_in, i_probe in ((left_open, 1, 0), (right_open, -2, -1)):
        if not open_:
            continue
        z_in, z_pr = z[i_in], z[i_probe]
        dz = z_in - z_pr
        with np.errstate(divide="ignore", invalid="ignore"):
            s = z_in / dz          # zero at e_in - s * (e_in - e_probe); beyond e_in (outwards) iff s > 0
            x = e[i_in] - s * (e[i_in] - e[i_probe])
        ok = (dz != 0) & (s > 0) & np.isfinite(x)
        out.append(x[ok])
    return np.concatenate(out) if out else np.empty(0)


def kink_partition(layout: Layout, theta, lo: float, hi: float) -> np.ndarray:
    """Sorted breakpoints ``[lo, k_1, ..., k_m, hi]`` of a 1-D ReLU network on [lo, hi].

    Parameters
    ----------
    layout : the network's ``Layout`` (``widths[0] == 1``).
    theta : (P,) parameters (float32 or float64; computed in float64).
    lo, hi : the interval, ``lo < hi``; either may be infinite.

    Returns
    -------
    float64 array: ``lo``, the distinct kinks of every hidden neuron strictly inside (lo, hi) in
    increasing order, then ``hi``. Between two consecutive entries the network is affine.

    Layer 1: neuron i has its kink at ``-b_i / w_i``; a neuron with ``w_i = 0`` is constant (no kink).
    Layer k > 1: on each piece of the partition of the layers before k, every pre-activation of layer k
    is affine in x, so its zero in the piece (if any) is found exactly from its values at the piece's
    ends. Coinciding kinks are merged; kinks outside (lo, hi) are dropped; a layer whose
    pre-activations keep one sign on a piece adds nothing there (dead or always-active neurons).
    Infinite ends: the unbounded end pieces are handled by extrapolating the affine pre-activation
    from a finite probe point inside the piece.
    """
    lo, hi = float(lo), float(hi)
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise ValueError(f"lo, hi: expected lo < hi, got lo={lo}, hi={hi}")
    if layout.widths[0] != 1:
        raise ValueError(f"layout: kink_partition is for 1-D networks (widths[0] == 1), got widths "
                         f"{list(layout.widths)}")
    theta = _to_numpy(theta).reshape(-1)
    if theta.size != layout.num_params:
        raise ValueError(f"theta: expected {layout.num_params} parameters for widths {list(layout.widths)}, "
                         f"got {theta.size}")
    params = [(W[0], b[0]) for W, b in layout.unpack(theta[None, :])]

    def inside(v):
        v = v[np.isfinite(v)]
        return v[(v > lo) & (v < hi)]

    # layer 1: kinks at -b_i / w_i
    w1, b1 = params[0][0][:, 0], params[0][1]
    moving = w1 != 0
    pts = np.unique(inside(-b1[moving] / w1[moving]))

    # deeper hidden layers: zeros of the (piecewise affine) pre-activations, piece by piece
    for k in range(1, layout.num_layers - 1):
        left_open, right_open = math.isinf(lo), math.isinf(hi)
        if pts.size == 0 and left_open and right_open:
            # no kink anywhere before layer k means w_1 = 0: the whole network is constant
            break
        e = np.concatenate([[lo], pts, [hi]])
        # finite probe points replace infinite ends (any point of the unbounded piece will do)
        if left_open:
            e[0] = e[1] - max(1.0, abs(e[1]))
        if right_open:
            e[-1] = e[-2] + max(1.0, abs(e[-2]))
        z = _preactivations(params, e, k)
        new = _zeros_on_pieces(e, z, left_open, right_open)
        if new.size:
            pts = np.unique(np.concatenate([pts, inside(new)]))
    return np.concatenate([[lo], pts, [hi]])


# A hidden pre-activation counts as vanishing at a point when it is within this many rounding errors
# per term of the sum that formed it (bias and products, over all the layers up to it) times the
# magnitude of those terms: |z| <= ZERO_ULPS * terms * eps * m (a standard running error bound).
ZERO_ULPS = 4.0


def vanishing_on_pieces(layout: Layout, theta, grid: np.ndarray) -> np.ndarray:
    """Which hidden pre-activations vanish identically on each piece of a 1-D partition (SPEC §2).

    Parameters
    ----------
    layout : the network's ``Layout`` (``widths[0] == 1``).
    theta : (P,) parameters (computed in float64).
    grid : (n,) increasing break points containing the network's kinks (``kink_partition``, maybe
        merged with other breaks); the ends may be infinite.

    Returns
    -------
    (n - 1, l_1 + ... + l_{L-1}) bool: entry (p, i) is True when hidden pre-activation i (layers in
    order) is identically zero on [grid_p, grid_{p+1}] in exact arithmetic, decided from its values at
    the two ends (it is affine on the piece), each within rounding of the terms that formed it.
    Such a neuron (e.g. ``relu(2x+1) - 2 relu(x+0.5)`` feeding the next layer) computes to +-1 ulp at
    the nodes inside the piece, and relu'(+-ulp) would make the gradient noise; the quadrature sets it
    to exactly 0 there (``forward``'s ``zero``). A pre-activation whose terms are all exactly zero
    is not flagged (it computes to exactly 0 anyway), nor is one of the first layer (``w x + b``
    vanishes on a piece of positive length only when w = b = 0).
    """
    params = [(W[0], b[0]) for W, b in layout.unpack(np.asarray(theta, dtype=np.float64).reshape(1, -1))]
    e = np.array(grid, dtype=np.float64)
    n = e.size
    # finite probe points replace infinite ends, as in kink_partition
    if n == 2 and np.isinf(e[0]) and np.isinf(e[1]):
        e[:] = (-1.0, 1.0)
    elif np.isinf(e[0]):
        e[0] = e[1] - max(1.0, abs(e[1]))
    if np.isinf(e[-1]):
        e[-1] = e[-2] + max(1.0, abs(e[-2]))
    W, b = params[0]
    z = e[:, None] * W[:, 0][None, :] + b[None, :]
    m = np.abs(e)[:, None] * np.abs(W[:, 0])[None, :] + np.abs(b)[None, :]
    terms = 2
    masks = [np.zeros((n - 1, W.shape[0]), dtype=bool)]
    eps = np.finfo(np.float64).eps
    for W, b in params[1:-1]:
        active = z > 0
        z = np.where(active, z, 0.0) @ W.T + b[None, :]
        m = np.where(active, m, 0.0) @ np.abs(W).T + np.abs(b)[None, :]
        terms += W.shape[1] + 1
        vanish = np.abs(z) <= ZERO_ULPS * terms * eps * m
        z = np.where(vanish, 0.0, z)
        masks.append(vanish[:-1] & vanish[1:] & ((m[:-1] > 0) | (m[1:] > 0)))
    return np.concatenate(masks, axis=1)
