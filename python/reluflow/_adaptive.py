"""What the adaptive Python drivers share (dopri5 in ``reluflow.flows``, RODAS3 in ``reluflow.stiff``):
the per-network stop codes and tests, the initial step, the records on a time grid and the statuses
after a step. Plain numpy, below both modules in the layers, so that neither copies the other.
"""
from __future__ import annotations

import numpy as np

# Why a network was frozen: the codes of tableaux::StopReason (cpp/include/reluflow/tableaux.h), which
# the C++ loops return and the Python drivers compute alike; flows.Run.reason holds the texts.
RUNNING, RISK_GREW, RISK_NOT_FINITE, GRAD_NOT_FINITE, OVER_MAX_ABS, PARAMS_NOT_FINITE = range(6)


def finite_rows(a: np.ndarray) -> np.ndarray:
    """(n,) bool: row i of a (n, ...) has only finite entries."""
    return np.all(np.isfinite(a.reshape(a.shape[0], -1)), axis=1)


def risk_reason(risk: np.ndarray, risk0: np.ndarray, max_growth: float) -> np.ndarray:
    """tableaux::risk_reason per network: not finite, else above max_growth x a positive start."""
    with np.errstate(invalid="ignore", over="ignore"):
        grew = (risk0 > 0) & (risk > max_growth * risk0)
    return np.where(~np.isfinite(risk), RISK_NOT_FINITE, np.where(grew, RISK_GREW, RUNNING))


def params_reason(new: np.ndarray, max_abs: float) -> np.ndarray:
    """tableaux::params_reason per row of new (n, P): not finite first, then beyond max_abs."""
    over = np.any(np.abs(np.where(np.isfinite(new), new, 0)) > max_abs, axis=1)
    return np.where(~finite_rows(new), PARAMS_NOT_FINITE, np.where(over, OVER_MAX_ABS, RUNNING))


def initial_step(th: np.ndarray, g: np.ndarray, h0: float | None, rtol: float, atol: float,
                 t_end: float) -> np.ndarray:
    """(K,) first step sizes: ``h0`` for every network, or Hairer–Wanner's simple guess per network
    from theta (K, P) and its field G (K, P); at most t_end."""
    if h0 is None:
        sc = atol + rtol * np.abs(th)
        d0 = np.sqrt(np.mean((th / sc) ** 2, axis=1))
        d1 = np.sqrt(np.mean((g / sc) ** 2, axis=1))
        h = np.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / np.maximum(d1, 1e-300))
    else:
        h = np.full(th.shape[0], h0)
    return np.minimum(h, t_end)


def record_grid(t_end: float, rec_dt: float) -> np.ndarray:
    """(T,) record times 0, rec_dt, 2 rec_dt, ... below t_end, then t_end itself (the last entry)."""
    grid = np.arange(0.0, t_end, rec_dt)
    return np.append(grid, t_end) if grid[-1] < t_end else grid


class GridRecords:
    """The records of K networks on the time grid (T,) (its last entry t_end): risk, |G| and energy
    (T, K), NaN where not reached, and theta (T, K, P) when asked. Each network records every grid
    time it has reached (up to a relative 1e-12 of t_end); ``nxt`` (K,) is its next grid index."""

    def __init__(self, grid: np.ndarray, theta: np.ndarray, record_theta: bool):
        T, K = grid.size, theta.shape[0]
        self.grid, self.t_end = grid, float(grid[-1])
        self.risk, self.grad_norm, self.energy = (np.full((T, K), np.nan) for _ in range(3))
        self.theta = np.full((T,) + theta.shape, np.nan, dtype=theta.dtype) if record_theta else None
        self.nxt = np.zeros(K, dtype=np.int64)

    def target(self, idx: np.ndarray) -> np.ndarray:
        """The next grid time of the networks idx (the last one once every time is recorded)."""
        return self.grid[np.minimum(self.nxt[idx], self.grid.size - 1)]

    def landing_step(self, h: np.ndarray, t: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(target, step) for the networks idx: h cut to land exactly on the next record time (keeps the
        records exact and each network's trajectory independent of the others)."""
        target = self.target(idx)
        hh = np.minimum(h[idx], np.maximum(target - t[idx], 0.0))
        return target, np.where(hh <= 0, h[idx], hh)

    def due(self, sel: np.ndarray, t: np.ndarray, risk: np.ndarray, grad_norm: np.ndarray,
            energy: np.ndarray, th: np.ndarray) -> None:
        """Record the networks ``sel`` (K,) bool at every grid time their time t (K,) has reached."""
        T = self.grid.size
        for k in np.flatnonzero(sel):
            while self.nxt[k] < T and self.grid[self.nxt[k]] <= t[k] + 1e-12 * self.t_end:
                j = self.nxt[k]
                self.risk[j, k], self.grad_norm[j, k], self.energy[j, k] = risk[k], grad_norm[k], energy[k]
                if self.theta is not None:
                    self.theta[j, k] = th[k]
                self.nxt[k] += 1

    def due_accepted(self, a_idx: np.ndarray, t: np.ndarray, risk_a: np.ndarray, grad_norm_a: np.ndarray,
                     energy: np.ndarray, th: np.ndarray) -> None:
        """``due`` for the networks a_idx (n,) that have just accepted a step, with their risk and |G|
        (n,) at the new state; t, energy (K,) and th (K, P) hold every network's state."""
        K = t.shape[0]
        r_full = np.full(K, np.nan)
        r_full[a_idx] = risk_a
        g_full = np.full(K, np.nan)
        g_full[a_idx] = grad_norm_a
        self.due(np.isin(np.arange(K), a_idx), t, r_full, g_full, energy, th)


def start_state(grid: np.ndarray, theta: np.ndarray, record_theta: bool):
    """The per-network state of an adaptive driver before its first step, for theta (K, P):
    (rec, t, energy, accepted, rejected, streak, status, done, reason, growth, th) with rec the
    GridRecords on grid (T,), t and energy (K,) zeros, accepted, rejected, streak (K,) int64 zeros,
    status (K,) object "ok", done (K,) False, reason (K,) uint8 RUNNING, growth (K,) zeros and th
    (K, P) theta as float64 (a copy)."""
    K = theta.shape[0]
    rec = GridRecords(grid, theta, record_theta)
    t = np.zeros(K)
    energy = np.zeros(K)
    accepted, rejected, streak = (np.zeros(K, dtype=np.int64) for _ in range(3))
    status = np.array(["ok"] * K, dtype=object)
    done = np.zeros(K, dtype=bool)
    reason, growth = np.zeros(K, dtype=np.uint8), np.zeros(K)
    return rec, t, energy, accepted, rejected, streak, status, done, reason, growth, theta.astype(np.float64)


def halted(stop_hit: bool, iters: int, max_steps: int, status: np.ndarray, done: np.ndarray) -> bool:
    """Whether the loop ends before its step number ``iters`` (1, 2, ...): on Ctrl-C (``stop_hit``) the
    running networks (``~done``, (K,) bool) become "interrupted", past max_steps "max_steps" (status (K,),
    in place); each keeps its state at its own time."""
    if stop_hit:
        status[~done] = "interrupted"
        return True
    if iters > max_steps:
        status[~done] = "max_steps"
        return True
    return False


def step_size_factor(err: np.ndarray, expo: float, bad: np.ndarray) -> np.ndarray:
    """The step-size factor from the error norm (safety 0.9, in [0.2, 5]; 0.2 where ``bad``)."""
    with np.errstate(divide="ignore", over="ignore"):
        fac = np.where(err > 0, 0.9 * np.power(np.maximum(err, 1e-300), expo), 5.0)
    fac = np.clip(np.where(np.isfinite(fac), fac, 0.2), 0.2, 5.0)
    return np.where(bad, 0.2, fac)


def end_of_step(status: np.ndarray, reason: np.ndarray, idx: np.ndarray, h: np.ndarray, streak: np.ndarray,
                bad: np.ndarray, bad_why: np.ndarray, risk_why: np.ndarray, max_rejections: int,
                min_step: float) -> None:
    """The statuses of the networks idx after a step (in place): a bad state that cannot be stepped
    around (too many rejections in a row, or a step below min_step) is "diverged" with its reason;
    otherwise those limits give "max_rejections" / "min_step"; a blown-up risk at the accepted state
    ends the network whatever the step size says."""
    stuck = streak[idx] >= max_rejections
    tiny = h[idx] < min_step
    status[idx[bad & (stuck | tiny)]] = "diverged"
    reason[idx[bad & (stuck | tiny)]] = bad_why[bad & (stuck | tiny)]
    status[idx[stuck & ~bad]] = "max_rejections"
    status[idx[tiny & ~stuck & ~bad]] = "min_step"
    blew = risk_why != RUNNING
    status[idx[blew]], reason[idx[blew]] = "diverged", risk_why[blew]
