"""The risk landscape near critical points (SPEC §8): Hessian spectra, numerical rank, and the number
of zero eigenvalues that the symmetries of ReLU networks force.

At a critical point of a ReLU network's risk, two symmetries give zero eigenvalues of the Hessian:

* positive homogeneity: every hidden neuron that is alive on the nodes can be rescaled,
  ``(w_i, b_i) -> c (w_i, b_i)``, outgoing weights ``-> / c``, without changing the network: one zero
  direction per alive hidden neuron;
* dead neurons: a hidden neuron inactive on every node leaves the risk unchanged whatever its
  incoming weights, bias and outgoing weights (locally): all of them are zero directions.

``rank`` against ``num_params - expected_zero_eigenvalues`` tells a regular minimum (seed 002: rank
= P - expected) from one with extra flat directions. The Hessian is :meth:`Problem.hessian` (the exact
Hessian of a sampled risk).
"""
from __future__ import annotations

import warnings

import numpy as np

from dataclasses import dataclass

from ._arrays import to_host, to_native
from ._validate import as_int, as_real, as_theta
from .estimators import Estimator, MonteCarlo, Points, QuasiMonteCarlo
from .flows import _check_frozen
from .backends import get as backend_for
from .backends import reference as reference_backend
from .geometry import forward
from .problem import Problem
from .quadrature import nodes_1d

__all__ = ["spectrum", "rank", "expected_zero_eigenvalues", "dead_mask", "polish", "Polished"]


def _check(prob) -> None:
    if not isinstance(prob, Problem):
        raise TypeError(f"prob: expected a reluflow.Problem, got {type(prob).__name__}")


def spectrum(prob: Problem, theta, estimator: Estimator, backend: str = "auto") -> np.ndarray:
    """Eigenvalues of the Hessian of the risk estimate, ascending: theta (K, P) -> (K, P), float64."""
    _check(prob)
    H = np.asarray(prob.hessian(np.asarray(to_host(to_native(theta, "theta")[0]), dtype=np.float64), estimator,
                                backend))
    return np.linalg.eigvalsh(H)


def rank(prob: Problem, theta, estimator: Estimator, tol: float | None = None, backend: str = "auto") -> np.ndarray:
    """Numerical rank of the Hessian per network: (K,) ints, the eigenvalues with ``|lambda| > tol``;
    default ``tol = P * eps * max |lambda|`` (numpy's matrix_rank rule)."""
    ev = spectrum(prob, theta, estimator, backend)
    scale = np.abs(ev).max(axis=1)
    if tol is None:
        cut = ev.shape[1] * np.finfo(np.float64).eps * scale
    else:
        t = as_real(tol, "tol")
        if t < 0:
            raise ValueError(f"tol: expected tol >= 0, got {t}")
        cut = np.full(ev.shape[0], t)
    return np.sum(np.abs(ev) > cut[:, None], axis=1)


def dead_mask(prob: Problem, theta, estimator: "Points | MonteCarlo | QuasiMonteCarlo", step: int = 0) -> list:
    """Per hidden layer, (K, l_k) bool: the neurons inactive (pre-activation <= 0) at every node."""
    _check(prob)
    if not isinstance(estimator, (Points, MonteCarlo, QuasiMonteCarlo)):
        raise TypeError(f"estimator: expected Points, MonteCarlo or QuasiMonteCarlo (nodes that see a neuron "
                        f"dead on the support), got {type(estimator).__name__}")
    theta = np.asarray(to_host(as_theta(theta, prob.num_params)), dtype=np.float64)
    zs = forward(prob.layout.unpack(theta), estimator.nodes(prob.spec, step).x)
    return [np.all(z <= 0, axis=1) for z in zs[:-1]]


def expected_zero_eigenvalues(prob: Problem, theta, estimator: "Points | MonteCarlo | QuasiMonteCarlo",
                              step: int = 0) -> np.ndarray:
    """(K,) ints: the zero eigenvalues of the Hessian that homogeneity and dead neurons force at a
    critical point (one per alive hidden neuron; every incoming weight, bias and outgoing weight of a
    dead neuron, counted once). More zeros mean further degeneracy; fewer are impossible at a
    critical point."""
    dead = dead_mask(prob, theta, estimator, step)
    lay = prob.layout
    K = dead[0].shape[0] if dead else np.asarray(theta).shape[0]
    out = np.zeros(K, dtype=np.int64)
    for k in range(K):
        flat = np.zeros(lay.num_params, dtype=bool)
        alive = 0
        for layer, d in enumerate(dead):
            lo, li = lay.widths[layer + 1], lay.widths[layer]
            W = np.arange(lay.w_offsets[layer], lay.w_offsets[layer] + lo * li).reshape(lo, li)
            b = np.arange(lay.b_offsets[layer], lay.b_offsets[layer] + lo)
            nxt = lay.widths[layer + 2]
            W_next = np.arange(lay.w_offsets[layer + 1], lay.w_offsets[layer + 1] + nxt * lo).reshape(nxt, lo)
            for i in range(lo):
                if d[k, i]:
                    flat[W[i]] = flat[b[i]] = True
                    flat[W_next[:, i]] = True
                else:
                    alive += 1
        out[k] = alive + int(flat.sum())
    return out


# ---- polish: Newton-type steps to the nearby critical point (SPEC §8) ---------------------------------

POLISH_METHODS = ("newton", "trust-region", "levenberg-marquardt")
DEFAULT_MAX_ITER = {"newton": 50, "trust-region": 50, "levenberg-marquardt": 500}


def _gauss_newton_system(prob: Problem, th: np.ndarray, estimator: Estimator, backend: str,
                         chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """``(J^T W J (P, P), J^T W r (P,))`` of one network th (P,): J (N out, P) the Jacobian of the network's
    outputs at the estimator's nodes, W their weights, r the residuals, so that the risk is ``r^T W r``
    and its gradient ``2 J^T W r``. The nodes are the risk's own: the network's kink partition for
    ``Quadrature()`` in 1-D (exact for piecewise-polynomial targets), the fixed point set otherwise.
    Accumulated over chunks of nodes (J is never whole in memory)."""
    spec, lay = prob.spec, prob.layout
    p = prob.plan(estimator, backend, th[None])
    if p.route == "gaussian_closed_form":
        raise ValueError("method: 'levenberg-marquardt' needs the risk as a weighted sum of squared residuals at "
                         "nodes, and Exact() under Gaussian input is a closed form: use 'newton' or 'trust-region'")
    if p.route in ("exact_sweep", "partition"):
        nodes = nodes_1d(spec, th, p.estimator)
        y = reference_backend.target_values(spec, nodes)
    else:
        nodes = backend_for(p).fixed_nodes(p, spec, 0)
        y = nodes.y
    w = np.asarray(to_host(nodes.w), dtype=np.float64)
    x = np.asarray(to_host(nodes.x), dtype=np.float64).reshape(w.shape[0], -1)
    y = np.asarray(to_host(y), dtype=np.float64).reshape(w.shape[0], -1)
    zero = nodes.zero
    params = lay.unpack(th[None])
    P, out = lay.num_params, lay.widths[-1]
    A, b = np.zeros((P, P)), np.zeros(P)
    for s in range(0, x.shape[0], chunk):
        e = min(x.shape[0], s + chunk)
        zs = forward(params, x[s:e], np, None if zero is None else np.asarray(zero)[s:e])
        r = zs[-1][0] - y[s:e]                                        # (n, out)
        for o in range(out):                                          # rows of J for output o
            delta = np.zeros((e - s, out))
            delta[:, o] = 1.0
            grads = []
            for k in range(lay.num_layers - 1, -1, -1):
                a_prev = x[s:e] if k == 0 else np.maximum(zs[k - 1][0], 0.0)
                grads.append((delta[:, :, None] * a_prev[:, None, :], delta))
                if k > 0:
                    delta = (delta @ params[k][0][0]) * (zs[k - 1][0] > 0)
            J = lay.pack(grads[::-1], np)                             # (n, P)
            Jw = J * w[s:e, None]
            A += J.T @ Jw
            b += Jw.T @ r[:, o]
    return A, b


@dataclass
class Polished:
    """The result of :func:`polish`, per network.

    theta : (K, P) float64, the polished parameters (the input where a network could not be improved).
    risk : (K,) its risk; grad_norm : (K,) |G| over the free parameters; iterations : (K,) Newton steps
    taken; status : (K,) "converged" (grad_norm <= gtol), "max_iter", "stalled" (no step reduced |G|:
    the critical point is not isolated to rounding, or the risk is not smooth there) or "not_finite".
    """

    theta: np.ndarray
    risk: np.ndarray
    grad_norm: np.ndarray
    iterations: np.ndarray
    status: np.ndarray

    def __repr__(self) -> str:
        kinds, counts = np.unique(self.status, return_counts=True)
        summary = ", ".join(f"{c} {k}" for k, c in zip(kinds, counts))
        return f"Polished(K={self.theta.shape[0]}: {summary}; max |G| = {np.max(self.grad_norm):.2e})"


def _solve_or_none(A: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """-A^-1 b, or None where A is singular to working precision."""
    try:
        return -np.linalg.solve(A, b)
    except np.linalg.LinAlgError:
        return None


def polish(prob: Problem, theta, estimator: Estimator, method: str = "newton", gtol: float = 1e-12,
           max_iter: int | None = None, frozen=None, backend: str = "auto") -> Polished:
    """Converge each network to the nearby critical point of the risk (SPEC §8), in float64.

    Parameters
    ----------
    prob : the Problem; theta : (K, P) starting points (e.g. the end of a flow: ``run.theta``);
    estimator : any estimator whose risk is smooth near theta: ``Quadrature()`` in 1-D (exact gradient
        and the exact Hessian with its moving-kink terms) or a fixed point set (Points, QMC, MC without
        resampling).
    method : "newton": the step solves H d = -G in the least-squares sense (pseudo-inverse: the
        Hessian of a ReLU net is singular at its critical points, one zero direction per alive neuron
        from positive homogeneity), halved until |G| decreases; "trust-region": Levenberg-Marquardt steps on the
        equation G = 0, d = -(H^2 + mu I)^-1 H G from one eigendecomposition of H per iteration, mu
        raised until |G| decreases, lowered after a success: more robust farther from the critical
        point (a saddle's indefinite H included), each iteration costs an eigendecomposition;
        "levenberg-marquardt": Levenberg-Marquardt on the residuals, d = -(J^T W J + mu I)^-1 J^T W r with J
        the Jacobian of the outputs at the risk's own nodes (the kink partition for Quadrature()), mu
        raised until the risk decreases, lowered after a success: converges to minima only (the
        Gauss-Newton model is convex), also where they are not isolated: wide nets whose minima form
        manifolds (zero residual, [1, 256, 1] from the end of a flow: |G| <= 1e-12 in ~200 iterations,
        where "newton" and "trust-region" stall near 1e-4). Not for Exact() under Gaussian input.
    gtol : stop when |G| <= gtol (free parameters only); max_iter : steps per network (default 50 for
        "newton" and "trust-region", 500 for "levenberg-marquardt", whose convergence is linear at
        non-isolated minima);
    frozen : (P,) bool mask (``prob.mask``) of parameters kept fixed.

    Returns
    -------
    Polished: theta, risk, grad_norm, iterations, status, per network. Works on the critical point
    nearest in Newton's sense, minimum or saddle alike: classify it with :func:`spectrum`.
    """
    _check(prob)
    if not isinstance(method, str) or method not in POLISH_METHODS:
        raise ValueError(f"method: expected one of {POLISH_METHODS}, got {method!r}")
    gtol = as_real(gtol, "gtol")
    if not gtol >= 0:
        raise ValueError(f"gtol: expected a number >= 0, got {gtol}")
    max_iter = DEFAULT_MAX_ITER[method] if max_iter is None else as_int(max_iter, "max_iter", minimum=0)
    mask = _check_frozen(frozen, prob, False)
    free = np.ones(prob.num_params, dtype=bool) if mask is None else ~mask
    theta = np.array(as_theta(to_host(to_native(theta, "theta")[0]), prob.num_params), dtype=np.float64)
    K = theta.shape[0]
    risk, gnorm = np.empty(K), np.empty(K)
    iters, status = np.zeros(K, dtype=np.int64), np.empty(K, dtype=object)

    def evaluate(th):
        r, g = prob.risk_and_grad(th[None], estimator, backend=backend)
        g = np.asarray(g, dtype=np.float64)[0][free]
        return float(np.asarray(r)[0]), g, float(np.linalg.norm(g))

    for k in range(K):
        th = theta[k].copy()
        r, g, n = evaluate(th)
        mu = None                                     # trust-region damping, relative to max |lambda|^2
        status[k] = "max_iter"
        for it in range(max_iter + 1):
            if not (np.isfinite(r) and np.isfinite(n)):
                status[k] = "not_finite"
                break
            if n <= gtol:
                status[k] = "converged"
                break
            if it == max_iter:
                break
            if method == "levenberg-marquardt":
                A, bJ = _gauss_newton_system(prob, th, estimator, backend)
                A, bJ = A[np.ix_(free, free)], bJ[free]
                if not (np.all(np.isfinite(A)) and np.all(np.isfinite(bJ))):
                    status[k] = "not_finite"
                    break
                # Levenberg-Marquardt on the residuals: d = -(J^T W J + mu I)^-1 J^T W r, mu raised
                # tenfold until the risk decreases (a descent method: minima only)
                scale, eye = max(float(np.trace(A)) / A.shape[0], np.finfo(float).tiny), np.eye(A.shape[0])
                mu, mu_floor, mu_drop = (1e-3 if mu is None else mu), 1e-15, 10.0
                steps = (_solve_or_none(A + (mu * 10.0 ** j * scale) * eye, bJ) for j in range(40))
                better = lambda r_t, n_t: r_t < r or (r_t == r and n_t < n)  # noqa: E731
            else:
                H = np.asarray(prob.hessian(th[None], estimator, backend=backend), dtype=np.float64)[0][np.ix_(free, free)]
                if not np.all(np.isfinite(H)):
                    status[k] = "not_finite"
                    break
                better = lambda r_t, n_t: n_t < n  # noqa: E731   (|G| decreases: saddles too)
                if method == "newton":
                    # pseudo-inverse cut at 1e-10 of the largest eigenvalue: the (near-)null directions
                    # of the symmetries and of a manifold of minima are left alone
                    step = -np.linalg.lstsq(H, g, rcond=1e-10)[0]
                    steps = (step * 0.5 ** j for j in range(40))          # halved until |G| decreases
                else:
                    # Levenberg-Marquardt on the equation G(theta) = 0, whose Jacobian is H (symmetric):
                    # d = -(H^2 + mu I)^-1 H G. For large mu it is a small step along -H G, the steepest
                    # descent of |G|^2 / 2, so |G| decreases at any non-critical point of |G|^2, saddles
                    # and indefinite H included; for small mu it is the pseudo-inverse Newton step.
                    lam, Q = np.linalg.eigh(H)
                    gq, scale = Q.T @ g, max(float(np.max(np.abs(lam), initial=0.0)) ** 2, np.finfo(float).tiny)
                    mu, mu_floor, mu_drop = (1e-6 if mu is None else mu), 1e-20, 100.0
                    steps = (-Q @ (lam * gq / (lam * lam + mu * 10.0 ** j * scale)) for j in range(40))
            improved = False
            for j, d in enumerate(steps):
                if d is None:                                  # a singular system: raise mu
                    continue
                trial = th.copy()
                trial[free] += d
                r_t, g_t, n_t = evaluate(trial)
                if np.isfinite(r_t) and np.isfinite(n_t) and better(r_t, n_t):
                    th, r, g, n = trial, r_t, g_t, n_t
                    improved = True
                    if mu is not None:
                        mu = max(mu * 10.0 ** j / mu_drop, mu_floor)
                    break
            iters[k] = it + 1
            if not improved:
                status[k] = "converged" if n <= gtol else "stalled"
                break
        theta[k], risk[k], gnorm[k] = th, r, n
    stuck = int(np.sum((status == "stalled") | (status == "max_iter")))
    if stuck and method != "levenberg-marquardt" and prob.plan(estimator, backend, theta[:1]).route != "gaussian_closed_form":
        warnings.warn(f"polish: {stuck} of {K} networks did not reach |G| <= {gtol:g} with method={method!r}; "
                      "where the minima are not isolated (wide nets, zero risk) method='levenberg-marquardt' "
                      "converges (to minima only)", RuntimeWarning, stacklevel=2)
    return Polished(theta, risk, gnorm, iters, status)
