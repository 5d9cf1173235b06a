"""The reference backend: plain array code written against the array API standard, the judge of the
others. ``xp`` is numpy, CuPy (``backend="cupy"``) or any other array-API namespace (array-api-strict
in the tests): theta's, and every result comes back in it.

Deliberately simple: forward through all layers for a chunk of nodes (``geometry.forward``), residual,
backward, gradient accumulation. Chunked over nodes so that memory stays bounded, computed in float64
whatever the input dtype. Nodes come from the estimators in host numpy (Philox and Sobol), the target
is evaluated there, and the 1-D partition path finds each network's kinks on the host: those numpy
arrays enter ``xp`` once per evaluation (``_arrays.from_host``; on CuPy a host-to-device copy of the
nodes, which are few next to the nodes x networks work). Only standard functions are called on ``xp``
arrays (no ``einsum``, no writes through views), except that numpy keeps ``einsum`` for the risk sum so
that the numpy backend's results stay bitwise what they were.
"""
from __future__ import annotations

import numpy as np

from .._arrays import NUMPY_XP, from_host, is_numpy, to_host
from ..estimators import Nodes
from ..gaussian_exact import shallow_gaussian
from ..geometry import chunk_size, forward, network_blocks, realization
from ..layout import Layout
from ..quadrature import fixed_1d, kink_hessian_terms, nodes_1d, nodes_tensor
from ..spec import ProblemSpec

__all__ = ["realization", "risk_and_grad", "evaluate", "fixed_nodes", "target_values", "partition_loop",
           "risk_grad_hvp", "hvp_with_kinks", "quadrature_hvp", "gaussian_closed_form", "gaussian_hvp"]


def _weighted_squares(w, r, xp):
    """``sum_{n, o} w_n r_kno^2`` (Kb,) of residuals r (Kb, n, out), weights w (n,)."""
    if is_numpy(xp):  # the numpy backend's historical sum order (its results are compared bitwise)
        return np.einsum("n,kno->k", w, r * r)
    return xp.sum(w[:, None] * (r * r), axis=(1, 2))


def _relu_mask(z, xp):
    """relu'(z) as 1.0/0.0 in z's dtype (compared with '>', so relu'(0) = 0). Multiplying by it is what
    numpy does with a bool mask, bit for bit (inf * 0 is NaN too); the standard mixes no bools and
    floats."""
    return xp.astype(z > 0, z.dtype)


def risk_and_grad(layout: Layout, theta, x, w, y, want_grad: bool = True, xp=NUMPY_XP, zero=None):
    """Weighted risk ``sum_j w_j |N(x_j) - y_j|^2`` and its generalized gradient (relu'(0) = 0).

    Parameters
    ----------
    theta : (K, P); x : (N, d); w : (N,); y : (N, out) target values at the nodes; all ``xp`` arrays
        (any array-API namespace) on one device.
    zero : (N, l_1 + ... + l_{L-1}) bool ``xp`` array or None: hidden pre-activations set to exactly 0
        at each node (``Nodes.zero``: identically zero there, so relu'(0) = 0 applies).

    Returns
    -------
    risk (K,) float64, grad (K, P) float64 (None when ``want_grad`` is False), ``xp`` arrays.
    """
    theta = xp.asarray(theta, dtype=xp.float64)
    x, w, y = (xp.asarray(a, dtype=xp.float64) for a in (x, w, y))
    K, N = theta.shape[0], x.shape[0]
    step = chunk_size(layout, N)
    risks, grads = [], []
    for blk in network_blocks(layout, K, step):
        params = layout.unpack(theta[blk, :])
        risk = xp.zeros_like(params[0][1][:, 0])                     # (Kb,)
        acc = [[xp.zeros_like(W), xp.zeros_like(b)] for W, b in params] if want_grad else None
        for s in range(0, N, step):
            e = min(N, s + step)                                   # (the standard has no stop past the end)
            xc, wc, yc = x[s:e, :], w[s:e], y[s:e, :]
            zs = forward(params, xc, xp, None if zero is None else zero[s:e, :])
            r = zs[-1] - yc[None, ...]                                # residual (Kb, n, out)
            risk = risk + _weighted_squares(wc, r, xp)
            if not want_grad:
                continue
            delta = 2.0 * wc[None, :, None] * r                    # d risk / d output
            for k in range(layout.num_layers - 1, -1, -1):
                a_prev = xc if k == 0 else xp.maximum(zs[k - 1], 0.0)  # (n,d) broadcasts over Kb
                acc[k][0] = acc[k][0] + xp.matmul(xp.matrix_transpose(delta), a_prev)
                acc[k][1] = acc[k][1] + xp.sum(delta, axis=1)
                if k > 0:
                    # generalized gradient: relu'(z) = 1 if z > 0 else 0, compared with '>'
                    delta = xp.matmul(delta, params[k][0]) * _relu_mask(zs[k - 1], xp)
        risks.append(risk)
        if want_grad:
            grads.append(layout.pack(acc, xp))
    return _concat(risks, xp), (_concat(grads, xp) if want_grad else None)


def _concat(parts, xp):
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)


def target_values(spec: ProblemSpec, nodes: Nodes) -> np.ndarray:
    """y (N, out): the data of ``nodes`` or the target evaluated at them in Python (float64)."""
    return nodes.y if nodes.y is not None else spec.target(nodes.x)


def partition_loop(spec: ProblemSpec, theta, estimator, want_grad: bool, kernel, xp=NUMPY_XP):
    """The 1-D partition path network by network: each network's nodes (its kinks, the target's and
    the density's breaks, Gauss–Legendre on every piece), then ``kernel(layout, theta_k, x, w, y,
    want_grad, zero=...)``. The nodes are fixed while differentiating: the boundary terms of the moving
    kinks cancel because the integrand is continuous across a kink, so this is the exact gradient."""
    fixed = fixed_1d(spec, estimator)
    # the kinks are found on the host: one device-to-host copy of theta (CuPy), nodes back per network
    theta_host = np.asarray(to_host(theta), dtype=np.float64)
    risks, grads = [], []
    for k in range(theta_host.shape[0]):
        nodes = nodes_1d(spec, theta_host[k], estimator, fixed)
        y = target_values(spec, nodes)
        zero = None if nodes.zero is None else from_host(xp, nodes.zero, theta)
        r, g = kernel(spec.layout, theta[k:k + 1, :], from_host(xp, nodes.x, theta), from_host(xp, nodes.w, theta),
                      from_host(xp, y, theta), want_grad, zero=zero)
        risks.append(r)
        grads.append(g)
    return _concat(risks, xp), (_concat(grads, xp) if want_grad else None)


def evaluate(plan, spec: ProblemSpec, theta, step: int, want_grad: bool, xp=NUMPY_XP):
    """Risk (K,) and gradient (K, P) (None unless ``want_grad``) of ``plan`` in float64 ``xp`` arrays
    (theta (K, P) an ``xp`` array, any array-API namespace; the nodes enter ``xp`` once).
    An overflow gives inf/NaN for that network (numpy's own warnings are silenced: the caller says it
    once, naming the networks)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _evaluate(plan, spec, theta, step, want_grad, xp)


def fixed_nodes(plan, spec: ProblemSpec, step: int = 0) -> Nodes:
    """The weighted nodes of a plan whose nodes do not depend on theta (routes dense and tensor_grid)
    at ``step``, with their target values ``y``: the estimator's own (numpy) nodes, the target in
    Python."""
    if plan.route == "tensor_grid":
        nodes = nodes_tensor(spec, plan.estimator)
    elif plan.route == "dense":
        nodes = plan.estimator.nodes(spec, step)
    else:
        raise ValueError(f"backend: the reference backend has no node set for route {plan.route!r}")
    return Nodes(nodes.x, nodes.w, target_values(spec, nodes))


def _evaluate(plan, spec: ProblemSpec, theta, step: int, want_grad: bool, xp):
    def kernel(layout, th, x, w, y, g, zero=None):
        return risk_and_grad(layout, th, x, w, y, g, xp, zero)

    if plan.route == "partition":
        return partition_loop(spec, theta, plan.estimator, want_grad, kernel, xp)
    if plan.route == "gaussian_closed_form":
        risk, grad, _ = gaussian_closed_form(spec, theta, want_grad, False, xp)
        return risk, grad
    nodes = fixed_nodes(plan, spec, step)   # host numpy: one host-to-device copy on CuPy
    return kernel(spec.layout, theta, from_host(xp, nodes.x, theta), from_host(xp, nodes.w, theta),
                  from_host(xp, nodes.y, theta), want_grad)


def _gaussian_target(spec: ProblemSpec) -> tuple:
    t = spec.target_spec
    if t.kind == "affine":
        return ("affine", t.arrays["A"], t.arrays["b"])
    return ("teacher", list(t.arrays["widths"]), t.arrays["theta"])


def gaussian_closed_form(spec: ProblemSpec, theta, want_grad: bool, want_hess: bool, xp=NUMPY_XP):
    """``Exact()`` under Gaussian input (route ``gaussian_closed_form``): risk (K,), gradient (K, P) and
    Hessian (K, P, P) (None unless asked) of shallow nets, in closed form (``reluflow.gaussian_exact``).
    numpy float64 on the host, whatever ``xp``: the results enter ``xp`` once."""
    dist = spec.input
    th = np.asarray(to_host(theta), dtype=np.float64)
    out = shallow_gaussian(list(spec.widths), th, dist.mean, dist.cov, _gaussian_target(spec),
                           want_grad=want_grad, want_hess=want_hess)
    return tuple(None if a is None else from_host(xp, a, theta) for a in out)


def gaussian_hvp(spec: ProblemSpec, theta, V, xp=NUMPY_XP):
    """Hessian-vector products of the Gaussian closed-form risk: theta (K, P), V (K, B, P) -> (K, B, P)."""
    H = gaussian_closed_form(spec, theta, False, True, xp)[2]
    return xp.matmul(V, H)          # H symmetric: (V H)[b] = H V[b]


def quadrature_hvp(spec: ProblemSpec, theta, V, estimator, xp=NUMPY_XP, kernel=None):
    """Hessian-vector products of the exact 1-D quadrature risk: theta (K, P), V (K, B, P) -> (K, B, P).

    Network by network: the fixed-pattern Hessian of the quadrature's weighted sum on the network's
    own nodes, plus the terms of the kinks that move with theta (``quadrature.kink_hessian_terms``: one
    rank-one term ``c u u^T`` per kink, a point evaluation of residual times density there), which
    autodiff of any sampled risk cannot see. ``kernel(layout, theta_k (1, P), V_k (1, B, P), x, w, y,
    xp, zero=, kinks=(c (m,), U (m, P)))`` -> HV (1, B, P) computes both (default
    :func:`hvp_with_kinks`; the cpu backend passes its C++ one). float64 ``xp`` arrays (the kinks and
    their terms on the host).
    """
    kernel = hvp_with_kinks if kernel is None else kernel
    fixed = fixed_1d(spec, estimator)
    theta_host = np.asarray(to_host(theta), dtype=np.float64)
    out = []
    for k in range(theta_host.shape[0]):
        nodes = nodes_1d(spec, theta_host[k], estimator, fixed)
        y = target_values(spec, nodes)
        zero = None if nodes.zero is None else from_host(xp, nodes.zero, theta)
        c, U = kink_hessian_terms(spec, theta_host[k], fixed)
        out.append(kernel(spec.layout, theta[k:k + 1, :], V[k:k + 1, ...], from_host(xp, nodes.x, theta),
                          from_host(xp, nodes.w, theta), from_host(xp, y, theta), xp, zero=zero,
                          kinks=(from_host(xp, c, theta), from_host(xp, U, theta))))
    return _concat(out, xp)


def hvp_with_kinks(layout: Layout, theta, V, x, w, y, xp=NUMPY_XP, zero=None, kinks=None):
    """HV (K, B, P) of the weighted sum (:func:`risk_grad_hvp`) plus ``sum_i c_i (u_i . v) u_i`` for every
    direction v, kinks = (c (m,), U (m, P)) ``xp`` arrays shared by the K networks (or None)."""
    _, _, hv = risk_grad_hvp(layout, theta, V, x, w, y, xp, zero=zero)
    if kinks is not None and kinks[0].shape[0]:
        c, U = kinks
        hv = hv + xp.matmul(xp.matmul(V, xp.matrix_transpose(U)) * c, U)
    return hv


def risk_grad_hvp(layout: Layout, theta, V, x, w, y, xp=NUMPY_XP, zero=None):
    """Gradient and Hessian-vector products of the weighted risk ``sum_j w_j |N(x_j) - y_j|^2``.

    The exact Hessian of that weighted sum with relu'' = 0 (the activation pattern at theta held
    fixed; relu'(0) = 0), by forward-mode differentiation of the backward pass: about two gradients'
    work per direction. Network by network, nodes in chunks of ``geometry.chunk_size`` (a function of
    N and the widths only), directions in blocks bounded in memory.

    Parameters
    ----------
    theta : (K, P); V : (K, B, P): B directions per network; x : (N, d); w : (N,); y : (N, out); all
        ``xp`` arrays (any array-API namespace) on one device. zero : (N, l_1 + ... + l_{L-1}) bool or
        None: hidden pre-activations set to 0 (``Nodes.zero``).

    Returns
    -------
    risk (K,), grad (K, P), HV (K, B, P), float64 ``xp`` arrays.
    """
    theta = xp.asarray(theta, dtype=xp.float64)
    V = xp.asarray(V, dtype=xp.float64)
    x, w, y = (xp.asarray(a, dtype=xp.float64) for a in (x, w, y))
    K, B, P = V.shape
    N = x.shape[0]
    step = chunk_size(layout, N)
    dblock = max(1, (1 << 22) // (step * max(layout.widths)))      # directions per block (memory only)
    risks, grads, hvs = [], [], []
    for k in range(K):
        risk, grad, blocks = xp.zeros_like(theta[k, 0]), xp.zeros_like(theta[k, :]), []
        for b0 in range(0, B, dblock):
            b1 = min(B, b0 + dblock)
            hv = xp.zeros_like(V[k, b0:b1, :])
            for s in range(0, N, step):
                e = min(N, s + step)
                r_, g_, h_ = _grad_hvp_chunk(layout, theta[k, :], V[k, b0:b1, :], x[s:e, :], w[s:e], y[s:e, :], xp,
                                             None if zero is None else zero[s:e, :])
                if b0 == 0:
                    risk = risk + r_
                    grad = grad + g_
                hv = hv + h_
            blocks.append(hv)
        risks.append(risk)
        grads.append(grad)
        hvs.append(_concat(blocks, xp))
    return xp.stack(risks), xp.stack(grads), xp.stack(hvs)


def _grad_hvp_chunk(layout: Layout, theta, V, x, w, y, xp, zero=None):
    """One network theta (P,), directions V (B, P), nodes x (n, d): risk (0-d), grad (P,), HV (B, P)."""
    L = layout.num_layers
    params = [(W[0, ...], b[0, :]) for W, b in layout.unpack(theta[None, :])]        # W (l, l_prev), b (l,)
    tang = layout.unpack(V)                                                # dW (B, l, l_prev), db (B, l)
    zs, dzs, acts, dacts = [], [], [x], [None]                             # a (n, l), da (B, n, l)
    for k in range(L):
        W, b = params[k]
        dW, db = tang[k]
        z = acts[-1] @ W.T + b                                              # (n, l)
        dz = xp.matmul(acts[-1][None, ...], xp.matrix_transpose(dW)) + db[:, None, :]   # (B, n, l)
        if dacts[-1] is not None:
            dz = dz + xp.matmul(dacts[-1], W.T)
        if zero is not None and k < L - 1:     # identically zero there: inactive (relu'(0) = 0)
            off = sum(layout.widths[1:k + 1])
            z = xp.where(zero[:, off:off + z.shape[1]], 0.0, z)
        zs.append(z)
        dzs.append(dz)
        if k < L - 1:
            m = z > 0                                                       # relu'(z), relu'(0) = 0
            acts.append(xp.where(m, z, 0.0))
            dacts.append(xp.where(m[None, ...], dz, 0.0))
    r = zs[-1] - y                                                          # (n, out)
    risk = xp.sum(w[:, None] * r * r)
    delta = 2.0 * w[:, None] * r                                            # (n, out)
    ddelta = 2.0 * w[None, :, None] * dzs[-1]                               # (B, n, out)
    gparams, hparams = [None] * L, [None] * L
    for k in range(L - 1, -1, -1):
        W, b = params[k]
        # each term added to zeros, as the accumulation it replaces did (0.0 + -0.0 is 0.0)
        gW = xp.zeros_like(W) + delta.T @ acts[k]
        gb = xp.zeros_like(b) + xp.sum(delta, axis=0)
        hW = xp.zeros_like(tang[k][0]) + xp.matmul(xp.matrix_transpose(ddelta), acts[k][None, ...])
        if dacts[k] is not None:
            hW = hW + xp.matmul(delta.T[None, ...], dacts[k])
        hb = xp.zeros_like(tang[k][1]) + xp.sum(ddelta, axis=1)
        gparams[k], hparams[k] = (gW[None, ...], gb[None, :]), (hW, hb)
        if k > 0:
            dW = tang[k][0]
            m = _relu_mask(zs[k - 1], xp)
            ddelta = (xp.matmul(ddelta, W[None, ...]) + xp.matmul(delta[None, ...], dW)) * m[None, ...]
            delta = (delta @ W) * m
    return risk, layout.pack(gparams, xp)[0, :], layout.pack(hparams, xp)
