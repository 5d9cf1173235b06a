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

import numpy as np

from ._arrays import to_host, to_native
from ._validate import as_real, as_theta
from .estimators import Estimator, MonteCarlo, Points, QuasiMonteCarlo
from .geometry import forward
from .problem import Problem

__all__ = ["spectrum", "rank", "expected_zero_eigenvalues", "dead_mask"]


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
