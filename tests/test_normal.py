"""``reluflow._normal``: the portable logarithm (fdlibm) and the normal quantile (AS 241) of the Gaussian
sampler, against np.log, scipy's ndtri and 120-bit mpmath references. (Their C++ twins are compared
bitwise through the samplers in tests/test_samplers.py.)"""
import numpy as np
import pytest

from reluflow._normal import normal_quantile, portable_log

special = pytest.importorskip("scipy.special")
mpmath = pytest.importorskip("mpmath")


def ulps(got, ref):
    """|got - ref| in units of the spacing of the doubles at ref."""
    return np.abs(got - ref) / np.spacing(np.abs(ref))


def log_arguments():
    rng = np.random.default_rng(0)
    return np.concatenate([
        rng.random(200_000),                                        # the sampler's range (0, 1)
        np.exp(rng.uniform(-744.0, 709.0, 200_000)),                # every exponent
        1.0 + rng.uniform(-1e-5, 1e-5, 20_000),                     # |f| < 2^-20 and near it
        np.nextafter(1.0, 0.0) - np.arange(100) * 2.0**-53,
        2.0 ** np.arange(-1074, 1024, dtype=np.float64),            # powers of two (f == 0)
        np.sqrt(2.0) * 2.0 ** np.arange(-60, 60, dtype=np.float64),  # the normalization's switch
        [5e-324, 1e-310, 2.2250738585072014e-308, 1.7976931348623157e308],
    ])


def test_portable_log_within_one_ulp_of_np_log():
    x = log_arguments()
    got, ref = portable_log(x), np.log(x)
    assert got.shape == x.shape and got.dtype == np.float64
    ok = ref != 0.0
    assert np.max(ulps(got[ok], ref[ok])) <= 1.0
    assert np.all(got[~ok] == 0.0)


def test_portable_log_within_one_ulp_of_the_exact_value():
    mpmath.mp.prec = 120
    x = log_arguments()[:: 97]
    ref = np.array([float(mpmath.log(mpmath.mpf(float(v)))) for v in x])
    ok = ref != 0.0
    assert np.max(ulps(portable_log(x)[ok], ref[ok])) <= 1.0


def test_portable_log_special_values_and_shape():
    got = portable_log(np.array([[0.0, -0.0, -1.0], [np.inf, np.nan, 1.0]]))
    assert got.shape == (2, 3)
    assert got[0, 0] == -np.inf and got[0, 1] == -np.inf and np.isnan(got[0, 2])
    assert got[1, 0] == np.inf and np.isnan(got[1, 1]) and got[1, 2] == 0.0
    assert portable_log(2.0) == np.log(2.0)   # k ln2_hi + k ln2_lo rounds to the nearest double


def quantile_arguments():
    rng = np.random.default_rng(1)
    return np.concatenate([
        rng.random(500_000),                                              # centre and near tails
        np.exp(rng.uniform(np.log(1e-300), np.log(0.5), 300_000)),         # lower tail, to 1e-300
        1.0 - np.exp(rng.uniform(np.log(1e-16), np.log(0.5), 200_000)),   # upper tail, to 1 - 1e-16
        [0.075, np.nextafter(0.075, 0.0), np.nextafter(0.075, 1.0), 0.925, np.nextafter(0.925, 1.0),
         np.exp(-25.0), np.nextafter(np.exp(-25.0), 1.0), 1e-300, 2.0**-53, 1.0 - 2.0**-53],
    ])


def test_normal_quantile_matches_ndtri():
    # AS 241 evaluated in float64 and ndtri each carry a few ulp of rounding: measured max 7 ulp apart
    # over these 10^6 arguments (1.2e-15 relative), most within 1
    u = quantile_arguments()
    got, ref = normal_quantile(u), special.ndtri(u)
    assert got.shape == u.shape and np.all(np.isfinite(got))
    err = ulps(got, ref)
    assert np.max(err) <= 8.0
    assert np.mean(err) <= 1.0


def _exact_quantile(u: float) -> float:
    """Phi^{-1}(u) to 120 bits: Newton on mpmath's ncdf from ndtri's value."""
    x, z = mpmath.mpf(u), mpmath.mpf(float(special.ndtri(u)))
    for _ in range(4):
        z -= (mpmath.ncdf(z) - x) / mpmath.npdf(z)
    return float(z)


def test_normal_quantile_against_the_exact_value():
    # AS 241's own error: measured at most 6 ulp (7e-16 relative) against the exact quantile, mean 0.8
    mpmath.mp.prec = 120
    u = quantile_arguments()[:: 500]
    ref = np.array([_exact_quantile(float(v)) for v in u])
    err = ulps(normal_quantile(u), ref)
    assert np.max(err) <= 8.0
    assert np.mean(err) <= 1.5
    assert np.max(np.abs(normal_quantile(u) - ref) / np.abs(ref)) <= 1.5e-15


def test_normal_quantile_values_at_the_edges():
    got = normal_quantile(np.array([0.5, 0.0, 1.0, -0.1, 1.5, np.nan]))
    assert got[0] == 0.0 and got[1] == -np.inf and got[2] == np.inf
    assert got[3] == -np.inf and got[4] == np.inf and np.isnan(got[5])
    # the extreme Philox uniforms (k + 1/2) 2^-52 give finite, symmetric deviates
    lo, hi = normal_quantile(np.array([2.0**-53, 1.0 - 2.0**-53]))
    assert lo == -hi and 8.2 < hi < 8.22
    # the result is odd where 1 - u is exact
    u = np.linspace(0.01, 0.49, 4801)
    u = u[(1.0 - (1.0 - u)) == u]
    np.testing.assert_array_equal(normal_quantile(1.0 - u), -normal_quantile(u))
