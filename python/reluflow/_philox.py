"""Philox-4x32-10 in vectorized numpy: the reference twin of ``cpp/include/reluflow/philox.h``.

Both implement the same addressing, key = (seed mod 2^32, seed >> 32) and
counter = (sample index, block, step, stream), and the same exact mapping of two 32-bit words to a
double in (0, 1), so they agree bitwise (tested). See ``philox.h`` for the conventions.
"""
from __future__ import annotations

import numpy as np

STREAM_INIT = 1
STREAM_MONTE_CARLO = 2
STREAM_SOBOL_SCRAMBLE = 3

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85
_MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(ctr: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Philox-4x32-10 of each counter.

    Parameters
    ----------
    ctr : (..., 4) unsigned integers below 2**32.
    key : two integers below 2**32.

    Returns
    -------
    (..., 4) uint32 words.
    """
    c = np.asarray(ctr).astype(np.uint64)
    if c.shape[-1:] != (4,):
        raise ValueError(f"ctr: expected an array of shape (..., 4), got {c.shape}")
    c0, c1, c2, c3 = (c[..., i] for i in range(4))
    k0, k1 = int(key[0]) & 0xFFFFFFFF, int(key[1]) & 0xFFFFFFFF
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & _MASK32
        hi1, lo1 = p1 >> np.uint64(32), p1 & _MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
        k0 = (k0 + _W0) & 0xFFFFFFFF
        k1 = (k1 + _W1) & 0xFFFFFFFF
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def words_to_uniform(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Two uint32 words -> float64 in (0, 1): k = top 52 bits, u = (k + 0.5) * 2**-52 (exact)."""
    k = ((hi.astype(np.uint64) << np.uint64(32)) | lo.astype(np.uint64)) >> np.uint64(12)
    return (k.astype(np.float64) + 0.5) * 2.0**-52


def _check_u32(name: str, value: int) -> int:
    if not (0 <= int(value) < 2**32):
        raise ValueError(f"{name}: expected an integer in [0, 2**32), got {value}")
    return int(value)


def uniforms(seed: int, stream: int, step: int, first: int, n: int, d: int) -> np.ndarray:
    """Uniforms in (0, 1) of samples ``first .. first+n-1``, ``d`` per sample: (n, d) float64.

    Number k of sample j comes from block k // 2 of counter (j, k // 2, step, stream), words
    (0, 1) for even k and (2, 3) for odd k.
    """
    seed = int(seed)
    if not (0 <= seed < 2**64):
        raise ValueError(f"seed: expected an integer in [0, 2**64), got {seed}")
    step = _check_u32("step", step)
    stream = _check_u32("stream", stream)
    if first < 0 or n < 0 or first + n > 2**32:
        raise ValueError(f"n: sample indices must lie in [0, 2**32), got first={first}, n={n}")
    nblocks = (d + 1) // 2
    idx = np.arange(first, first + n, dtype=np.uint64)
    ctr = np.empty((n, nblocks, 4), dtype=np.uint64)
    ctr[..., 0] = idx[:, None]
    ctr[..., 1] = np.arange(nblocks, dtype=np.uint64)[None, :]
    ctr[..., 2] = step
    ctr[..., 3] = stream
    w = philox4x32_10(ctr, (seed & 0xFFFFFFFF, seed >> 32))
    u = np.empty((n, 2 * nblocks), dtype=np.float64)
    u[:, 0::2] = words_to_uniform(w[..., 0], w[..., 1])
    u[:, 1::2] = words_to_uniform(w[..., 2], w[..., 3])
    return u[:, :d]


def standard_normals(seed: int, stream: int, step: int, n: int, m: int) -> np.ndarray:
    """Standard normals (n, m), float64, by Box–Muller on the uniforms of ``uniforms``.

    Row j uses sample index j; columns 2i and 2i+1 are ``sqrt(-2 log u0) * (cos, sin)(2 pi u1)`` of
    the uniform pair (u0, u1) of block i. Transcendentals are computed by numpy, so these values are
    reproducible with numpy, not bitwise across other libraries (only ``Problem.init`` uses them).
    """
    u = uniforms(seed, stream, step, 0, n, 2 * ((m + 1) // 2))
    r = np.sqrt(-2.0 * np.log(u[:, 0::2]))
    ang = 2.0 * np.pi * u[:, 1::2]
    z = np.empty_like(u)
    z[:, 0::2] = r * np.cos(ang)
    z[:, 1::2] = r * np.sin(ang)
    return z[:, :m]
