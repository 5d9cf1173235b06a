"""reluflow's scrambled Sobol points in vectorized numpy: the twin of ``cpp/include/reluflow/sobol.h``.

Both compute bitwise the same points (tested in tests/test_sobol.py).

Direction numbers
    Joe–Kuo (new-joe-kuo-6.21201, as shipped by scipy), first ``MAX_DIM = 1024`` dimensions, stored
    in ``_sobol_directions.npy`` (and ``sobol_directions.h``) by ``tools/gen_sobol_directions.py``.
    ``V[dim, b]`` belongs to bit ``b`` (0 = least significant) of the point index. Dimension 0 is van
    der Corput, ``V[0, b] = 1 << (31 - b)``.

Digits
    A 32-bit word ``x`` is the binary fraction ``0.x_0 x_1 ... x_31``: digit ``k`` is bit ``31 - k``
    (the most significant bit is the first digit). Direction numbers, matrix rows and points all use
    this layout.

Points (natural order)
    ``x_i[dim] = shift[dim] ^ XOR over the set bits b of i of V'[dim, b]``: a pure function of the
    index ``i``, so a GPU thread computes any point alone. Unscrambled points (``seed=None`` in
    :func:`sobol_bits`) use ``V`` and no shift; they equal scipy's ``Sobol(d, scramble=False,
    bits=32)`` points up to order (scipy uses Gray-code order, the sets of the first ``2**m`` agree).

Scrambling (random linear matrix scramble + digital shift), from Philox-4x32-10 with key
``(seed & 0xffffffff, seed >> 32)`` and counter ``(r, dim, 0, STREAM_SOBOL_SCRAMBLE = 3)``:
    ``w_r`` = word 0 of counter ``(r, dim, 0, 3)`` for ``r = 0..31``; row ``r`` of the lower-triangular,
    unit-diagonal binary matrix ``L_dim`` is ``row_r = (w_r & digits 0..r-1) | digit r`` (so
    ``L[r, k]`` = bit ``31 - k`` of ``row_r``); ``V'[dim, b]`` has digit ``r`` equal to
    ``parity(row_r & V[dim, b])`` (``L`` times the digit column over GF(2)). The digital shift is word
    0 of counter ``(32, dim, 0, 3)``. Digit ``r`` of a scrambled point depends bijectively on digits
    ``0..r`` of the unscrambled one, so the net properties (balance of ``2**m`` points) are kept.

Uniforms
    ``u = (x + 0.5) * 2**-32`` in float64: exact, strictly inside (0, 1).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._philox import STREAM_SOBOL_SCRAMBLE, philox4x32_10

__all__ = ["MAX_DIM", "direction_numbers", "scrambled_directions", "digital_shifts", "sobol_bits",
           "sobol_uniforms", "bits_to_uniform"]

_DIRECTIONS_FILE = Path(__file__).with_name("_sobol_directions.npy")
_directions: np.ndarray | None = None

MAX_DIM = 1024
MAX_N = 2**32 - 1
_BITS = 32


def direction_numbers() -> np.ndarray:
    """The unscrambled Joe–Kuo table ``V``: (MAX_DIM, 32) uint32 (read-only)."""
    global _directions
    if _directions is None:
        table = np.load(_DIRECTIONS_FILE)
        if table.shape != (MAX_DIM, _BITS) or table.dtype != np.uint32:
            raise RuntimeError(f"{_DIRECTIONS_FILE.name}: expected a ({MAX_DIM}, 32) uint32 table, "
                               f"got {table.shape} {table.dtype}; rerun tools/gen_sobol_directions.py")
        table.setflags(write=False)
        _directions = table
    return _directions


def _check_d(d: int) -> int:
    d = int(d)
    if d < 1:
        raise ValueError(f"d: expected a dimension d >= 1, got {d}")
    if d > MAX_DIM:
        raise ValueError(f"d: the Sobol generator has direction numbers for at most {MAX_DIM} dimensions, "
                         f"got d={d}; use MonteCarlo for higher-dimensional inputs")
    return d


def _check_seed(seed: int) -> int:
    seed = int(seed)
    if not (0 <= seed < 2**64):
        raise ValueError(f"seed: expected an integer in [0, 2**64), got {seed}")
    return seed


def _check_n(n: int) -> int:
    n = int(n)
    if not (0 <= n <= MAX_N):
        raise ValueError(f"n: expected a number of points in [0, 2**32 - 1], got {n}")
    return n


def _parity(x: np.ndarray) -> np.ndarray:
    """XOR of the 32 bits of each uint32 entry: 0 or 1 (uint32)."""
    x = x.copy()
    for s in (16, 8, 4, 2, 1):
        x ^= x >> np.uint32(s)
    return x & np.uint32(1)


def _scramble_words(d: int, seed: int) -> np.ndarray:
    """Word 0 of the Philox counters (r, dim, 0, 3), r = 0..32, dim < d: (33, d) uint32."""
    ctr = np.zeros((_BITS + 1, d, 4), dtype=np.uint64)
    ctr[..., 0] = np.arange(_BITS + 1, dtype=np.uint64)[:, None]
    ctr[..., 1] = np.arange(d, dtype=np.uint64)[None, :]
    ctr[..., 3] = STREAM_SOBOL_SCRAMBLE
    return philox4x32_10(ctr, (seed & 0xFFFFFFFF, seed >> 32))[..., 0]


def _lms_rows(words: np.ndarray) -> np.ndarray:
    """Rows (32, d) of the lower-triangular unit-diagonal matrices from the words (>= 32, d)."""
    r = np.arange(_BITS, dtype=np.uint64)
    below = ((np.uint64(0xFFFFFFFF) << (np.uint64(_BITS) - r)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    diagonal = (np.uint64(1) << (np.uint64(_BITS - 1) - r)).astype(np.uint32)
    return (words[:_BITS] & below[:, None]) | diagonal[:, None]


def scrambled_directions(d: int, seed: int) -> np.ndarray:
    """The scrambled direction numbers ``V'`` of dimensions 0..d-1: (d, 32) uint32."""
    d, seed = _check_d(d), _check_seed(seed)
    rows = _lms_rows(_scramble_words(d, seed))                    # (32, d)
    v = direction_numbers()[:d]                                   # (d, 32)
    digits = _parity(rows[:, :, None] & v[None, :, :])            # (32 rows r, d, 32 bits b)
    out = np.zeros((d, _BITS), dtype=np.uint32)
    for r in range(_BITS):
        out |= digits[r] << np.uint32(_BITS - 1 - r)
    return out


def digital_shifts(d: int, seed: int) -> np.ndarray:
    """The digital shifts of dimensions 0..d-1: (d,) uint32."""
    d, seed = _check_d(d), _check_seed(seed)
    return _scramble_words(d, seed)[_BITS].copy()


def sobol_bits(n: int, d: int, seed: int | None) -> np.ndarray:
    """Points 0..n-1 as 32-digit words, natural order: (n, d) uint32.

    ``seed=None`` gives the unscrambled Sobol points (no matrix, no shift).
    """
    n, d = _check_n(n), _check_d(d)
    if seed is None:
        dirs, shift = direction_numbers()[:d], np.zeros(d, dtype=np.uint32)
    else:
        dirs, shift = scrambled_directions(d, seed), digital_shifts(d, seed)
    x = np.empty((n, d), dtype=np.uint32)
    x[:] = shift
    index = np.arange(n, dtype=np.uint64)
    for b in range(max(n - 1, 0).bit_length()):                   # one pass per bit of the index
        has_bit = ((index >> np.uint64(b)) & np.uint64(1)).astype(bool)
        x[has_bit] ^= dirs[:, b]
    return x


def bits_to_uniform(x: np.ndarray) -> np.ndarray:
    """32-digit words -> float64 ``(x + 0.5) * 2**-32`` (exact, in (0, 1))."""
    return (x.astype(np.float64) + 0.5) * 2.0**-32


def sobol_uniforms(n: int, d: int, seed: int) -> np.ndarray:
    """``n`` scrambled Sobol points in ``d`` dimensions as uniforms in (0, 1): (n, d) float64."""
    return bits_to_uniform(sobol_bits(n, d, _check_seed(seed)))
