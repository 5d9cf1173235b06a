"""The reference backend: plain array code (numpy, or cupy as ``xp``), the judge of the others.

Deliberately simple: forward through all layers for a chunk of nodes (``geometry.forward``), residual,
backward, gradient accumulation. Chunked over nodes so that memory stays bounded, computed in float64
whatever the input dtype. Nodes come from the estimators in Python (numpy Philox and Sobol), the
target is evaluated in Python, and the 1-D partition path loops over networks.
"""
from __future__ import annotations

import numpy as np

from ..estimators import Nodes
from ..geometry import chunk_size, forward, network_blocks, realization
from ..layout import Layout
from ..quadrature import fixed_1d, kink_hessian_terms, nodes_1d, nodes_tensor
from ..spec import ProblemSpec

__all__ = ["realization", "risk_and_grad", "evaluate", "fixed_nodes", "target_values", "partition_loop",
           "risk_grad_hvp", "quadrature_hvp"]

def risk_and_grad(layout: Layout, theta, x, w, y, want_grad: bool = True, xp=np, zero=None):
    """Weighted risk ``sum_j w_j |N(x_j) - y_j|^2`` and its generalized gradient (relu'(0) = 0).

    Parameters
    ----------
    theta : (K, P); x : (N, d); w : (N,); y : (N, out) target values at the nodes.
    zero : (N, l_1 + ... + l_{L-1}) bool or None: hidden pre-activations set to exactly 0 at each
        node (``Nodes.zero``: identically zero there, so relu'(0) = 0 applies).

    Returns
    -------
    risk (K,) float64, grad (K, P) float64 (None when ``want_grad`` is False).
    """
    theta = xp.asarray(theta, dtype=xp.float64)
    x, w, y = (xp.asarray(a, dtype=xp.float64) for a in (x, w, y))
    K, N = theta.shape[0], x.shape[0]
    risk = xp.zeros(K, dtype=xp.float64)
    grad = xp.zeros_like(theta) if want_grad else None
    step = chunk_size(layout, N)
    for blk in network_blocks(layout, K, step):
        params = layout.unpack(theta[blk])
        grads = layout.unpack(grad[blk]) if want_grad else None   # views: accumulate in place
        for s in range(0, N, step):
            xc, wc, yc = x[s:s + step], w[s:s + step], y[s:s + step]
            zs = forward(params, xc, xp, None if zero is None else zero[s:s + step])
            r = zs[-1] - yc[None]                                  # residual (Kb, n, out)
            risk[blk] += xp.einsum("n,kno->k", wc, r * r)
            if not want_grad:
                continue
            delta = 2.0 * wc[None, :, None] * r                    # d risk / d output
            for k in range(layout.num_layers - 1, -1, -1):
                a_prev = xc if k == 0 else xp.maximum(zs[k - 1], 0.0)  # (n,d) broadcasts over Kb
                gW, gb = grads[k]
                gW += xp.matmul(xp.swapaxes(delta, 1, 2), a_prev)
                gb += delta.sum(axis=1)
                if k > 0:
                    # generalized gradient: relu'(z) = 1 if z > 0 else 0, compared with '>'
                    delta = xp.matmul(delta, params[k][0]) * (zs[k - 1] > 0)
    return risk, grad


def target_values(spec: ProblemSpec, nodes: Nodes) -> np.ndarray:
    """y (N, out): the data of ``nodes`` or the target evaluated at them in Python (float64)."""
    return nodes.y if nodes.y is not None else spec.target(nodes.x)


def partition_loop(spec: ProblemSpec, theta, estimator, want_grad: bool, kernel, xp=np):
    """The 1-D partition path network by network: each network's nodes (its kinks, the target's and
    the density's breaks, Gauss–Legendre on every piece), then ``kernel(layout, theta_k, x, w, y,
    want_grad, zero)``. The nodes are fixed while differentiating: the boundary terms of the moving
    kinks cancel because the integrand is continuous across a kink, so this is the exact gradient."""
    fixed = fixed_1d(spec, estimator)
    theta_host = np.asarray(theta.get() if hasattr(theta, "get") else theta, dtype=np.float64)
    risks, grads = [], []
    for k in range(theta_host.shape[0]):
        nodes = nodes_1d(spec, theta_host[k], estimator, fixed)
        y = target_values(spec, nodes)
        zero = None if nodes.zero is None else xp.asarray(nodes.zero)
        r, g = kernel(spec.layout, theta[k:k + 1], xp.asarray(nodes.x), xp.asarray(nodes.w), xp.asarray(y),
                      want_grad, zero=zero)
        risks.append(r)
        grads.append(g)
    return xp.concatenate(risks), (xp.concatenate(grads) if want_grad else None)


def evaluate(plan, spec: ProblemSpec, theta, step: int, want_grad: bool, xp=np):
    """Risk (K,) and gradient (K, P) (None unless ``want_grad``) of ``plan`` in float64 ``xp`` arrays.
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
    nodes = fixed_nodes(plan, spec, step)
    return kernel(spec.layout, theta, xp.asarray(nodes.x), xp.asarray(nodes.w), xp.asarray(nodes.y), want_grad)


def quadrature_hvp(spec: ProblemSpec, theta, V, estimator, xp=np):
    """Hessian-vector products of the exact 1-D quadrature risk: theta (K, P), V (K, B, P) -> (K, B, P).

    Network by network: the fixed-pattern Hessian of the quadrature's weighted sum on the network's
    own nodes (``risk_grad_hvp``), plus the terms of the kinks that move with theta
    (``quadrature.kink_hessian_terms``: one rank-one term per kink, a point evaluation of residual times
    density there), which autodiff of any sampled risk cannot see. float64.
    """
    fixed = fixed_1d(spec, estimator)
    theta_host = np.asarray(theta.get() if hasattr(theta, "get") else theta, dtype=np.float64)
    out = []
    for k in range(theta_host.shape[0]):
        nodes = nodes_1d(spec, theta_host[k], estimator, fixed)
        y = target_values(spec, nodes)
        zero = None if nodes.zero is None else xp.asarray(nodes.zero)
        _, _, hv = risk_grad_hvp(spec.layout, theta[k:k + 1], V[k:k + 1], xp.asarray(nodes.x),
                                 xp.asarray(nodes.w), xp.asarray(y), xp, zero=zero)
        c, U = kink_hessian_terms(spec, theta_host[k], fixed)
        if c.size:
            U = xp.asarray(U)
            hv = hv + xp.matmul(xp.matmul(V[k:k + 1], U.T) * xp.asarray(c), U)      # (1, B, P)
        out.append(hv)
    return xp.concatenate(out)


def risk_grad_hvp(layout: Layout, theta, V, x, w, y, xp=np, zero=None):
    """Gradient and Hessian-vector products of the weighted risk ``sum_j w_j |N(x_j) - y_j|^2``.

    The exact Hessian of that weighted sum with relu'' = 0 (the activation pattern at theta held
    fixed; relu'(0) = 0), by forward-mode differentiation of the backward pass: about two gradients'
    work per direction. Network by network, nodes in chunks of ``geometry.chunk_size`` (a function of
    N and the widths only), directions in blocks bounded in memory.

    Parameters
    ----------
    theta : (K, P); V : (K, B, P): B directions per network; x : (N, d); w : (N,); y : (N, out);
    zero : (N, l_1 + ... + l_{L-1}) bool or None: hidden pre-activations set to 0 (``Nodes.zero``).

    Returns
    -------
    risk (K,), grad (K, P), HV (K, B, P), float64.
    """
    theta = xp.asarray(theta, dtype=xp.float64)
    V = xp.asarray(V, dtype=xp.float64)
    x, w, y = (xp.asarray(a, dtype=xp.float64) for a in (x, w, y))
    K, B, P = V.shape
    N = x.shape[0]
    risk = xp.zeros(K, dtype=xp.float64)
    grad = xp.zeros((K, P), dtype=xp.float64)
    hv = xp.zeros((K, B, P), dtype=xp.float64)
    step = chunk_size(layout, N)
    dblock = max(1, (1 << 22) // (step * max(layout.widths)))      # directions per block (memory only)
    for k in range(K):
        for b0 in range(0, B, dblock):
            b1 = min(B, b0 + dblock)
            for s in range(0, N, step):
                r_, g_, h_ = _grad_hvp_chunk(layout, theta[k], V[k, b0:b1], x[s:s + step], w[s:s + step],
                                             y[s:s + step], xp, None if zero is None else zero[s:s + step])
                if b0 == 0:
                    risk[k] += r_
                    grad[k] += g_
                hv[k, b0:b1] += h_
    return risk, grad, hv


def _grad_hvp_chunk(layout: Layout, theta, V, x, w, y, xp, zero=None):
    """One network theta (P,), directions V (B, P), nodes x (n, d): risk, grad (P,), HV (B, P)."""
    L = layout.num_layers
    params = [(W[0], b[0]) for W, b in layout.unpack(theta[None])]        # W (l, l_prev), b (l,)
    tang = layout.unpack(V)                                                # dW (B, l, l_prev), db (B, l)
    zs, dzs, acts, dacts = [], [], [x], [None]                             # a (n, l), da (B, n, l)
    for k in range(L):
        W, b = params[k]
        dW, db = tang[k]
        z = acts[-1] @ W.T + b                                              # (n, l)
        dz = xp.matmul(acts[-1][None], xp.swapaxes(dW, 1, 2)) + db[:, None, :]   # (B, n, l)
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
            dacts.append(xp.where(m[None], dz, 0.0))
    r = zs[-1] - y                                                          # (n, out)
    risk = float(xp.sum(w[:, None] * r * r))
    delta = 2.0 * w[:, None] * r                                            # (n, out)
    ddelta = 2.0 * w[None, :, None] * dzs[-1]                               # (B, n, out)
    grad = xp.zeros(V.shape[1], dtype=xp.float64)
    hv = xp.zeros_like(V)
    gparams = layout.unpack(grad[None])
    hparams = layout.unpack(hv)
    for k in range(L - 1, -1, -1):
        gW, gb = gparams[k]
        hW, hb = hparams[k]
        gW[0] += delta.T @ acts[k]
        gb[0] += delta.sum(axis=0)
        hW += xp.matmul(xp.swapaxes(ddelta, 1, 2), acts[k][None])
        if dacts[k] is not None:
            hW += xp.matmul(delta.T[None], dacts[k])
        hb += ddelta.sum(axis=1)
        if k > 0:
            W = params[k][0]
            dW = tang[k][0]
            m = zs[k - 1] > 0
            ddelta = (xp.matmul(ddelta, W[None]) + xp.matmul(delta[None], dW)) * m[None]
            delta = (delta @ W) * m
    return risk, grad, hv
