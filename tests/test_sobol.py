"""reluflow's scrambled Sobol generator: direction numbers against scipy, numpy == C++ bitwise, the
documented scrambling convention, net (balance) properties, seeds, integration accuracy, errors."""
from pathlib import Path
import importlib.util
import re

import numpy as np
import pytest

import reluflow as rf
from reluflow import _core, _philox, _sobol

qmc = pytest.importorskip("scipy.stats.qmc")

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [0, 1, 12345, 2**32 + 7, 2**64 - 1]


def sorted_rows(x):
    x = np.asarray(x)
    return x[np.lexsort(x.T[::-1])]


# ---- direction numbers -----------------------------------------------------------------------

def test_table_shape_and_van_der_corput():
    v = _sobol.direction_numbers()
    assert v.shape == (_sobol.MAX_DIM, 32) and v.dtype == np.uint32
    assert _sobol.MAX_DIM == _core.sobol_max_dim == 1024
    assert v[0].tolist() == [1 << (31 - b) for b in range(32)]
    # m[dim][b] = V >> (31 - b) is odd and below 2^(b+1)
    m = v.astype(np.uint64) >> (np.uint64(31) - np.arange(32, dtype=np.uint64))
    assert np.all(m % 2 == 1)
    assert np.all(m < np.uint64(2) ** (np.arange(32, dtype=np.uint64) + np.uint64(1)))
    # only the leading b+1 bits of V[dim][b] may be set
    assert np.all(v.astype(np.uint64) % (np.uint64(1) << (np.uint64(31) - np.arange(32, dtype=np.uint64))) == 0)


@pytest.mark.skipif(not (ROOT / "tools" / "gen_sobol_directions.py").exists(), reason="source tree only")
def test_shipped_tables_equal_generator_output():
    spec = importlib.util.spec_from_file_location("gen_sobol_directions", ROOT / "tools" / "gen_sobol_directions.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    table = gen.direction_table()
    assert np.array_equal(table, _sobol.direction_numbers())
    header = (ROOT / "cpp" / "include" / "reluflow" / "sobol_directions.h").read_text()
    words = [int(w, 16) for w in re.findall(r"0x([0-9a-f]{8})u", header)]
    assert np.array_equal(np.array(words, dtype=np.uint64).reshape(-1, 32), table.astype(np.uint64))


@pytest.mark.parametrize("d", [1, 2, 3, 10, 64])
@pytest.mark.parametrize("m", [0, 4, 10])
def test_unscrambled_equals_scipy_point_set(d, m):
    ref = qmc.Sobol(d, scramble=False, bits=32).random_base2(m)
    ref_bits = (ref * 2.0**32).astype(np.uint64)
    assert np.array_equal(ref_bits.astype(np.float64) * 2.0**-32, ref)  # the scaling was exact
    ours_np = _sobol.sobol_bits(2**m, d, None).astype(np.uint64)
    ours_cpp = _core.sobol_bits(2**m, d, 0, scramble=False).astype(np.uint64)
    assert np.array_equal(sorted_rows(ours_np), sorted_rows(ref_bits))
    assert np.array_equal(ours_cpp, ours_np)


def test_unscrambled_all_dims_equal_scipy():
    m, d = 6, _sobol.MAX_DIM
    ref = (qmc.Sobol(d, scramble=False, bits=32).random_base2(m) * 2.0**32).astype(np.uint64)
    ours = _sobol.sobol_bits(2**m, d, None).astype(np.uint64)
    assert np.array_equal(sorted_rows(ours), sorted_rows(ref))


# ---- scrambling convention and numpy == C++ ---------------------------------------------------

def reference_scrambled_directions(d, seed):
    """The documented LMS + shift, with explicit 32x32 GF(2) matrices (digit k = bit 31 - k)."""
    v = _sobol.direction_numbers()[:d].astype(np.int64)
    shifts = np.empty(d, dtype=np.uint32)
    out = np.empty((d, 32), dtype=np.uint32)
    powers = np.array([1 << (31 - k) for k in range(32)], dtype=np.int64)
    for dim in range(d):
        ctr = np.array([[r, dim, 0, 3] for r in range(33)], dtype=np.uint64)
        w = _philox.philox4x32_10(ctr, (seed & 0xFFFFFFFF, seed >> 32))[:, 0].astype(np.int64)
        lmat = np.zeros((32, 32), dtype=np.int64)
        for r in range(32):
            for k in range(r):
                lmat[r, k] = (w[r] >> (31 - k)) & 1
            lmat[r, r] = 1
        digits = (v[dim][None, :] >> (31 - np.arange(32))[:, None]) & 1   # (digit k, bit b)
        scrambled = (lmat @ digits) % 2                                   # (digit r, bit b)
        out[dim] = (powers[:, None] * scrambled).sum(axis=0)
        shifts[dim] = w[32]
    return out, shifts


@pytest.mark.parametrize("seed", [0, 99, 2**40 + 3])
def test_scrambling_follows_documented_convention(seed):
    dirs, shifts = reference_scrambled_directions(6, seed)
    assert np.array_equal(_sobol.scrambled_directions(6, seed), dirs)
    assert np.array_equal(_sobol.digital_shifts(6, seed), shifts)
    cdirs, cshifts = _core.sobol_scrambled_directions(6, seed)
    assert np.array_equal(cdirs, dirs) and np.array_equal(cshifts, shifts)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,d", [(1, 1), (1000, 1), (1024, 3), (4097, 8), (777, 64), (50, 1024)])
def test_cpp_equals_numpy_bitwise(n, d, seed):
    a = _core.sobol_uniforms(n, d, seed)
    b = _sobol.sobol_uniforms(n, d, seed)
    assert a.dtype == b.dtype == np.float64 and a.shape == b.shape == (n, d)
    assert np.array_equal(a.view(np.uint64), b.view(np.uint64))
    assert np.array_equal(_core.sobol_bits(n, d, seed), _sobol.sobol_bits(n, d, seed))


def test_cpp_equals_numpy_scrambled_directions_all_dims():
    seed = 2024
    cdirs, cshifts = _core.sobol_scrambled_directions(_sobol.MAX_DIM, seed)
    assert np.array_equal(cdirs, _sobol.scrambled_directions(_sobol.MAX_DIM, seed))
    assert np.array_equal(cshifts, _sobol.digital_shifts(_sobol.MAX_DIM, seed))


def test_points_are_addressed_by_index():
    big = _core.sobol_uniforms(5000, 4, 3)
    assert np.array_equal(_core.sobol_uniforms(123, 4, 3), big[:123])
    assert np.array_equal(_sobol.sobol_uniforms(123, 4, 3), big[:123])
    # dimension k does not depend on how many dimensions are asked for
    assert np.array_equal(_sobol.sobol_uniforms(100, 2, 3), big[:100, :2])
    # point i: shift XOR the scrambled directions of the set bits of i
    dirs, shift = _sobol.scrambled_directions(4, 3), _sobol.digital_shifts(4, 3)
    i = 0b1011001
    expected = shift ^ dirs[:, 0] ^ dirs[:, 3] ^ dirs[:, 4] ^ dirs[:, 6]
    assert np.array_equal(_sobol.sobol_bits(i + 1, 4, 3)[i], expected)


@pytest.mark.parametrize("seed", [0, 5])
def test_uniform_mapping_exact_in_open_interval(seed):
    bits = _sobol.sobol_bits(4096, 3, seed)
    u = _sobol.sobol_uniforms(4096, 3, seed)
    assert np.array_equal(u, (bits.astype(np.float64) + 0.5) / 2.0**32)
    assert np.array_equal(np.floor(u * 2.0**32).astype(np.uint64), bits.astype(np.uint64))
    assert u.min() > 0.0 and u.max() < 1.0
    edge = _sobol.bits_to_uniform(np.array([0, 2**32 - 1], dtype=np.uint32))
    assert 0.0 < edge[0] < 1e-9 and 1.0 - 1e-9 < edge[1] < 1.0


# ---- net properties ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 17, 2**33 + 1])
@pytest.mark.parametrize("m", [1, 5, 12])
def test_one_dimensional_projections_are_balanced(m, seed):
    d = 16
    u = _core.sobol_uniforms(2**m, d, seed)
    cells = np.floor(u * 2**m).astype(np.int64)
    for k in range(d):
        assert np.array_equal(np.sort(cells[:, k]), np.arange(2**m)), k


@pytest.mark.parametrize("seed", [None, 0, 3, 2**50])
@pytest.mark.parametrize("m", [2, 7, 11])
def test_first_two_dims_form_a_zero_m_two_net(m, seed):
    bits = _sobol.sobol_bits(2**m, 2, seed).astype(np.int64)
    for a in range(m + 1):
        # elementary box [i 2^-a, (i+1) 2^-a) x [j 2^-(m-a), (j+1) 2^-(m-a)): the leading digits
        box = (bits[:, 0] >> (32 - a)) * 2 ** (m - a) + (bits[:, 1] >> (32 - (m - a)))
        assert np.array_equal(np.sort(box), np.arange(2**m)), a


def test_net_check_can_fail():
    # the same check rejects a point set that is not a net (a seeded pseudo-random one)
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=(2**7, 2), dtype=np.int64)
    box = (bits[:, 0] >> 28) * 8 + (bits[:, 1] >> 29)
    assert not np.array_equal(np.sort(box), np.arange(2**7))


# ---- seeds and integration accuracy ------------------------------------------------------------

def test_different_seeds_give_different_points():
    pts = [_sobol.sobol_uniforms(256, 3, s) for s in (0, 1, 2, 2**32, 2**32 + 1)]
    for i in range(len(pts)):
        for j in range(i):
            assert not np.any(np.all(pts[i] == pts[j], axis=1)), (i, j)
    assert np.array_equal(_sobol.sobol_uniforms(256, 3, 1), pts[1])  # and the same seed the same


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_integration_error_well_below_monte_carlo(seed):
    n, d = 2**14, 8
    u = _core.sobol_uniforms(n, d, seed)
    se_mean = np.sqrt(1.0 / 12.0 / n)
    assert np.max(np.abs(u.mean(axis=0) - 0.5)) < 0.05 * se_mean
    f = np.prod(2.0 * u[:, :4], axis=1)                        # integral 1, variance (4/3)^4 - 1
    se_f = np.sqrt(((4.0 / 3.0) ** 4 - 1.0) / n)
    assert abs(f.mean() - 1.0) < 0.2 * se_f


def test_quasi_monte_carlo_estimator_uses_the_generator():
    est = rf.QuasiMonteCarlo(300, seed=9)
    assert np.array_equal(est.uniforms(3), _sobol.sobol_uniforms(300, 3, 9))


# ---- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [_sobol.sobol_uniforms, _core.sobol_uniforms,
                                lambda n, d, s: _sobol.sobol_bits(n, d, None),
                                lambda n, d, s: rf.QuasiMonteCarlo(n, seed=s).uniforms(d)])
def test_too_many_dimensions_raises_naming_d(fn):
    with pytest.raises(ValueError, match=r"^d: .*1024.*MonteCarlo"):
        fn(4, _sobol.MAX_DIM + 1, 0)
    fn(4, _sobol.MAX_DIM, 0)  # the maximum itself works


@pytest.mark.parametrize("fn", [_sobol.sobol_uniforms, _core.sobol_uniforms])
def test_invalid_arguments(fn):
    with pytest.raises(ValueError, match="^d:"):
        fn(4, 0, 0)
    with pytest.raises(ValueError, match="^n:"):
        fn(-1, 2, 0)
    with pytest.raises(ValueError, match="^n:"):
        fn(2**32, 2, 0)
    assert fn(0, 2, 0).shape == (0, 2)
    with pytest.raises((ValueError, TypeError)):
        fn(4, 2, -1)
    with pytest.raises((ValueError, TypeError)):
        fn(4, 2, 2**64)
