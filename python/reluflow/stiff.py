"""The stiff integrator of the gradient flow: ``gradient_flow(..., method="rosenbrock")`` (SPEC §8).

Long gradient flows are stiff: near a critical point the Hessian H of the risk has a few large
eigenvalues (fast directions, decayed long ago) and many tiny ones (the slow approach along flat
directions, polynomial in t). An explicit method such as dopri5 must keep ``h * lambda_max`` inside its
stability region however small the fast components have become, so reaching t = 10^6 costs it about
``10^6 * lambda_max / 3.3`` steps. A linearly implicit (Rosenbrock) method with the exact Jacobian
``J = -H`` is stable for every step size, and its steps grow with the slow time scale.

Method: RODAS3, the 4-stage, order 3 Rosenbrock method with an embedded order-2 error estimate of
A. Sandu, J. G. Verwer, J. G. Blom, E. J. Spee, G. R. Carmichael, F. A. Potra, "Benchmarking stiff ODE
solvers for atmospheric chemistry problems II: Rosenbrock solvers", Atmospheric Environment 31 (1997)
3459-3472 (the tableau as the Kinetic PreProcessor KPP ships it, ``Rodas3`` in its rosenbrock
integrator, in KPP's form ``(I/(h gamma) - J) K_i = f(Y_i) + sum_j C_ij K_j / h``). Why this one:
it is L-stable (the fast, decayed directions are damped completely, R(inf) = 0, rather than
oscillating, as with the only A-stable ROS3P), stiffly accurate (the solution is the last stage, so
the embedded estimate is a whole stage, ``K_4``, and the kinks of the generalized gradient are seen
by the error control), needs only three gradient evaluations per step (stage 2 reuses stage 1's),
and order 3 suits the rtol of 1e-4..1e-8 that long flows are run with. Its order conditions assume
the exact Jacobian: here it is, the Hessian of the risk estimate (``Problem.hessian``).

Cost: one dense Hessian (K, P, P) per accepted step (``Problem.hessian``: P Hessian-vector products)
and one symmetric eigendecomposition of it per network (``numpy.linalg.eigh`` over the K networks),
O(P^3) per step: the method suits P up to a few thousand. The eigendecomposition (instead of an LU of
``I/(h gamma) + H``) solves the four stage systems in O(P^2) each and is reused, with the new step size,
after a rejected step, since the Hessian at the step's start has not changed.

Per network: each of the K networks has its own time, step size, accept/reject decision, Hessian and
status, as in dopri5's Python driver, so a network's trajectory does not depend on its batch.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ._adaptive import GRAD_NOT_FINITE as _GRAD_NOT_FINITE
from ._adaptive import RISK_GREW as _RISK_GREW
from ._adaptive import RISK_NOT_FINITE as _RISK_NOT_FINITE
from ._adaptive import RUNNING as _RUNNING
from ._adaptive import end_of_step, halted, initial_step, params_reason, risk_reason, start_state, step_size_factor
from ._adaptive import finite_rows as _finite_rows
from ._arrays import from_host, is_numpy, to_host

__all__ = ["rosenbrock_run", "check_arguments", "RODAS3"]


#: RODAS3 (Sandu et al. 1997) in KPP's form: gamma, the strictly lower A and C (stage i's point is
#: y + sum_j A_ij K_j, its right-hand side f(Y_i) + sum_j C_ij K_j / h), the solution weights M and
#: the error weights E (stiffly accurate: y_new = Y_4 + K_4, the error estimate is K_4).
RODAS3 = {
    "gamma": 0.5,
    "A": np.array([[0, 0, 0, 0], [0, 0, 0, 0], [2, 0, 0, 0], [2, 0, 1, 0]], dtype=float),
    "C": np.array([[0, 0, 0, 0], [4, 0, 0, 0], [1, -1, 0, 0], [1, -1, -8 / 3, 0]], dtype=float),
    "M": np.array([2, 0, 1, 1], dtype=float),
    "E": np.array([0, 0, 0, 1], dtype=float),
    "order": 3,   # the error estimate is of order 2: the step size factor is err^(-1/3)
}


class _Jacobian:
    """The Hessians of the running networks and their eigendecompositions, per network: computed at a
    network's state when it changed (start, accepted step), reused after a rejection. Frozen
    parameters are left out of the linear systems (their rows and columns are zero, the diagonal the
    identity: their stage increments are exactly zero)."""

    def __init__(self, prob, field_, K: int):
        self.prob, self.field, P = prob, field_, prob.num_params
        self.free = np.ones(P, dtype=bool) if field_.frozen is None else ~field_.frozen
        n = int(self.free.sum())
        self.lam = np.zeros((K, n))                  # eigenvalues of H restricted to the free params
        self.Q = np.zeros((K, n, n))                 # and its orthonormal eigenvectors
        self.finite = np.ones(K, dtype=bool)
        self.count = np.zeros(K, dtype=np.int64)     # Hessians computed per network
        self.calls = 0

    def update(self, idx: np.ndarray, y: np.ndarray) -> None:
        """Hessians at y (n, P) float64 of the networks idx."""
        if idx.size == 0:
            return
        f = self.field
        if is_numpy(f.xp):
            H = np.asarray(self.prob.hessian(y, f.est, backend=f.plan.backend), dtype=np.float64)
        else:  # in the caller's namespace, on its device, like the field
            H = np.asarray(to_host(self.prob.hessian(from_host(f.xp, y, f.like), f.est, backend=f.plan.backend)),
                           dtype=np.float64)
        self.calls += 1
        self.count[idx] += 1
        H = H[:, self.free][:, :, self.free]
        ok = np.all(np.isfinite(H.reshape(H.shape[0], -1)), axis=1)
        H[~ok] = 0.0                                  # such a network is stopped by the caller
        lam, Q = np.linalg.eigh(H)
        self.lam[idx], self.Q[idx], self.finite[idx] = lam, Q, ok

    def curvature(self, idx: np.ndarray, v: np.ndarray) -> np.ndarray:
        """v^T H v (n,) for the networks idx, v (n, P) (zero on the frozen parameters)."""
        c = np.einsum("kji,kj->ki", self.Q[idx], v[:, self.free])
        return np.sum(self.lam[idx] * c * c, axis=1)

    def solver(self, idx: np.ndarray, h: np.ndarray, gamma: float):
        """A function r (n, P) -> (I/(h gamma) + H)^-1 r for the networks idx with steps h (n,), and
        (n,) bool: where the matrix is positive definite (I/(h gamma) + H singular or indefinite: a
        step far too long for a direction of negative curvature, rejected by the caller)."""
        lam, Q, free = self.lam[idx], self.Q[idx], self.free
        d = 1.0 / (h * gamma)[:, None] + lam
        good = np.all(d > 0, axis=1)
        inv = np.where(good[:, None], 1.0 / np.where(d > 0, d, 1.0), 0.0)

        def solve(r: np.ndarray) -> np.ndarray:
            out = np.zeros_like(r)
            c = np.einsum("kji,kj->ki", Q, r[:, free])          # Q^T r
            out[:, free] = np.einsum("kij,kj->ki", Q, c * inv)  # Q diag(inv) Q^T r
            return out

        return solve, good


def check_arguments(normalized: bool, estimator) -> None:
    """What ``method="rosenbrock"`` refuses, before anything runs: the normalized flow, a resampled
    (stochastic) estimator."""
    if normalized:
        raise ValueError("normalized: method='rosenbrock' does not integrate the normalized flow (its Jacobian "
                         "would need the derivative of the tangent projection, and the retraction after each "
                         "step breaks the linearly implicit stages); use method='dopri5'")
    if estimator.stochastic:
        raise ValueError("estimator: method='rosenbrock' needs a deterministic vector field with a Hessian; use "
                         "Quadrature, QuasiMonteCarlo, Points or MonteCarlo(resample=False)")


def rosenbrock_run(prob, field_, theta: np.ndarray, t_end: float, h0: float | None, rtol: float, atol: float,
                   grid: np.ndarray, max_abs: float, max_steps: int, max_rejections: int, min_step: float,
                   record_theta: bool, max_growth: float, stop, progress: Callable[[float], None] | None) -> dict:
    """RODAS3 for the gradient flow of K networks: the loop of ``gradient_flow(..., method="rosenbrock")``,
    which has checked every argument and wraps the result into a Run as it does dopri5's C++ loop.

    prob : the Problem (its ``hessian``); field_ : flows' vector field (``field_(theta, step)`` -> risk
    (n,), G (n, P) for a subset of networks; ``.frozen``, ``.est``, ``.plan``, ``.xp``, ``.like``);
    theta : (K, P) host numpy; grid : (T,) record times, the last t_end; stop : an object whose ``hit``
    turns True on Ctrl-C (flows' handler); progress : called with the smallest time reached, or None;

    Returns a dict: theta (K, P) in theta's dtype, risk, grad_norm, energy (T, K) (NaN where not
    reached), thetas (T, K, P) or None, status (K,) str ("ok", "diverged", "max_steps",
    "max_rejections", "min_step", "interrupted"), accepted, rejected (K,), reason (K,) codes, growth (K,),
    t (K,) time reached, evaluations (gradient calls), hessians (K,) per network, hessian_calls,
    interrupted (bool).
    """
    K = theta.shape[0]
    tab = RODAS3
    gamma, A, C, M, E = tab["gamma"], tab["A"], tab["C"], tab["M"], tab["E"]
    expo = -1.0 / tab["order"]

    rec, t, energy, accepted, rejected, streak, status, done, reason, growth, th = start_state(grid, theta,
                                                                                              record_theta)
    risk, g = field_(theta, 0)
    g = g.astype(np.float64)                   # G at each network's current state (f = -G)
    gn2 = np.sum(g * g, axis=1)
    risk0 = risk.copy()
    start_bad = ~np.isfinite(risk) | ~_finite_rows(g)
    reason[start_bad] = np.where(~np.isfinite(risk[start_bad]), _RISK_NOT_FINITE, _GRAD_NOT_FINITE)
    status[start_bad], done[start_bad] = "diverged", True
    jac = _Jacobian(prob, field_, K)
    stale = ~done                              # the Hessian must be (re)computed at the current state
    h = initial_step(th, g, h0, rtol, atol, t_end)   # as dopri5
    rec.due(~start_bad, t, risk, np.sqrt(gn2), energy, th)
    iters = 0
    while not done.all():
        iters += 1
        if halted(stop.hit, iters, max_steps, status, done):
            break
        idx = np.flatnonzero(~done)
        new_h = idx[stale[idx]]
        jac.update(new_h, th[new_h])
        stale[new_h] = False
        target, hh = rec.landing_step(h, t, idx)
        y = th[idx]
        solve, definite = jac.solver(idx, hh, gamma)
        gHg = jac.curvature(idx, g[idx])
        inv_h = (1.0 / hh)[:, None]
        # the stages: (I/(h gamma) + H) K_i = f(Y_i) + sum_j C_ij K_j / h, f = -G
        ks, f_prev, stage_fin = [], -g[idx], np.ones(idx.size, dtype=bool)
        for s in range(4):
            if s == 0 or A[s].any():
                if s > 0:
                    stage = y + sum(A[s, j] * ks[j] for j in range(s) if A[s, j] != 0)
                    fin = _finite_rows(stage)
                    stage_fin &= fin
                    _, gs = field_(np.where(fin[:, None], stage, y).astype(theta.dtype), 0)
                    f_prev = -gs.astype(np.float64)
            rhs = f_prev + inv_h * sum(C[s, j] * ks[j] for j in range(s) if C[s, j] != 0)
            ks.append(solve(rhs))
        y_new = y + sum(m * k for m, k in zip(M, ks) if m != 0)
        err_vec = sum(e * k for e, k in zip(E, ks) if e != 0)
        sc = atol + rtol * np.maximum(np.abs(y), np.abs(y_new))
        err = np.sqrt(np.mean((err_vec / sc) ** 2, axis=1))
        err = np.where(definite & stage_fin, err, np.inf)   # too long a step for the curvature
        bad_why = params_reason(y_new, max_abs)
        # a NaN error estimate alone comes from a non-finite stage gradient or Hessian
        bad_why = np.where((bad_why == _RUNNING) & (np.isnan(err) | ~jac.finite[idx]), _GRAD_NOT_FINITE,
                           bad_why)
        bad = bad_why != _RUNNING
        acc = (err <= 1.0) & ~bad
        risk_why = np.zeros(idx.size, dtype=np.uint8)
        a_idx = idx[acc]
        if a_idx.size:
            # G at the new state: the energy's trapezoid, the record, and the next step's stage 1
            r_a, g_a = field_(y_new[acc].astype(theta.dtype), 0)
            g_a = g_a.astype(np.float64)
            gn2_a = np.sum(g_a * g_a, axis=1)
            # int |G|^2 over the step by the quadratic through |G|^2 at both ends and its slope
            # d|G|^2/dt = -2 G^T H G at the start (the Hessian is at hand): h (2 f0 + f1)/3 + h^2 f0'/6
            energy[a_idx] += (hh * 2 * gn2[idx] / 3 - hh ** 2 * gHg / 3)[acc] + hh[acc] * gn2_a / 3
            th[a_idx] = y_new[acc]
            g[a_idx], gn2[a_idx] = g_a, gn2_a
            t[a_idx] = np.where(np.abs(t[a_idx] + hh[acc] - target[acc]) <= 1e-12 * t_end, target[acc],
                                t[a_idx] + hh[acc])
            stale[a_idx] = True
            accepted[a_idx] += 1
            streak[a_idx] = 0
            risk_why[acc] = risk_reason(r_a, risk0[a_idx], max_growth)
            risk_why[acc] = np.where((risk_why[acc] == _RUNNING) & ~_finite_rows(g_a), _GRAD_NOT_FINITE,
                                     risk_why[acc])
            grew = risk_why[acc] == _RISK_GREW
            growth[a_idx[grew]] = r_a[grew] / risk0[a_idx[grew]]
            rec.due_accepted(a_idx, t, r_a, np.sqrt(gn2_a), energy, th)
        r_idx = idx[~acc]
        rejected[r_idx] += 1
        streak[r_idx] += 1
        # step size update (safety 0.9, factor in [0.2, 5], no growth after a rejection), as dopri5
        # with the exponent of an order-2 estimate; a rejection at a kink of G shrinks the step
        # until the step across the kink is accurate enough (the error of such a step is O(h))
        fac = step_size_factor(err, expo, bad)
        h[idx] = hh * np.where(acc, fac, np.minimum(fac, 1.0))
        end_of_step(status, reason, idx, h, streak, bad, bad_why, risk_why, max_rejections, min_step)
        done |= (t >= t_end - 1e-12 * t_end) | (status != "ok")
        if progress is not None:
            progress(float(np.min(t)))
    return {"theta": th.astype(theta.dtype), "risk": rec.risk, "grad_norm": rec.grad_norm, "energy": rec.energy,
            "thetas": rec.theta, "status": status.astype(str), "accepted": accepted, "rejected": rejected,
            "reason": reason, "growth": growth, "t": t, "evaluations": field_.evaluations,
            "hessians": jac.count, "hessian_calls": jac.calls, "interrupted": bool(stop.hit)}
