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
from ..quadrature import fixed_1d, nodes_1d, nodes_tensor
from ..spec import ProblemSpec

__all__ = ["realization", "risk_and_grad", "evaluate", "target_values", "partition_loop"]

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
    K, N = theta.shape[0], x.shape[0]
    risk = xp.zeros(K, dtype=xp.float64)
    grad = xp.zeros_like(theta) if want_grad else None
    step = chunk_size(layout, N)
    for blk in network_blocks(layout, K, step):
        params = layout.unpack(theta[blk])
        grads = layout.unpack(grad[blk]) if want_grad else None   # views: accumulate in place
        for s in range(0, N, step):
            xc, wc, yc = x[s:s + step], w[s:s + step], y[s:s + step]
            zs = forward(params, xc, xp)
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
    want_grad)``. The nodes are fixed while differentiating: the boundary terms of the moving kinks
    cancel because the integrand is continuous across a kink, so this is the exact gradient."""
    fixed = fixed_1d(spec, estimator)
    theta_host = np.asarray(theta.get() if hasattr(theta, "get") else theta, dtype=np.float64)
    risks, grads = [], []
    for k in range(theta_host.shape[0]):
        nodes = nodes_1d(spec, theta_host[k], estimator, fixed)
        y = target_values(spec, nodes)
        r, g = kernel(spec.layout, theta[k:k + 1], xp.asarray(nodes.x), xp.asarray(nodes.w), xp.asarray(y),
                      want_grad)
        risks.append(r)
        grads.append(g)
    return xp.concatenate(risks), (xp.concatenate(grads) if want_grad else None)


def evaluate(plan, spec: ProblemSpec, theta, step: int, want_grad: bool, xp=np):
    """Risk (K,) and gradient (K, P) (None unless ``want_grad``) of ``plan`` in float64 ``xp`` arrays.
    An overflow gives inf/NaN for that network (numpy's own warnings are silenced: the caller says it
    once, naming the networks)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _evaluate(plan, spec, theta, step, want_grad, xp)


def _evaluate(plan, spec: ProblemSpec, theta, step: int, want_grad: bool, xp):
    def kernel(layout, th, x, w, y, g):
        return risk_and_grad(layout, th, x, w, y, g, xp)

    estimator = plan.estimator
    if plan.route == "partition":
        return partition_loop(spec, theta, estimator, want_grad, kernel, xp)
    if plan.route == "tensor_grid":
        nodes = nodes_tensor(spec, estimator)
    elif plan.route == "dense":
        nodes = estimator.nodes(spec, step)
    else:
        raise ValueError(f"backend: the reference backend has no route {plan.route!r}")
    y = target_values(spec, nodes)
    return kernel(spec.layout, theta, xp.asarray(nodes.x), xp.asarray(nodes.w), xp.asarray(y), want_grad)
