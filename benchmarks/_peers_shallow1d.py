"""Peer implementations of the risk and gradient of one shallow 1-D net ``[1, H, out]`` on fixed
weighted points, written the way a skilled user would, for case E of bench_quadrature.py.

Every peer is dense (O(N H) work: the kink structure is invisible to them) and chunked over the nodes
so that the (chunk, H) pre-activations stay bounded in memory. They return ``(risk (1,), grad (1, P))``
as float64 numpy arrays for the accuracy check against the sweep.

* ``torch_compiled``: ``torch.compile`` (inductor) of the chunk loss, backward by AOTAutograd; the
  matmul-free form ``(relu(z) * V).sum(-1)`` so that inductor fuses the chunk into one loop nest.
* ``jax_jit``: ``jax.jit(value_and_grad)`` of the loss with ``lax.scan`` over equal chunks.

Chunks have one fixed size (the tail is padded with zero-weight nodes), so each compiles once.
"""
from __future__ import annotations

import numpy as np


def _padded_chunks(x, w, y, chunk):
    """x (N,), w (N,), y (N, out) padded with zero-weight nodes to a multiple of chunk."""
    N = x.shape[0]
    n_chunks = -(-N // chunk)
    pad = n_chunks * chunk - N
    if pad:
        x = np.concatenate([x, np.full(pad, x[-1])])
        w = np.concatenate([w, np.zeros(pad)])
        y = np.concatenate([y, np.repeat(y[-1:], pad, axis=0)])
    return x, w, y, n_chunks


def torch_compiled(H: int, out: int, chunk: int, dtype: str = "float64"):
    """A function ``run(theta (1, P), x (N,), w (N,), y (N, out))`` and a warm-up flag holder."""
    import torch  # noqa: PLC0415

    tdt = getattr(torch, dtype)

    def loss_chunk(th, X, W, Y):
        wv, bv = th[:H], th[H:2 * H]
        V, c = th[2 * H:2 * H + out * H].view(out, H), th[2 * H + out * H:]
        a = torch.relu(X[:, None] * wv[None, :] + bv[None, :])          # (chunk, H)
        o = (a[:, None, :] * V[None, :, :]).sum(-1) + c                  # (chunk, out)
        r = o - Y
        return (W[:, None] * r * r).sum()

    compiled = torch.compile(loss_chunk, dynamic=False)

    def run(theta, x, w, y):
        xp, wp, yp, n_chunks = _padded_chunks(x, w, y, chunk)
        th = torch.tensor(np.asarray(theta[0], dtype=np.float64), dtype=tdt, requires_grad=True)
        X = torch.from_numpy(xp).to(tdt)
        Wt = torch.from_numpy(wp).to(tdt)
        Y = torch.from_numpy(np.ascontiguousarray(yp)).to(tdt)
        risk = 0.0
        for s in range(n_chunks):
            sl = slice(s * chunk, (s + 1) * chunk)
            loss = compiled(th, X[sl], Wt[sl], Y[sl])
            loss.backward()
            risk += float(loss.detach())
        return np.array([risk]), th.grad.detach().to(torch.float64).numpy()[None, :].copy()

    return run


def jax_jit(H: int, out: int, chunk: int, dtype: str = "float64"):
    """``run(theta (1, P), x (N,), w (N,), y (N, out))`` by jit(value_and_grad) with lax.scan."""
    import jax  # noqa: PLC0415

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp  # noqa: PLC0415

    def loss(th, X, W, Y):           # X, W (n_chunks, chunk), Y (n_chunks, chunk, out)
        wv, bv = th[:H], th[H:2 * H]
        V, c = th[2 * H:2 * H + out * H].reshape(out, H), th[2 * H + out * H:]

        def body(acc, xs):
            x, wt, yv = xs
            a = jnp.maximum(x[:, None] * wv[None, :] + bv[None, :], 0.0)
            r = a @ V.T + c - yv
            return acc + jnp.sum(wt[:, None] * r * r), None

        total, _ = jax.lax.scan(body, jnp.zeros((), th.dtype), (X, W, Y))
        return total

    vg = jax.jit(jax.value_and_grad(loss))
    jdt = jnp.float64 if dtype == "float64" else jnp.float32

    def run(theta, x, w, y):
        xp, wp, yp, n_chunks = _padded_chunks(x, w, y, chunk)
        X = jnp.asarray(xp.reshape(n_chunks, chunk), dtype=jdt)
        Wt = jnp.asarray(wp.reshape(n_chunks, chunk), dtype=jdt)
        Y = jnp.asarray(yp.reshape(n_chunks, chunk, out), dtype=jdt)
        r, g = vg(jnp.asarray(theta[0], dtype=jdt), X, Wt, Y)
        return np.array([float(r)]), np.asarray(g, dtype=np.float64)[None, :]

    return run


def numpy_sorted_sweep(theta, x, w, y):
    """The point sweep as a skilled numpy user writes it (argsort, searchsorted, bincount, cumsum):
    the nodes sorted once per call, then O(N + H log N) vectorized work per network, the kink
    structure used. Shallow nets [1, H, 1]: theta (K, P), x (N,), w (N,), y (N,) -> (risk (K,),
    grad (K, P)), float64.

    N(x) = A(x) x + B(x) with A = sum v_i w_i, B = c + sum v_i b_i over the neurons active at x; a
    neuron is active on a suffix (w > 0) or a prefix (w < 0) of the sorted nodes, so A, B are cumulative
    sums of changes at the boundaries, and every neuron's gradient is a difference of prefix moments.
    """
    theta = np.atleast_2d(theta)
    K, P = theta.shape
    H = (P - 1) // 3
    order = np.argsort(x, kind="stable")
    xs, ws, ys = x[order], w[order], y[order]
    N = xs.size
    risk, grad = np.empty(K), np.empty((K, P))
    for k in range(K):
        wv, bv, v, c = theta[k, :H], theta[k, H:2 * H], theta[k, 2 * H:3 * H], theta[k, 3 * H]
        with np.errstate(divide="ignore", invalid="ignore"):
            kink = np.where(wv != 0, -bv / wv, 0.0)
        # the first node strictly beyond the kink: active from there (w > 0) or before it (w < 0)
        j = np.searchsorted(xs, kink, side="right")
        j = np.where(wv == 0, np.where(bv > 0, 0, N), j)      # constant neurons: all or nothing
        neg = wv < 0
        sa, sb = v * wv, v * bv
        A = np.cumsum(np.bincount(j, weights=np.where(neg, -sa, sa), minlength=N + 1))[:N] + np.sum(sa[neg])
        B = np.cumsum(np.bincount(j, weights=np.where(neg, -sb, sb), minlength=N + 1))[:N] + np.sum(sb[neg]) + c
        r = A * xs + B - ys
        u = ws * r
        risk[k] = np.dot(u, r)
        P0 = np.concatenate([[0.0], np.cumsum(u)])            # prefix sums: sum_{m < j}
        P1 = np.concatenate([[0.0], np.cumsum(u * xs)])
        s0 = np.where(neg, P0[j], P0[N] - P0[j])               # moments over each neuron's active range
        s1 = np.where(neg, P1[j], P1[N] - P1[j])
        grad[k] = np.concatenate([2 * v * s1, 2 * v * s0, 2 * (wv * s1 + bv * s0), [2 * P0[N]]])
    return risk, grad
