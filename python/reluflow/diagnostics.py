"""Diagnostics of the quantities the seeds' theorems speak about (SPEC §6), on a Run or on theta."""
from __future__ import annotations

import numpy as np

from ._arrays import to_host
from ._validate import as_float_array, as_int, as_real, as_theta
from .estimators import MonteCarlo, Points, QuasiMonteCarlo
from .flows import Run
from .geometry import forward
from .problem import Problem

__all__ = ["energy_defect", "balancedness", "dead_neurons", "convergence_rate"]


def _check_problem(prob) -> None:
    if not isinstance(prob, Problem):
        raise TypeError(f"prob: expected a reluflow.Problem, got {type(prob).__name__}")


def energy_defect(run: Run) -> np.ndarray:
    """Defect of the energy identity ``L(Θ_t) - L(Θ_0) + ∫_0^t |G|^2 ds``: (T, K).

    Zero for the exact flow; for an integrator it measures the discretization error (the integral
    is the integrator's own stage quadrature, accumulated during the run).
    """
    if not isinstance(run, Run):
        raise TypeError(f"run: expected a reluflow.Run, got {type(run).__name__}")
    return run.risk - run.risk[0] + run.energy


def balancedness(prob: Problem, theta) -> np.ndarray:
    """``|(w_i, b_i)|^2 - |outgoing weights of i|^2`` for every hidden neuron: (K, hidden neurons).

    Conserved by the exact gradient flow (ReLU is positively homogeneous); columns are the hidden
    neurons of layer 1, then layer 2, ...
    """
    _check_problem(prob)
    theta = as_theta(theta, prob.num_params)
    params = prob.layout.unpack(np.asarray(to_host(theta), dtype=np.float64))
    cols = []
    for k in range(prob.layout.num_layers - 1):
        W, b = params[k]
        W_next = params[k + 1][0]
        cols.append(np.sum(W * W, axis=2) + b * b - np.sum(W_next * W_next, axis=1))
    return np.concatenate(cols, axis=1) if cols else np.zeros((theta.shape[0], 0))


def dead_neurons(prob: Problem, theta, estimator: "Points | MonteCarlo | QuasiMonteCarlo",
                 step: int = 0) -> np.ndarray:
    """Number of hidden neurons inactive (pre-activation <= 0) at every node of ``estimator``: (K,).

    For a Quadrature estimator use a Points/QMC estimator instead: a dead neuron is one whose
    pre-activation is non-positive on the whole support, which dense nodes detect.
    """
    _check_problem(prob)
    theta = as_theta(theta, prob.num_params)
    if not isinstance(estimator, (Points, MonteCarlo, QuasiMonteCarlo)):
        raise TypeError(f"estimator: expected Points, MonteCarlo or QuasiMonteCarlo (dense nodes that "
                        f"detect a neuron dead on the support), got {type(estimator).__name__}")
    step = as_int(step, "step", minimum=0)
    x = estimator.nodes(prob.spec, step).x
    zs = forward(prob.layout.unpack(np.asarray(to_host(theta), dtype=np.float64)), x)
    dead = np.zeros(theta.shape[0], dtype=np.int64)
    for z in zs[:-1]:                                    # hidden pre-activations (K, N, l_k)
        dead += np.sum(np.all(z <= 0, axis=1), axis=1)
    return dead


def convergence_rate(run: Run, tail: float = 0.5, l_inf: float | np.ndarray | None = None) -> np.ndarray:
    """Fitted exponent α of ``L(Θ_t) - L_∞ ~ C t^-α`` per network: (K,).

    Least squares of log(L - L_∞) against log t over the last ``tail`` fraction of the records
    (t > 0). ``l_inf`` defaults to 0 (the risk's limit for the seeds' convergent settings).
    """
    if not isinstance(run, Run):
        raise TypeError(f"run: expected a reluflow.Run, got {type(run).__name__}")
    tail = as_real(tail, "tail")
    if not 0 < tail <= 1:
        raise ValueError(f"tail: expected a fraction in (0, 1], got {tail}")
    if l_inf is not None:
        l_inf = as_float_array(l_inf, "l_inf", ndim=(0, 1))   # finite, real
    t = run.t
    sel = (t > 0) & (t >= t[-1] * (1 - tail))
    if sel.sum() < 2:
        raise ValueError("run: needs at least two records with t > 0 in the fitted tail")
    excess = run.risk[sel] - (0.0 if l_inf is None else np.asarray(l_inf))
    lt = np.log(t[sel])
    alpha = np.full(run.risk.shape[1], np.nan)
    for k in range(run.risk.shape[1]):
        ok = np.isfinite(excess[:, k]) & (excess[:, k] > 0)
        if ok.sum() >= 2:
            alpha[k] = -np.polyfit(lt[ok], np.log(excess[ok, k]), 1)[0]
    return alpha
