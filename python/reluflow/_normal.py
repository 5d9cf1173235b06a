"""The standard normal quantile Phi^{-1}(u) with a sequence of float64 operations that the C++ twin
(``cpp/include/reluflow/normal_quantile.h``) repeats exactly, so numpy and C++ give the same bits.

* :func:`portable_log`: fdlibm's ``__ieee754_log`` (Sun, 1993): split x = 2^k (1 + f) through the bits
  of the double (with sqrt(2)/2 <= 1 + f < sqrt(2)), then a fixed rational/polynomial evaluation in
  s = f / (2 + f). Error below 1 ulp. Its only operations are +, -, *, / and integer bit
  manipulation, all correctly rounded or exact in IEEE 754, so every platform gets the same double
  (``np.log`` and ``std::log`` are not specified to the last bit and differ between libraries).
* :func:`normal_quantile`: Wichura's AS 241 (PPND16, Applied Statistics 37, 1988), relative error
  about 1e-16: a rational function of degree 7/7 in the centre (|u - 1/2| <= 0.425), and in the tails
  of ``r = sqrt(-log(min(u, 1 - u)))``; ``sqrt`` is correctly rounded in IEEE 754 (numpy and C++).

Every branch is evaluated on the elements that take it, with the operations in the order of the C
code (left to right, Horner from the highest coefficient); nothing here may be rewritten into an
algebraically equal form, because that changes the rounding and breaks the bitwise agreement.
"""
from __future__ import annotations

import numpy as np

__all__ = ["portable_log", "normal_quantile"]

# ---- fdlibm e_log.c -------------------------------------------------------------------------------
_LN2_HI = 6.93147180369123816490e-01   # 3fe62e42 fee00000
_LN2_LO = 1.90821492927058770002e-10   # 3dea39ef 35793c76
_TWO54 = 1.80143985094819840000e+16    # 43500000 00000000
_LG1 = 6.666666666666735130e-01        # 3FE55555 55555593
_LG2 = 3.999999999940941908e-01        # 3FD99999 9997FA04
_LG3 = 2.857142874366239149e-01        # 3FD24924 94229359
_LG4 = 2.222219843214978396e-01        # 3FCC71C5 1D8E78AF
_LG5 = 1.818357216161805012e-01        # 3FC74664 96CB03DE
_LG6 = 1.531383769920937332e-01        # 3FC39A09 D078C69F
_LG7 = 1.479819860511658591e-01        # 3FC2F112 DF3E5244
_THIRD = 0.33333333333333333           # as in fdlibm (the double nearest 1/3)

# ---- AS 241 (PPND16) ------------------------------------------------------------------------------
_SPLIT1, _SPLIT2, _CONST1, _CONST2 = 0.425, 5.0, 0.180625, 1.6
_A = (3.3871328727963666080e0, 1.3314166789178437745e+2, 1.9715909503065514427e+3,
      1.3731693765509461125e+4, 4.5921953931549871457e+4, 6.7265770927008700853e+4,
      3.3430575583588128105e+4, 2.5090809287301226727e+3)
_B = (1.0, 4.2313330701600911252e+1, 6.8718700749205790830e+2, 5.3941960214247511077e+3,
      2.1213794301586595867e+4, 3.9307895800092710610e+4, 2.8729085735721942674e+4,
      5.2264952788528545610e+3)
_C = (1.42343711074968357734e0, 4.63033784615654529590e0, 5.76949722146069140550e0,
      3.64784832476320460504e0, 1.27045825245236838258e0, 2.41780725177450611770e-1,
      2.27238449892691845833e-2, 7.74545014278341407640e-4)
_D = (1.0, 2.05319162663775882187e0, 1.67638483018380384940e0, 6.89767334985100004550e-1,
      1.48103976427480074590e-1, 1.51986665636164571966e-2, 5.47593808499534494600e-4,
      1.05075007164441684324e-9)
_E = (6.65790464350110377720e0, 5.46378491116411436990e0, 1.78482653991729133580e0,
      2.96560571828504891230e-1, 2.65321895265761230930e-2, 1.24266094738807843860e-3,
      2.71155556874348757815e-5, 2.01033439929228813265e-7)
_F = (1.0, 5.99832206555887937690e-1, 1.36929880922735805310e-1, 1.48753612908506148525e-2,
      7.86869131145613259100e-4, 1.84631831751005468180e-5, 1.42151175831644588870e-7,
      2.04426310338993978564e-15)


def _log_positive_normal(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """fdlibm's log after the special cases: x (m,) positive, finite, normal; k (m,) int64 the
    exponent already taken out (-54 for scaled subnormals, else 0)."""
    bits = x.view(np.uint64)
    hx = (bits >> np.uint64(32)).astype(np.int64)
    k = k + (hx >> 20) - 1023
    hx = hx & 0x000FFFFF
    i = (hx + 0x95F64) & 0x100000
    # normalize x or x/2: the mantissa with the exponent of 1 (or of 1/2 when it is >= sqrt(2))
    new_hi = (hx | (i ^ 0x3FF00000)).astype(np.uint64)
    x = ((new_hi << np.uint64(32)) | (bits & np.uint64(0xFFFFFFFF))).view(np.float64)
    k = k + (i >> 20)
    f = x - 1.0
    dk = k.astype(np.float64)
    out = np.empty_like(x)

    tiny = (0x000FFFFF & (2 + hx)) < 3              # |f| < 2^-20
    if np.any(tiny):
        ft, dkt = f[tiny], dk[tiny]
        R = ft * ft * (0.5 - _THIRD * ft)
        val = np.where(dkt == 0.0, ft - R, dkt * _LN2_HI - ((R - dkt * _LN2_LO) - ft))
        exact = ft == 0.0                             # x a power of two
        val = np.where(exact, np.where(dkt == 0.0, 0.0, dkt * _LN2_HI + dkt * _LN2_LO), val)
        out[tiny] = val

    rest = ~tiny
    if np.any(rest):
        f, dk, hxr = f[rest], dk[rest], hx[rest]
        s = f / (2.0 + f)
        z = s * s
        w = z * z
        t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
        t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
        R = t2 + t1
        big = ((hxr - 0x6147A) | (0x6B851 - hxr)) > 0
        hfsq = 0.5 * f * f
        with_hfsq = np.where(dk == 0.0, f - (hfsq - s * (hfsq + R)),
                             dk * _LN2_HI - ((hfsq - (s * (hfsq + R) + dk * _LN2_LO)) - f))
        without = np.where(dk == 0.0, f - s * (f - R),
                           dk * _LN2_HI - ((s * (f - R) - dk * _LN2_LO) - f))
        out[rest] = np.where(big, with_hfsq, without)
    return out


def portable_log(x) -> np.ndarray:
    """Natural logarithm, elementwise, bitwise equal to ``reluflow::portable_log`` (C++).

    x: array of float64 (any shape) -> same shape. Error below 1 ulp (fdlibm). log(0) = -inf,
    log(x < 0) = nan, log(inf) = inf, log(nan) = nan.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    shape = x.shape
    x = x.reshape(-1)
    out = np.empty_like(x)
    with np.errstate(all="ignore"):
        special = ~(np.isfinite(x) & (x > 0))
        out[special] = np.where(x[special] == 0.0, -np.inf,
                                np.where(x[special] < 0, np.nan, x[special] + x[special]))
        ok = ~special
        xs = x[ok]
        sub = xs < 2.2250738585072014e-308            # subnormal: scale up by 2^54
        k = np.where(sub, -54, 0).astype(np.int64)
        xs = np.where(sub, xs * _TWO54, xs)
        out[ok] = _log_positive_normal(np.ascontiguousarray(xs), k)
    return out.reshape(shape)


def _horner(c: tuple, r: np.ndarray) -> np.ndarray:
    """((c7 r + c6) r + ... + c1) r + c0, Horner from the highest coefficient (as AS 241 writes it)."""
    val = c[7] * r + c[6]
    for p in range(5, -1, -1):
        val = val * r + c[p]
    return val


def normal_quantile(u) -> np.ndarray:
    """Phi^{-1}(u) of the standard normal, elementwise (AS 241), bitwise equal to
    ``reluflow::normal_quantile`` (C++). u: float64 array in (0, 1) (any shape) -> same shape.

    u must lie strictly inside (0, 1): the samplers' uniforms do (Philox: (k + 1/2) 2^-52, Sobol:
    (k + 1/2) 2^-32); u <= 0 or u >= 1 gives -inf / +inf, nan gives nan.
    """
    u = np.array(u, dtype=np.float64, copy=True)
    shape = u.shape
    u = u.reshape(-1)
    out = np.empty_like(u)
    with np.errstate(all="ignore"):
        q = u - 0.5
        centre = np.abs(q) <= _SPLIT1
        qc = q[centre]
        r = _CONST1 - qc * qc
        out[centre] = qc * _horner(_A, r) / _horner(_B, r)

        tail = ~centre & (u > 0.0) & (u < 1.0)
        qt = q[tail]
        r = np.where(qt < 0.0, u[tail], 1.0 - u[tail])    # 1 - u is exact for u >= 1/2
        r = np.sqrt(-portable_log(r))
        near = r <= _SPLIT2
        val = np.empty_like(r)
        rn = r[near] - _CONST2
        val[near] = _horner(_C, rn) / _horner(_D, rn)
        rf = r[~near] - _SPLIT2
        val[~near] = _horner(_E, rf) / _horner(_F, rf)
        out[tail] = np.where(qt < 0.0, -val, val)

        edge = ~centre & ~tail
        out[edge] = np.where(u[edge] <= 0.0, -np.inf, np.where(u[edge] >= 1.0, np.inf, np.nan))
    return out.reshape(shape)
