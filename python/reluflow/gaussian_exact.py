"""Closed-form population risk, gradient and Hessian of shallow ReLU nets under Gaussian input.

Network ``N(x) = V relu(W x + b) + b2`` (widths ``[d, H, out]``, SPEC §1), input ``x ~ N(mean, cov)``,
target affine ``A x + b`` or a shallow ReLU teacher; risk ``L = E|N(x) - f(x)|^2`` (SPEC §2, no 1/2).

Derivation (kept short; every formula below is checked against numerical integration in the tests)
-----------------------------------------------------------------------------------------------------
1. Whitening. ``x = mean + Lc z``, ``Lc Lc^T = cov``, ``z ~ N(0, I_d)``. A unit ``relu(w.x + b)`` becomes
   ``relu(u.z + c)`` with ``u = Lc^T w``, ``c = b + w.mean``: the map ``q = (w, b) -> p = (u, c)`` is
   linear, ``p = B q`` with ``B = [[Lc^T, 0], [mean^T, 1]]``, so gradients map back by ``B^T g`` and
   Hessian blocks by ``B^T H B``. The affine target becomes ``A Lc z + (A mean + b)``.
2. Expansion. With ``s_i = relu(u_i.z + c_i)`` and teacher units ``t_j`` (outer weights ``Vt``, bias
   ``ct``) the residual is ``r = V s - Vt t - At z + (b2 - c0)``; ``E|r|^2`` is a sum of
   ``E[s_a s_b]`` (pairs of units), ``E[s_a]``, ``E[s_a z] = u_a Phi(alpha_a)`` (Stein) and constants.
   Derivatives in ``p_a = (u_a, c_a)`` with ``zt = (z, 1)``: ``d s_a = 1_a zt``,
   ``d^2 s_a = delta(u_a.z + c_a) zt zt^T``. So the pair kernels needed are
   ``Q0 = E[s_a s_b]``, ``Q1 = E[1_a s_b zt]``, ``Q2 = E[1_a 1_b zt zt^T]``, ``Q3 = E[delta_a s_b zt zt^T]``.
3. Two dimensions. Let ``n_a = |u_a|``, ``uh = u_a / n_a``, ``alpha = c_a / n_a`` (same for b, with
   ``beta``), ``rho = uh_a.uh_b``, ``r = sqrt(1 - rho^2)``, ``e2 = (uh_b - rho uh_a) / r``. With
   ``X = uh_a.z``, ``W = e2.z`` (independent standard normals; the rest of z is independent of both):
   ``s_a = n_a (X + alpha)_+``, ``s_b = n_b (rho X + r W + beta)_+``. Any ``E[g(X, W) zt zt^T]`` lifts
   from the six 2-D moments ``m0 = E g``, ``mX = E gX``, ``mW = E gW``, ``mXX = E g(X^2-1)``,
   ``mXW = E gXW``, ``mWW = E g(W^2-1)``:  ``E[g z] = mX uh + mW e2``,
   ``E[g z z^T] = m0 I + mXX uh uh^T + mXW (uh e2^T + e2 uh^T) + mWW e2 e2^T``.
   The centred second moments and the factor r carried by every W-moment make this exact at r = 0
   (parallel units), where e2 is undefined and set to 0.
4. Moments, by Stein's lemma ``E[Z h(Z)] = E[h'(Z)]`` and conditioning on a kink line.
   ``Phi2 = P(X > -alpha, Y > -beta)`` (bivariate, correlation rho), ``x = (alpha - rho beta)/r``,
   ``x' = (beta - rho alpha)/r``, ``P(m, r) = E(m + r Z)_+ = m Phi(m/r) + r phi(m/r)``:
   - ``g = 1_a 1_b``: ``m0 = Phi2``, ``mX = phi(alpha) Phi(x') + rho phi(beta) Phi(x)``,
     ``mW = r phi(beta) Phi(x)``, ``mXX = -alpha phi(alpha) Phi(x') + rho phi(beta) (r phi(x) -
     rho beta Phi(x))``, ``mXW = r phi(beta) (r phi(x) - rho beta Phi(x))``,
     ``mWW = -r phi(beta) (beta r Phi(x) + rho phi(x))``.
   - ``g = 1_a (Y + beta)_+``: ``m0 = phi(beta) Phi(x) + rho phi(alpha) Phi(x') + beta Phi2``,
     ``mX = phi(alpha) P(beta - rho alpha, r) + rho Phi2``, ``mW = r Phi2``.
   - ``g = (X + alpha)_+ (Y + beta)_+``: ``m0 = (alpha beta + rho) Phi2 + alpha phi(beta) Phi(x)
     + beta phi(alpha) Phi(x') + r phi(alpha) phi(x')``.
   - ``g = delta(X + alpha) (Y + beta)_+`` (on the line X = -alpha, ``Y + beta = r W + m``,
     ``m = beta - rho alpha``): ``phi(alpha) * (P, -alpha P, r Phi(m/r), (alpha^2 - 1) P,
     -alpha r Phi(m/r), r phi(m/r))``.
   Units scale these by ``n_a, n_b`` (``delta_a = delta(X + alpha) / n_a``).
5. Accuracy near parallel units (a student neuron converging to a teacher neuron): ``1 - rho`` and
   ``1 + rho`` are computed as ``|uh_a -+ uh_b|^2 / 2`` (not from the rounded rho), ``r`` from their
   product, ``alpha - rho beta = (alpha - beta) + (1 - rho) beta`` (or the ``1 + rho`` form), and the
   bivariate CDF takes ``1 - rho^2`` from the same numbers, so every term is evaluated at one
   consistent angle and the risk and gradient stay accurate to rounding as r -> 0. At r = 0 exactly,
   ``Phi(x)`` is the step with value 1/2 at 0 (two coinciding half-spaces split the mass evenly,
   which is what makes the formulas continuous there) and every ``r phi(.)`` term is 0.
   The cross block Q2 of two nearly coinciding units is intrinsically sensitive to their angle
   (its derivative contains the density on the intersection of the two kinks, ~ 1/r): there the
   Hessian is as accurate as the angle is determined by the floating-point inputs.
6. Zero incoming weights (``u_a = 0``, e.g. ``w_a = 0``): the unit is the constant ``relu(c_a)`` with
   derivative ``1{c_a > 0}`` (relu'(0) = 0), and its moving-kink (delta) terms are defined as 0 (they
   are 0 anyway unless ``c_a = 0``, where the risk is not twice differentiable). Pair kernels with
   such a unit reduce to single-unit moments of the other one.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ._validate import as_float_array, as_theta
from .layout import Layout

__all__ = ["bvn_cdf", "shallow_gaussian"]

_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
_erfc = np.frompyfunc(math.erfc, 1, 1)  # numpy has no erfc; libm's is accurate to ~1 ulp


# ----------------------------------------------------------------------------------------------
# one-dimensional normal
# ----------------------------------------------------------------------------------------------
def _Phi(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF, accurate in both tails (erfc, not 1 - ...)."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * _erfc(-x / _SQRT2).astype(np.float64).reshape(x.shape)


def _phi(x: np.ndarray) -> np.ndarray:
    """Standard normal density."""
    x = np.asarray(x, dtype=np.float64)
    return _INV_SQRT2PI * np.exp(-0.5 * x * x)


def _ratio_terms(m: np.ndarray, r: np.ndarray):
    """``Phi(m/r)``, ``r Phi(m/r)``, ``r phi(m/r)`` and ``P(m, r) = E(m + r Z)_+`` for ``r >= 0``,
    with the r = 0 limits: ``Phi(m/0)`` is the step (1/2 at m = 0), the other three are 0, 0, m_+."""
    pos = r > 0
    rs = np.where(pos, r, 1.0)
    t = np.where(pos, m / rs, 0.0)
    step = np.where(m > 0, 1.0, np.where(m < 0, 0.0, 0.5))
    Phi_t = np.where(pos, _Phi(t), step)
    rphi = np.where(pos, r * _phi(t), 0.0)
    rPhi = np.where(pos, r * Phi_t, 0.0)
    P = np.where(pos, m * Phi_t + rphi, np.maximum(m, 0.0))
    return Phi_t, rPhi, rphi, P


# ----------------------------------------------------------------------------------------------
# bivariate normal: Genz's BVND (Drezner-Wesolowsky with Gauss-Legendre; Genz 2004, Stat. Comput.)
# ----------------------------------------------------------------------------------------------
_GL = {n: np.polynomial.legendre.leggauss(n) for n in (6, 12, 20)}


def _bvn_upper(h: np.ndarray, k: np.ndarray, rho: np.ndarray, as_: np.ndarray) -> np.ndarray:
    """``P(X > h, Y > k)``, standard bivariate normal with correlation ``rho``; ``as_ = 1 - rho^2``
    given separately so that callers that know it more accurately than ``rho`` (nearly parallel
    units) pass it. Arrays of one shape, h and k finite."""
    out = np.empty(h.shape)
    ar = np.abs(rho)
    mid = ar < 0.925
    for lo, hi, n in ((0.0, 0.3, 6), (0.3, 0.75, 12), (0.75, 0.925, 20)):
        sel = mid & (ar >= lo) & (ar < hi)
        if np.any(sel):
            out[sel] = _bvn_mid(h[sel], k[sel], rho[sel], n)
    near = ~mid
    if np.any(near):
        out[near] = _bvn_near_one(h[near], k[near], rho[near], as_[near])
    return out


def _bvn_mid(h, k, rho, n):
    """|rho| < 0.925: integrate the density's derivative in rho, ``asin`` substitution."""
    x, w = _GL[n]
    hk = (h * k)[:, None]
    hs = ((h * h + k * k) / 2)[:, None]
    asr = np.arcsin(rho)[:, None]
    sn = np.sin(asr * (x[None, :] + 1) / 2)
    s = np.sum(w[None, :] * np.exp((sn * hk - hs) / (1 - sn * sn)), axis=1)
    return s * asr[:, 0] / (4 * math.pi) + _Phi(-h) * _Phi(-k)


def _bvn_near_one(h, k, rho, as_):
    """|rho| >= 0.925: Drezner-Wesolowsky's expansion about |rho| = 1 plus a Gauss-Legendre correction,
    written in ``as_ = 1 - rho^2`` (exact at as_ = 0)."""
    neg = rho < 0
    k = np.where(neg, -k, k)
    hk = h * k
    bvn = np.zeros(h.shape)
    inner = as_ > 0
    if np.any(inner):
        hh, kk, hki, asi = h[inner], k[inner], hk[inner], as_[inner]
        a = np.sqrt(asi)
        bs = (hh - kk) ** 2
        c = (4 - hki) / 8
        d = (12 - hki) / 16
        v = a * np.exp(-(bs / asi + hki) / 2) * (1 - c * (bs - asi) * (1 - d * bs / 5) / 3 + c * d * asi * asi / 5)
        guard = hki > -160  # exp(-hk/2) would overflow; the term is then below underflow anyway
        b = np.sqrt(bs)
        tail = np.exp(-np.where(guard, hki, 0.0) / 2) * math.sqrt(2 * math.pi) * _Phi(-b / a) * b \
            * (1 - c * bs * (1 - d * bs / 5) / 3)
        v = v - np.where(guard, tail, 0.0)
        x, w = _GL[20]
        ah = (a / 2)[:, None]
        xs = (ah * (x[None, :] + 1)) ** 2
        rs = np.sqrt(1 - xs)
        ep = np.exp(-hki[:, None] * xs / (2 * (1 + rs) ** 2)) / rs   # exp(-hk (1 - rs) / (2 (1 + rs)))
        sp = 1 + c[:, None] * xs * (1 + d[:, None] * xs)
        v = v + np.sum(ah * w[None, :] * np.exp(-(bs[:, None] / xs + hki[:, None]) / 2) * (ep - sp), axis=1)
        bvn[inner] = -v / (2 * math.pi)
    pos_part = bvn + _Phi(-np.maximum(h, k))
    # rho < 0: P(X > h, Y > k') with k' = -k flipped back; Phi differences taken in the accurate tail
    diff = np.where(h < 0, _Phi(k) - _Phi(h), _Phi(-h) - _Phi(-k))
    neg_part = -bvn + np.where(k > h, diff, 0.0)
    return np.where(neg, neg_part, pos_part)


def bvn_cdf(h, k, rho) -> np.ndarray:
    """``P(X < h, Y < k)`` for a standard bivariate normal (X, Y) with correlation ``rho``.

    h, k, rho: array-likes broadcast together (h, k may be +-inf; rho in [-1, 1], +-1 included).
    Returns a float64 array of the broadcast shape. Genz's BVND algorithm; absolute error ~1e-15.
    """
    h, k, rho = np.broadcast_arrays(*(as_float_array(v, n, finite=False) for v, n in
                                      ((h, "h"), (k, "k"), (rho, "rho"))))
    if np.any(np.isnan(h)) or np.any(np.isnan(k)):
        raise ValueError("h, k: expected numbers or +-inf, found NaN")
    if not np.all(np.abs(rho) <= 1):
        raise ValueError("rho: expected correlations in [-1, 1]")
    shape = h.shape
    h, k, rho = (np.ravel(v).astype(np.float64) for v in (h, k, rho))
    fin = np.isfinite(h) & np.isfinite(k)
    out = np.empty(h.shape)
    hf, kf, rf = h[fin], k[fin], rho[fin]
    out[fin] = _bvn_upper(-hf, -kf, rf, (1 - rf) * (1 + rf))
    # an infinite bound: the event is empty (-inf) or reduces to the other variable (+inf)
    inf = ~fin
    hi, ki = h[inf], k[inf]
    out[inf] = np.where((hi == -np.inf) | (ki == -np.inf), 0.0,
                        np.where(hi == np.inf, _Phi(np.where(ki == np.inf, 40.0, ki)), _Phi(hi)))
    return out.reshape(shape)


# ----------------------------------------------------------------------------------------------
# units: u (direction, norm), alpha = c / |u|; zero-weight units are constants
# ----------------------------------------------------------------------------------------------
class _Units(NamedTuple):
    n: np.ndarray      # (K, A) |u|, 1 where u = 0
    uh: np.ndarray     # (K, A, d) u / |u|, e_1 where u = 0 (placeholder)
    alpha: np.ndarray  # (K, A) c / |u|, 0 where u = 0
    c: np.ndarray      # (K, A) bias c
    zero: np.ndarray   # (K, A) bool: u = 0


def _units(U: np.ndarray, c: np.ndarray) -> _Units:
    n = np.sqrt(np.sum(U * U, axis=-1))
    zero = n == 0
    ns = np.where(zero, 1.0, n)
    uh = U / ns[..., None]
    uh = np.where(zero[..., None], np.eye(U.shape[-1])[0], uh)
    return _Units(ns, uh, np.where(zero, 0.0, c / ns), c, zero)


# ----------------------------------------------------------------------------------------------
# lifting 2-D moments to R^{d+1} (zt = (z, 1))
# ----------------------------------------------------------------------------------------------
def _lift_vec(uh, e2, m0, mX, mW):
    """``E[g zt]`` (..., d+1) from m0, mX, mW (...): ``(mX uh + mW e2, m0)``."""
    v = mX[..., None] * uh
    if e2 is not None:
        v = v + mW[..., None] * e2
    return np.concatenate([v, m0[..., None]], axis=-1)


def _lift_mat(uh, e2, m0, mX, mW, mXX, mXW, mWW):
    """``E[g zt zt^T]`` (..., d+1, d+1) from the six centred 2-D moments (see the module docstring)."""
    d = uh.shape[-1]
    shape = np.broadcast_shapes(m0.shape + (d,), uh.shape)[:-1]
    M = np.zeros(shape + (d + 1, d + 1))
    zz = m0[..., None, None] * np.eye(d) + mXX[..., None, None] * (uh[..., :, None] * uh[..., None, :])
    if e2 is not None:
        ue = uh[..., :, None] * e2[..., None, :]
        zz = zz + mXW[..., None, None] * (ue + np.swapaxes(ue, -1, -2)) \
            + mWW[..., None, None] * (e2[..., :, None] * e2[..., None, :])
    M[..., :d, :d] = zz
    v = _lift_vec(uh, e2, m0, mX, mW)
    M[..., :d, d] = v[..., :d]
    M[..., d, :d] = v[..., :d]
    M[..., d, d] = m0
    return M


# ----------------------------------------------------------------------------------------------
# single units: E s, E[1 zt], E[s zt], E[1 zt zt^T], E[delta zt zt^T], and E[s (g.z)] derivatives
# ----------------------------------------------------------------------------------------------
class _Single(NamedTuple):
    S0: np.ndarray    # (K, A)      E s
    S1: np.ndarray    # (K, A, d+1) E[1 zt]
    S1r: np.ndarray   # (K, A, d+1) E[s zt]
    S2i: Optional[np.ndarray]  # (K, A, d+1, d+1) E[1 zt zt^T]
    S2: Optional[np.ndarray]   # (K, A, d+1, d+1) E[delta zt zt^T] (0 for zero units)


def _single(u: _Units, hess: bool) -> _Single:
    a, n, z = u.alpha, u.n, u.zero
    Pa, pa = _Phi(a), _phi(a)
    on = np.where(u.c > 0, 1.0, 0.0)       # constant unit: relu'(c) = 1{c > 0}
    cpos = np.maximum(u.c, 0.0)
    zeros = np.zeros_like(a)
    S0 = np.where(z, cpos, n * (a * Pa + pa))
    Phi_a, phi_a = np.where(z, on, Pa), np.where(z, 0.0, pa)
    S1 = _lift_vec(u.uh, None, Phi_a, phi_a, zeros)
    S1r = _lift_vec(u.uh, None, S0, np.where(z, 0.0, n * Pa), zeros)
    S2i = S2 = None
    if hess:
        S2i = _lift_mat(u.uh, None, Phi_a, phi_a, zeros, -a * phi_a, zeros, zeros)
        dens = np.where(z, 0.0, pa / n)
        S2 = dens[..., None, None] * _lift_mat(u.uh, None, np.ones_like(a), -a, zeros, a * a - 1, zeros, zeros)
    return _Single(S0, S1, S1r, S2i, S2)


def _affine_terms(u: _Units, g: np.ndarray, hess: bool):
    """h_a = E[s_a (g_a . z)] = (g_a . u_a) Phi(alpha_a) for vectors g (K, A, d): value (K, A), gradient
    in p_a = E[1_a (g.z) zt] (K, A, d+1) and Hessian E[delta_a (g.z) zt zt^T] (K, A, d+1, d+1)."""
    a, n, uh, z = u.alpha, u.n, u.uh, u.zero
    Pa, pa = _Phi(a), _phi(a)
    gu = np.sum(g * uh, axis=-1)
    on = np.where(u.c > 0, 1.0, 0.0)
    val = np.where(z, 0.0, n * gu * Pa)
    gz = np.where(z[..., None], on[..., None] * g,
                  Pa[..., None] * g - (a * pa * gu)[..., None] * uh)
    grad = np.concatenate([gz, np.where(z, 0.0, pa * gu)[..., None]], axis=-1)
    hes = None
    if hess:
        d = uh.shape[-1]
        gp = g - gu[..., None] * uh
        uu = uh[..., :, None] * uh[..., None, :]
        ug = uh[..., :, None] * gp[..., None, :]
        zz = (-(a ** 3) * gu)[..., None, None] * uu - (a * gu)[..., None, None] * (np.eye(d) - uu) \
            - a[..., None, None] * (ug + np.swapaxes(ug, -1, -2))
        col = (a * a * gu)[..., None] * uh + gp
        hes = np.zeros(a.shape + (d + 1, d + 1))
        hes[..., :d, :d] = zz
        hes[..., :d, d] = col
        hes[..., d, :d] = col
        hes[..., d, d] = -a * gu
        hes = np.where(z, 0.0, pa / n)[..., None, None] * hes
    return val, grad, hes


# ----------------------------------------------------------------------------------------------
# pairs of units a (rows) and b (columns): geometry, then the kernels Q0..Q3
# ----------------------------------------------------------------------------------------------
class _Pair(NamedTuple):
    rho: np.ndarray    # (K, A, B)
    r: np.ndarray      # (K, A, B) sqrt(1 - rho^2), accurate near |rho| = 1
    e2: np.ndarray     # (K, A, B, d) unit vector of uh_b orthogonal to uh_a (0 where r = 0)
    al: np.ndarray     # (K, A, B) alpha_a
    be: np.ndarray     # (K, A, B) beta = alpha_b
    Phi2: np.ndarray   # P(X > -alpha, Y > -beta)
    Px: np.ndarray     # Phi(x),  x  = (alpha - rho beta) / r
    rpx: np.ndarray    # r phi(x)
    Pxp: np.ndarray    # Phi(x'), x' = (beta - rho alpha) / r
    rpxp: np.ndarray   # r phi(x')
    rPxp: np.ndarray   # r Phi(x')
    Pm: np.ndarray     # P(beta - rho alpha, r)


def _pair(ua: _Units, ub: _Units) -> _Pair:
    A_, B_ = ua.uh[:, :, None, :], ub.uh[:, None, :, :]
    dm2 = np.sum((A_ - B_) ** 2, axis=-1)             # 2 (1 - rho), accurate for rho near 1
    dp2 = np.sum((A_ + B_) ** 2, axis=-1)             # 2 (1 + rho), accurate for rho near -1
    rho = np.clip(np.sum(A_ * B_, axis=-1), -1.0, 1.0)
    omr, opr = dm2 / 2, dp2 / 2
    r = np.sqrt(dm2) * np.sqrt(dp2) / 2
    w = B_ - rho[..., None] * A_
    wn = np.sqrt(np.sum(w * w, axis=-1))
    e2 = np.where((r > 0)[..., None] & (wn > 0)[..., None], w / np.where(wn > 0, wn, 1.0)[..., None], 0.0)
    al = np.broadcast_to(ua.alpha[:, :, None], rho.shape)
    be = np.broadcast_to(ub.alpha[:, None, :], rho.shape)
    pos = rho >= 0
    m_ab = np.where(pos, (al - be) + omr * be, (al + be) - opr * be)   # alpha - rho beta
    m_ba = np.where(pos, (be - al) + omr * al, (be + al) - opr * al)   # beta - rho alpha
    Px, _, rpx, _ = _ratio_terms(m_ab, r)
    Pxp, rPxp, rpxp, Pm = _ratio_terms(m_ba, r)
    shape = rho.shape
    Phi2 = _bvn_upper(-al.ravel(), -be.ravel(), rho.ravel(), (omr * opr).ravel()).reshape(shape)
    return _Pair(rho, r, e2, al, be, Phi2, Px, rpx, Pxp, rpxp, rPxp, Pm)


def _Q0(p: _Pair, ua: _Units, ub: _Units, sa: _Single, sb: _Single) -> np.ndarray:
    """E[s_a s_b] (K, A, B)."""
    al, be = p.al, p.be
    fa, fb = _phi(al), _phi(be)
    F = (al * be + p.rho) * p.Phi2 + al * fb * p.Px + be * fa * p.Pxp + fa * p.rpxp
    Q = ua.n[:, :, None] * ub.n[:, None, :] * F
    za, zb = ua.zero[:, :, None], ub.zero[:, None, :]
    Q = np.where(zb, np.maximum(ub.c, 0.0)[:, None, :] * sa.S0[:, :, None], Q)
    return np.where(za, np.maximum(ua.c, 0.0)[:, :, None] * sb.S0[:, None, :], Q)


def _Q1(p: _Pair, ua: _Units, ub: _Units, sa: _Single, sb: _Single) -> np.ndarray:
    """E[1_a s_b zt] (K, A, B, d+1): the gradient of E[s_a s_b] in p_a."""
    al, be = p.al, p.be
    fa, fb = _phi(al), _phi(be)
    m0 = fb * p.Px + p.rho * fa * p.Pxp + be * p.Phi2
    mX = fa * p.Pm + p.rho * p.Phi2
    mW = p.r * p.Phi2
    Q = ub.n[:, None, :, None] * _lift_vec(ua.uh[:, :, None, :], p.e2, m0, mX, mW)
    za, zb = ua.zero[:, :, None, None], ub.zero[:, None, :, None]
    on_a = np.where(ua.c > 0, 1.0, 0.0)
    Q = np.where(zb, np.maximum(ub.c, 0.0)[:, None, :, None] * sa.S1[:, :, None, :], Q)
    return np.where(za, on_a[:, :, None, None] * sb.S1r[:, None, :, :], Q)


def _Q2(p: _Pair, ua: _Units, ub: _Units, sa: _Single, sb: _Single) -> np.ndarray:
    """E[1_a 1_b zt zt^T] (K, A, B, d+1, d+1): the cross Hessian of E[s_a s_b] in (p_a, p_b)."""
    al, be, rho, r = p.al, p.be, p.rho, p.r
    fa, fb = _phi(al), _phi(be)
    t = p.rpx - rho * be * p.Px                                  # E[X 1{X > -alpha} | Y = -beta]
    mX = fa * p.Pxp + rho * fb * p.Px
    mW = r * fb * p.Px
    mXX = -al * fa * p.Pxp + rho * fb * t
    mXW = r * fb * t
    mWW = -fb * (be * r * r * p.Px + rho * p.rpx)
    Q = _lift_mat(ua.uh[:, :, None, :], p.e2, p.Phi2, mX, mW, mXX, mXW, mWW)
    za, zb = ua.zero[:, :, None, None, None], ub.zero[:, None, :, None, None]
    on_a = np.where(ua.c > 0, 1.0, 0.0)[:, :, None, None, None]
    on_b = np.where(ub.c > 0, 1.0, 0.0)[:, None, :, None, None]
    Q = np.where(zb, on_b * sa.S2i[:, :, None], Q)
    return np.where(za, on_a * sb.S2i[:, None], Q)


def _Q3_sum(p: _Pair, ua: _Units, ub: _Units, sa: _Single, coef: np.ndarray) -> np.ndarray:
    """sum_b coef_ab E[delta_a s_b zt zt^T] (K, A, d+1, d+1): the moving-kink part of the Hessian of
    sum_b coef_ab E[s_a s_b] in p_a (contracted over b so that no (A, B, d, d) array is formed)."""
    al = ua.alpha
    general = ~(ua.zero[:, :, None] | ub.zero[:, None, :])
    om = np.where(general, coef * ub.n[:, None, :] * (_phi(al) / ua.n)[:, :, None], 0.0)
    M0 = np.sum(om * p.Pm, axis=2)
    V1 = np.einsum("kab,kabi->kai", om * p.rPxp, p.e2)
    MWW = np.matmul(np.swapaxes((om * p.rpxp)[..., None] * p.e2, -1, -2), p.e2)
    uh = ua.uh
    d = uh.shape[-1]
    uu = uh[..., :, None] * uh[..., None, :]
    uv = uh[..., :, None] * V1[..., None, :]
    out = np.zeros(al.shape + (d + 1, d + 1))
    out[..., :d, :d] = M0[..., None, None] * (np.eye(d) + (al * al - 1)[..., None, None] * uu) \
        - al[..., None, None] * (uv + np.swapaxes(uv, -1, -2)) + MWW
    col = -(al * M0)[..., None] * uh + V1
    out[..., :d, d] = col
    out[..., d, :d] = col
    out[..., d, d] = M0
    # a constant unit b contributes relu(c_b) E[delta_a zt zt^T]
    cb = np.where(ub.zero, np.maximum(ub.c, 0.0), 0.0)[:, None, :]
    w0 = np.sum(np.where(ua.zero[:, :, None], 0.0, coef * cb), axis=2)
    return out + w0[..., None, None] * sa.S2


# ----------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------
def _shallow_widths(widths, name: str) -> Tuple[int, int, int]:
    lay = Layout(widths, name)
    if lay.num_layers != 2:
        raise ValueError(f"{name}: expected a shallow network [d, H, out], got {list(lay.widths)}")
    return lay.widths  # type: ignore[return-value]


def _whitening(mean, cov, d: int):
    """``(mean (d,), Lc (d, d))`` with ``Lc Lc^T = cov``: Cholesky for positive definite cov, else
    the symmetric square root (positive semi-definite cov)."""
    mean = as_float_array(mean, "mean", ndim=(0, 1)).reshape(-1)
    if mean.shape != (d,):
        raise ValueError(f"mean: expected a vector of length d = {d}, got {mean.size} values")
    cov = as_float_array(cov, "cov", ndim=(0, 2))
    if cov.ndim == 0:
        cov = cov.reshape(1, 1)
    if cov.shape != (d, d):
        raise ValueError(f"cov: expected a ({d}, {d}) matrix, got shape {cov.shape}")
    scale = max(float(np.max(np.abs(cov))), np.finfo(float).tiny)
    if np.max(np.abs(cov - cov.T)) > 1e-12 * scale:
        raise ValueError("cov: expected a symmetric matrix")
    cov = (cov + cov.T) / 2
    lam, Q = np.linalg.eigh(cov)
    if lam[0] < -1e-12 * scale or lam[-1] <= 0:
        raise ValueError(f"cov: expected a positive semi-definite, nonzero matrix, smallest eigenvalue {lam[0]:.3g}")
    try:
        Lc = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        Lc = Q * np.sqrt(np.maximum(lam, 0.0))
    return mean, Lc


def _target(target, d: int, out: int, mean, Lc):
    """Whitened target ``f(z) = Vt relu(S z + e) + At z + c0``: (S (kt, d), e (kt,), Vt (out, kt), At
    (out, d), c0 (out,)); kt = 0 for an affine target, At = 0 for a teacher."""
    if not isinstance(target, tuple) or len(target) != 3 or target[0] not in ("affine", "teacher"):
        raise ValueError("target: expected ('affine', A, b) or ('teacher', teacher_widths, teacher_theta)")
    if target[0] == "affine":
        A = as_float_array(target[1], "target A", ndim=2)
        b = as_float_array(target[2], "target b", ndim=(0, 1)).reshape(-1)
        if A.shape != (out, d) or b.shape != (out,):
            raise ValueError(f"target: expected A ({out}, {d}) and b ({out},), got {A.shape} and {b.shape}")
        return np.zeros((0, d)), np.zeros(0), np.zeros((out, 0)), A @ Lc, A @ mean + b
    td, kt, tout = _shallow_widths(target[1], "target teacher_widths")
    if (td, tout) != (d, out):
        raise ValueError(f"target: teacher widths {[td, kt, tout]} do not match d = {d}, out = {out}")
    th = as_float_array(target[2], "target teacher_theta", ndim=1)
    if th.size != kt * (d + 1) + out * (kt + 1):
        raise ValueError(f"target: expected {kt * (d + 1) + out * (kt + 1)} teacher parameters, got {th.size}")
    Wt = th[:kt * d].reshape(kt, d)
    bt = th[kt * d:kt * d + kt]
    Vt = th[kt * (d + 1):kt * (d + 1) + out * kt].reshape(out, kt)
    ct = th[kt * (d + 1) + out * kt:]
    return Wt @ Lc, bt + Wt @ mean, Vt, np.zeros((out, d)), ct


# ----------------------------------------------------------------------------------------------
# assembly
# ----------------------------------------------------------------------------------------------
def shallow_gaussian(widths: Sequence[int], theta, mean, cov, target, want_grad: bool = True,
                     want_hess: bool = False):
    """Population risk ``E|N_theta(x) - f(x)|^2`` of shallow ReLU networks under ``x ~ N(mean, cov)``,
    in closed form, with its generalized gradient and its Hessian.

    widths : ``[d, H, out]`` (shallow only).
    theta : (K, P) float array, SPEC §1 layout: W1 (H x d row-major), b1 (H), W2 (out x H), b2 (out).
    mean : (d,); cov : (d, d) symmetric positive semi-definite (positive definite is the supported,
        tested case; a singular cov is accepted through its symmetric square root).
    target : ``("affine", A (out, d), b (out,))`` or ``("teacher", [d, k, out], teacher_theta (P_t,))``.
    Returns ``risk (K,)``, ``grad (K, P)`` or None, ``hess (K, P, P)`` or None (float64).
    Hidden units with zero incoming weights are constants: their kink (delta) terms are taken as 0.
    """
    d, H, out = _shallow_widths(widths, "widths")
    P = H * (d + 1) + out * (H + 1)
    th = np.asarray(as_theta(theta, P, "theta"), dtype=np.float64)
    mean, Lc = _whitening(mean, cov, d)
    S, e, Vt, At, c0 = _target(target, d, out, mean, Lc)
    K = th.shape[0]
    W1 = th[:, :H * d].reshape(K, H, d)
    b1 = th[:, H * d:H * (d + 1)]
    V = th[:, H * (d + 1):H * (d + 1) + out * H].reshape(K, out, H)
    b2 = th[:, H * (d + 1) + out * H:]
    want_grad = bool(want_grad) or bool(want_hess)
    su = _units(W1 @ Lc, b1 + W1 @ mean)
    kt = S.shape[0]
    tu = _units(np.broadcast_to(S, (K, kt, d)), np.broadcast_to(e, (K, kt)))
    t1 = _units(S[None], e[None])                         # the teacher once, not per network
    ss, st, st1 = _single(su, want_hess), _single(tu, False), _single(t1, False)
    pss, pst, ptt = _pair(su, su), _pair(su, tu), _pair(t1, t1)

    G = np.einsum("koi,koj->kij", V, V)                  # V^T V
    T = np.einsum("koi,oj->kij", V, Vt)                  # V^T Vt
    Gt = Vt.T @ Vt
    db = b2 - c0                                          # (K, out)
    gam = np.einsum("od,koi->kid", At, V)                 # (At^T V)_i: affine coupling of unit i
    Ez, _, hz = _affine_terms(su, gam, want_hess)
    Q0ss, Q0st = _Q0(pss, su, su, ss, ss), _Q0(pst, su, tu, ss, st)
    Q0tt = _Q0(ptt, t1, t1, st1, st1)
    EVs = np.einsum("koi,ki->ko", V, ss.S0)               # E[V s]
    EVt = np.broadcast_to(Vt @ st1.S0[0], (K, out))       # E[Vt t]
    gam_t = (At.T @ Vt).T                                 # (kt, d)
    Ezt = np.sum(gam_t * t1.n[0][:, None] * t1.uh[0], axis=-1) * _Phi(t1.alpha[0]) * ~t1.zero[0]
    risk = (np.einsum("kij,kij->k", G, Q0ss) - 2 * np.einsum("kij,kij->k", T, Q0st)
            + np.sum(Gt * Q0tt[0]) + np.sum(At * At) - 2 * np.sum(Ez, axis=1) + 2 * np.sum(Ezt)
            + 2 * np.sum(db * (EVs - EVt), axis=1) + np.sum(db * db, axis=1))
    # a sum of terms that cancel at a global minimum: rounding may leave it a hair below 0
    risk = np.maximum(risk, 0.0)
    if not want_grad:
        return risk, None, None

    Q1ss, Q1st = _Q1(pss, su, su, ss, ss), _Q1(pst, su, tu, ss, st)
    # R[k, o, i] = E[r_o 1_i zt]: the residual seen by unit i
    R = (np.einsum("koj,kijp->koip", V, Q1ss) - np.einsum("oj,kijp->koip", Vt, Q1st)
         + db[:, :, None, None] * ss.S1[:, None] - _affine_grad_per_output(su, At))
    g_p = 2 * np.einsum("koi,koip->kip", V, R)            # (K, H, d+1) in effective coordinates
    Es_ij = np.einsum("koj,kij->koi", V, Q0ss) - np.einsum("oj,kij->koi", Vt, Q0st) \
        + db[:, :, None] * ss.S0[:, None, :] - np.einsum("od,kid->koi", At, ss.S1r[..., :d])
    g_V = 2 * Es_ij
    g_b2 = 2 * (EVs - EVt + db)
    Bm = _chain_matrix(mean, Lc)                          # p = Bm q, q = (w, b)
    g_q = g_p @ Bm                                        # B^T g for every unit
    grad = np.concatenate([g_q[..., :d].reshape(K, H * d), g_q[..., d], g_V.reshape(K, out * H), g_b2], axis=1)
    if not want_hess:
        return risk, grad, None
    hess = _hessian(d, H, out, V, G, T, db, su, tu, ss, pss, pst, Q0ss, Q1ss, R, Bm, hz)
    return risk, grad, hess


def _affine_grad_per_output(u: _Units, At: np.ndarray) -> np.ndarray:
    """E[1_i (At_o . z) zt] (K, out, H, d+1): the affine target's share of the residual at unit i."""
    K, Hn, d = u.uh.shape
    out = At.shape[0]
    g = np.broadcast_to(At[None, :, None, :], (K, out, Hn, d))
    rep = _Units(*(np.broadcast_to(a[:, None], (K, out) + a.shape[1:]) for a in u))
    _, grad, _ = _affine_terms(rep, g, False)
    return grad


def _chain_matrix(mean: np.ndarray, Lc: np.ndarray) -> np.ndarray:
    """B (d+1, d+1) with p = (u, c) = B (w, b): u = Lc^T w, c = b + mean . w."""
    d = mean.size
    B = np.zeros((d + 1, d + 1))
    B[:d, :d] = Lc.T
    B[d, :d] = mean
    B[d, d] = 1.0
    return B


def _hessian(d, H, out, V, G, T, db, su, tu, ss, pss, pst, Q0ss, Q1ss, R, Bm, hz):
    """(K, P, P) Hessian: blocks in effective coordinates, mapped by B, scattered to the flat layout,
    symmetrized ((X + X^T) / 2 is exactly symmetric in floating point)."""
    K = V.shape[0]
    D = d + 1
    Q2 = _Q2(pss, su, su, ss, ss)                               # (K, H, H, D, D)
    Hpp = 2 * G[..., None, None] * Q2
    diag = 2 * (_Q3_sum(pss, su, su, ss, G) - _Q3_sum(pst, su, tu, ss, T))
    diag = diag + 2 * np.einsum("ki,kipq->kipq", np.einsum("koi,ko->ki", V, db), ss.S2) - 2 * hz
    idx = np.arange(H)
    Hpp[:, idx, idx] += diag
    Hpp = Bm.T @ Hpp @ Bm                                        # B^T H B per block
    # unit j's p against V[o, i]: 2 V_oj Q1(j, i) + delta_ij 2 R_o(i)
    HpV = 2 * np.swapaxes(V, 1, 2)[:, :, None, :, None] * np.swapaxes(Q1ss, 2, 3)[:, :, :, None, :]
    HpV[:, idx, :, :, idx] += 2 * R.transpose(2, 0, 3, 1)
    HpV = (Bm.T @ HpV.reshape(K, H, D, out * H)).reshape(K, H, D, out, H)
    Hpb = 2 * np.einsum("koj,kjp->kjpo", V, ss.S1)
    Hpb = Bm.T @ Hpb
    P = H * D + out * (H + 1)
    Hs = np.zeros((K, P, P))
    # order of q in the flat layout: W1 (H, d), b1 (H); map unit j's q index a to the flat index
    qidx = np.concatenate([np.arange(H)[:, None] * d + np.arange(d)[None, :], H * d + np.arange(H)[:, None]], axis=1)
    vidx = H * D + np.arange(out)[:, None] * H + np.arange(H)[None, :]      # (out, H)
    bidx = H * D + out * H + np.arange(out)

    def put(rows, cols, block):
        """Block and its mirror: Hs[rows, cols] = block, Hs[cols, rows] = block^T."""
        Hs[(slice(None),) + np.ix_(rows, cols)] = block
        Hs[(slice(None),) + np.ix_(cols, rows)] = np.swapaxes(block, 1, 2)

    q, v = qidx.ravel(), vidx.ravel()
    put(q, q, Hpp.transpose(0, 1, 3, 2, 4).reshape(K, H * D, H * D))
    put(q, v, HpV.reshape(K, H * D, out * H))
    put(q, bidx, Hpb.reshape(K, H * D, out))
    put(v, v, 2 * np.einsum("op,kij->koipj", np.eye(out), Q0ss).reshape(K, out * H, out * H))
    put(v, bidx, 2 * np.einsum("op,ki->koip", np.eye(out), ss.S0).reshape(K, out * H, out))
    put(bidx, bidx, np.broadcast_to(2 * np.eye(out), (K, out, out)))
    return (Hs + np.swapaxes(Hs, 1, 2)) / 2
