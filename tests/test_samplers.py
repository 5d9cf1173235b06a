"""C++ samplers of the input distributions: bitwise equal to ``dists.*.from_uniform`` on the same
uniforms (Philox for MonteCarlo, Sobol for QuasiMonteCarlo), and correct in distribution."""
import numpy as np
import pytest

import reluflow as rf
from reluflow import _core, _native_sampling, _philox, _sobol, dists

stats = pytest.importorskip("scipy.stats")
integrate = pytest.importorskip("scipy.integrate")

UNIFORM_BOXES = {
    "unit-1d": dists.Uniform(0.0, 1.0).bind(1),
    "shifted-1d": dists.Uniform(-3.25, 7.5, dim=1),
    "tiny-1d": dists.Uniform(1e-8, 3e-8).bind(1),
    "square-2d": dists.Uniform([-1.0, 0.0], [1.0, 1e3]),
    "scalar-5d": dists.Uniform(-0.3, 0.7).bind(5),
    "box-5d": dists.Uniform([0, -1, 2, -5e5, 0.1], [1, 1, 2.5, 5e5, 0.3]),
    "box-8d": dists.Uniform(np.linspace(-4, 3, 8), np.linspace(-4, 3, 8) + np.geomspace(1e-3, 1e3, 8)),
}

DENSITIES = {
    # density 2x on [0, 1]
    "linear": dists.PiecewisePolynomial([0.0, 1.0], [[0.0, 2.0]]),
    # proportional to 1 + t - t^2/2 on [-2, 1.5]
    "quadratic": dists.PiecewisePolynomial([-2.0, 1.5], [[1.0, 1.0, -0.25]]),
    # a zero piece at the end: no sample may fall in (1, 2]
    "zero-end": dists.PiecewisePolynomial([0.0, 1.0, 2.0], [[1.0, 3.0], [0.0, 0.0]]),
    # four pieces of degree <= 3, with a zero piece in the middle
    "four-pieces": dists.PiecewisePolynomial(
        [-1.0, 0.0, 0.5, 2.0, 3.0],
        [[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.3, 0.0], [0.0, 0.2, 0.0, 1.0]]),
}

MC_ARGS = [(0, 0), (7, 3), (2**40 + 1, 2**32 - 1)]  # (seed, step)


def bitwise_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype == np.float64 and a.shape == b.shape and \
        np.array_equal(a.view(np.uint64), b.view(np.uint64))


# ---- bitwise agreement with numpy ----------------------------------------------------------------

@pytest.mark.parametrize("name", list(UNIFORM_BOXES))
@pytest.mark.parametrize("seed,step", MC_ARGS)
def test_mc_uniform_box_bitwise(name, seed, step):
    dist, n = UNIFORM_BOXES[name], 3001
    expected = dist.from_uniform(_philox.uniforms(seed, _philox.STREAM_MONTE_CARLO, step, 0, n, dist.dim))
    got = _native_sampling.mc_nodes(dist, seed, step, n)
    assert got.shape == (n, dist.dim)
    assert bitwise_equal(got, expected)
    assert np.all((got >= dist.low) & (got <= dist.high))


@pytest.mark.parametrize("name", list(UNIFORM_BOXES))
@pytest.mark.parametrize("seed", [0, 11, 2**63])
def test_qmc_uniform_box_bitwise(name, seed):
    dist, n = UNIFORM_BOXES[name], 2049
    expected = dist.from_uniform(_sobol.sobol_uniforms(n, dist.dim, seed))
    assert bitwise_equal(_native_sampling.qmc_nodes(dist, seed, n), expected)


@pytest.mark.parametrize("name", list(DENSITIES))
@pytest.mark.parametrize("seed,step", MC_ARGS)
def test_mc_piecewise_polynomial_bitwise(name, seed, step):
    dist, n = DENSITIES[name], 4000
    expected = dist.from_uniform(_philox.uniforms(seed, _philox.STREAM_MONTE_CARLO, step, 0, n, 1))
    got = _native_sampling.mc_nodes(dist, seed, step, n)
    assert got.shape == (n, 1)
    assert bitwise_equal(got, expected)


@pytest.mark.parametrize("name", list(DENSITIES))
@pytest.mark.parametrize("seed", [0, 11, 2**63])
def test_qmc_piecewise_polynomial_bitwise(name, seed):
    dist, n = DENSITIES[name], 4096
    expected = dist.from_uniform(_sobol.sobol_uniforms(n, 1, seed))
    assert bitwise_equal(_native_sampling.qmc_nodes(dist, seed, n), expected)


def hard_uniforms(dist):
    """Uniforms at and next to the cumulative masses (the piece boundaries), near 0 and 1, and random."""
    cum = dist.cum[(dist.cum > 0) & (dist.cum < 1)]
    edges = np.concatenate([cum, np.nextafter(cum, 0.0), np.nextafter(cum, 1.0),
                            [2.0**-53, 2.0**-32, 0.5, 1.0 - 2.0**-32, 1.0 - 2.0**-53]])
    return np.concatenate([edges, np.random.default_rng(0).random(1000)])[:, None]


@pytest.mark.parametrize("name", list(DENSITIES))
def test_piecewise_polynomial_bitwise_at_hard_uniforms(name):
    dist = DENSITIES[name]
    u = hard_uniforms(dist)
    assert bitwise_equal(_native_sampling.from_uniform(dist, u), dist.from_uniform(u))


@pytest.mark.parametrize("name", list(UNIFORM_BOXES))
def test_uniform_box_bitwise_at_hard_uniforms(name):
    dist = UNIFORM_BOXES[name]
    u = np.random.default_rng(1).random((500, dist.dim))
    u[:3] = [[2.0**-53], [0.5], [1.0 - 2.0**-53]]
    assert bitwise_equal(_native_sampling.from_uniform(dist, u), dist.from_uniform(u))


def test_mc_nodes_match_the_estimators_uniforms():
    dist = UNIFORM_BOXES["box-5d"]
    est = rf.MonteCarlo(500, seed=4)
    assert bitwise_equal(_native_sampling.mc_nodes(dist, 4, 6, 500), dist.from_uniform(est.uniforms(5, 6)))
    qest = rf.QuasiMonteCarlo(500, seed=4)
    assert bitwise_equal(_native_sampling.qmc_nodes(dist, 4, 500), dist.from_uniform(qest.uniforms(5)))


def test_mc_nodes_are_addressed_by_index_and_step():
    dist = DENSITIES["four-pieces"]
    big = _native_sampling.mc_nodes(dist, 1, 2, 1000)
    assert np.array_equal(_native_sampling.mc_nodes(dist, 1, 2, 10), big[:10])
    assert not np.array_equal(_native_sampling.mc_nodes(dist, 1, 3, 1000), big)
    assert not np.array_equal(_native_sampling.mc_nodes(dist, 2, 2, 1000), big)


# ---- correct distribution -----------------------------------------------------------------------

def piece_integral(dist, fn):
    """Integral of fn(x) * pdf(x) over the support, piece by piece."""
    b = dist.breaks()
    pdf = lambda t: float(dist.pdf(np.array([t]))[0])
    return sum(integrate.quad(lambda t: fn(t) * pdf(t), b[i], b[i + 1], epsabs=1e-13, epsrel=1e-12)[0]
               for i in range(b.size - 1))


@pytest.mark.parametrize("name", list(DENSITIES))
@pytest.mark.parametrize("seed", [0, 1])
def test_piecewise_polynomial_ks_and_moments(name, seed):
    dist, n = DENSITIES[name], 20000
    x = _native_sampling.mc_nodes(dist, seed, 0, n)[:, 0]
    assert stats.kstest(x, dist.cdf).pvalue > 1e-3
    m1, m2, m3, m4 = (piece_integral(dist, lambda t, p=p: t**p) for p in (1, 2, 3, 4))
    assert abs(piece_integral(dist, lambda t: 1.0) - 1.0) < 1e-10
    assert abs(x.mean() - m1) < 5 * np.sqrt((m2 - m1**2) / n)
    assert abs(np.mean(x**2) - m2) < 5 * np.sqrt((m4 - m2**2) / n)
    b = dist.breaks()
    assert x.min() >= b[0] and x.max() <= b[-1]
    if name == "zero-end":
        assert x.max() <= 1.0


@pytest.mark.parametrize("name", list(DENSITIES))
def test_piecewise_polynomial_qmc_is_much_closer_than_mc(name):
    dist, n = DENSITIES[name], 2**14
    x = _native_sampling.qmc_nodes(dist, 3, n)[:, 0]
    # a balanced net: one uniform per interval of width 1/n, so the KS distance is about 1/n
    assert stats.kstest(x, dist.cdf).statistic < 3.0 / n


@pytest.mark.parametrize("name", ["shifted-1d", "square-2d", "box-8d"])
def test_uniform_box_ks_and_moments(name):
    dist, n = UNIFORM_BOXES[name], 20000
    x = _native_sampling.mc_nodes(dist, 5, 1, n)
    for k in range(dist.dim):
        lo, hi = dist.low[k], dist.high[k]
        assert stats.kstest(x[:, k], stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3, k
        pdf = 1.0 / (hi - lo)
        m1, m2, m4 = (integrate.quad(lambda t, p=p: t**p * pdf, lo, hi)[0] for p in (1, 2, 4))
        assert abs(x[:, k].mean() - m1) < 5 * np.sqrt((m2 - m1**2) / n), k
        assert abs(np.mean(x[:, k] ** 2) - m2) < 5 * np.sqrt((m4 - m2**2) / n), k
    if dist.dim >= 2:  # coordinates are independent
        assert abs(np.corrcoef(x[:, 0], x[:, 1])[0, 1]) < 5 / np.sqrt(n)


def test_ks_check_can_fail():
    # the distribution test rejects samples of a different density
    x = _native_sampling.mc_nodes(DENSITIES["linear"], 0, 0, 20000)[:, 0]
    assert stats.kstest(x, DENSITIES["quadratic"].cdf).pvalue < 1e-3
    assert stats.kstest(x**0.9, DENSITIES["linear"].cdf).pvalue < 1e-3


# ---- argument checking --------------------------------------------------------------------------

def test_native_dist_args():
    args = _native_sampling.native_dist_args(DENSITIES["four-pieces"])
    assert args["density_kind"] == "piecewise_polynomial"
    assert args["density_anti"].shape == (4, 4) and args["density_breaks"].shape == args["density_cum"].shape == (5,)
    args = _native_sampling.native_dist_args(UNIFORM_BOXES["box-5d"])
    assert args["density_kind"] == "uniform" and args["low"].shape == args["high"].shape == (5,)
    with pytest.raises(ValueError, match="bind"):
        _native_sampling.native_dist_args(dists.Uniform(0.0, 1.0))
    with pytest.raises(TypeError, match="dist"):
        _native_sampling.native_dist_args(dists.Distribution())


def _uniform(low, high=None):
    """A DensitySpec.native()-style dict of a uniform box (high left out when None)."""
    spec = {"density_kind": "uniform", "low": low}
    return spec if high is None else {**spec, "high": high}


def _pwpoly(breaks, anti, cum):
    return {"density_kind": "piecewise_polynomial", "density_breaks": breaks, "density_anti": anti,
            "density_cum": cum}


def test_core_samplers_reject_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        _core.mc_nodes(0, 0, 10, spec={**_uniform(np.zeros(1), np.ones(1)), "density_kind": "normal"})
    with pytest.raises(ValueError, match="low, high"):
        _core.mc_nodes(0, 0, 10, spec=_uniform(np.zeros(2), np.ones(3)))
    with pytest.raises(ValueError, match="high"):
        _core.qmc_nodes(10, 0, spec=_uniform(np.zeros(2)))
    with pytest.raises(ValueError, match="anti"):
        _core.mc_nodes(0, 0, 10, spec=_pwpoly(np.array([0.0, 1.0]), np.ones((2, 1)), np.array([0.0, 1.0])))
    with pytest.raises(ValueError, match="cum"):
        _core.qmc_nodes(10, 0, spec=_pwpoly(np.array([0.0, 1.0]), np.ones((1, 1)), np.array([0.0, 0.5, 1.0])))
    with pytest.raises(ValueError, match="^n:"):
        _core.mc_nodes(0, 0, -1, spec=_uniform(np.zeros(1), np.ones(1)))
    with pytest.raises(ValueError, match="^d:"):
        _core.qmc_nodes(10, 0, spec=_uniform(np.zeros(1025), np.ones(1025)))
    with pytest.raises(ValueError, match="^u:"):
        _core.dist_from_uniform(np.full((4, 2), 0.5), spec=_uniform(np.zeros(3), np.ones(3)))
    assert _core.mc_nodes(0, 0, 0, spec=_uniform(np.zeros(3), np.ones(3))).shape == (0, 3)


# ---- the Gaussian: bitwise numpy == C++, and the right mean and covariance --------------------------

def _spd(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T + 0.3 * np.eye(d)


GAUSSIANS = {
    "standard-1d": dists.Gaussian().bind(1),
    "scalar-1d": dists.Gaussian(-2.5, 0.04, dim=1),
    "scalar-2d": dists.Gaussian(1.5, 3.0).bind(2),
    "diag-2d": dists.Gaussian([0.0, 10.0], [1e-4, 25.0]),
    "full-2d": dists.Gaussian([0.3, -1.0], [[2.0, -0.9], [-0.9, 1.0]]),
    "scalar-5d": dists.Gaussian(0.0, 2.0, dim=5),
    "diag-5d": dists.Gaussian([1, -1, 0, 2, 3], [0.5, 1.0, 2.0, 4.0, 8.0]),
    "full-5d": dists.Gaussian(np.arange(5.0), _spd(5, 0)),
}


@pytest.mark.parametrize("name", list(GAUSSIANS))
@pytest.mark.parametrize("seed,step", MC_ARGS)
def test_mc_gaussian_bitwise(name, seed, step):
    dist, n = GAUSSIANS[name], 3001
    expected = dist.from_uniform(_philox.uniforms(seed, _philox.STREAM_MONTE_CARLO, step, 0, n, dist.dim))
    got = _native_sampling.mc_nodes(dist, seed, step, n)
    assert got.shape == (n, dist.dim)
    assert bitwise_equal(got, expected)
    assert np.all(np.isfinite(got))


@pytest.mark.parametrize("name", list(GAUSSIANS))
@pytest.mark.parametrize("seed", [0, 11, 2**63])
def test_qmc_gaussian_bitwise(name, seed):
    dist, n = GAUSSIANS[name], 2049
    expected = dist.from_uniform(_sobol.sobol_uniforms(n, dist.dim, seed))
    assert bitwise_equal(_native_sampling.qmc_nodes(dist, seed, n), expected)
    est = rf.QuasiMonteCarlo(n, seed=seed)
    prob = rf.Problem([dist.dim, 2, 1], rf.targets.Affine(np.ones((1, dist.dim))), dist)
    assert bitwise_equal(est.nodes(prob.spec).x, expected)


def gaussian_hard_uniforms(d):
    """Uniforms at the branch points of AS 241 and of the logarithm: |u - 1/2| = 0.425, r = 5
    (u = e^-25), the extreme Philox and Sobol uniforms, subnormal and tiny u, and random ones."""
    edges = np.array([0.075, 0.925, np.exp(-25.0), 1.0 - np.exp(-25.0), 0.5, 2.0**-53, 1.0 - 2.0**-53,
                      2.0**-33, 1.0 - 2.0**-33, 1e-300, 5e-324, 1e-310, 0.25, 0.75, 1.0 - 1e-16])
    edges = np.concatenate([edges, np.nextafter(edges, 0.0), np.nextafter(edges, 1.0)])
    edges = edges[(edges > 0) & (edges < 1)]
    rng = np.random.default_rng(2)
    u = np.concatenate([edges, np.exp(rng.uniform(-700, 0, 2000)), 1 - np.exp(rng.uniform(-36, 0, 2000)),
                        rng.random(2000)])
    u = np.concatenate([u, np.full((-u.size) % d, 0.5)])   # every value is used, in some coordinate
    return u.reshape(-1, d)


@pytest.mark.parametrize("name", list(GAUSSIANS))
def test_gaussian_bitwise_at_hard_uniforms(name):
    dist = GAUSSIANS[name]
    u = gaussian_hard_uniforms(dist.dim)
    expected = dist.from_uniform(u)
    assert bitwise_equal(_native_sampling.from_uniform(dist, u), expected)
    assert np.all(np.isfinite(expected))


@pytest.mark.parametrize("name", ["standard-1d", "diag-2d", "full-2d", "diag-5d", "full-5d"])
def test_gaussian_mean_and_covariance(name):
    dist, n = GAUSSIANS[name], 10**6
    x = _native_sampling.mc_nodes(dist, 21, 4, n)
    mu, S = dist.mean, dist.cov
    se_mean = np.sqrt(np.diag(S) / n)
    assert np.all(np.abs(x.mean(0) - mu) < 5 * se_mean)
    C = np.cov(x, rowvar=False).reshape(dist.dim, dist.dim)
    # the variance of the sample covariance of a normal: (S_ii S_jj + S_ij^2) / n
    se_cov = np.sqrt((np.outer(np.diag(S), np.diag(S)) + S**2) / n)
    assert np.all(np.abs(C - S) < 5 * se_cov)
    for k in range(dist.dim):   # each marginal is N(mu_k, S_kk)
        assert stats.kstest(x[:100_000, k], stats.norm(mu[k], np.sqrt(S[k, k])).cdf).pvalue > 1e-3, k


def test_gaussian_moment_check_can_fail():
    # the same samples fail the checks of a slightly different covariance or mean
    dist, n = GAUSSIANS["full-2d"], 10**6
    x = _native_sampling.mc_nodes(dist, 21, 4, n)
    C = np.cov(x, rowvar=False)
    S = dist.cov.copy()
    S[0, 1] = S[1, 0] = -0.88
    se_cov = np.sqrt((np.outer(np.diag(S), np.diag(S)) + S**2) / n)
    assert np.any(np.abs(C - S) >= 5 * se_cov)
    assert np.any(np.abs(x.mean(0) - (dist.mean + 0.01)) >= 5 * np.sqrt(np.diag(dist.cov) / n))


def test_gaussian_qmc_is_much_closer_than_mc():
    dist, n = GAUSSIANS["scalar-1d"], 2**14
    law = stats.norm(dist.mean[0], np.sqrt(dist.cov[0, 0]))
    # a balanced net through the monotone quantile: one point per interval of probability 1/n
    assert stats.kstest(_native_sampling.qmc_nodes(dist, 3, n)[:, 0], law.cdf).statistic < 3.0 / n
    assert stats.kstest(_native_sampling.mc_nodes(dist, 3, 0, n)[:, 0], law.cdf).statistic > 3.0 / n


def test_native_dist_args_gaussian():
    args = _native_sampling.native_dist_args(GAUSSIANS["full-5d"])
    assert args["density_kind"] == "gaussian" and args["mean"].shape == (5,) and args["chol"].shape == (5, 5)
    assert "lo" not in args and "low" not in args
    with pytest.raises(ValueError, match="bind"):
        _native_sampling.native_dist_args(dists.Gaussian())


def _gauss(mean, chol):
    return {"density_kind": "gaussian", "mean": mean, "chol": chol}


def test_core_samplers_reject_bad_gaussians():
    with pytest.raises(ValueError, match="missing key 'chol'"):
        _core.mc_nodes(0, 0, 10, spec={"density_kind": "gaussian", "mean": np.zeros(2)})
    with pytest.raises(ValueError, match="chol: expected a \\(d, d\\) array"):
        _core.mc_nodes(0, 0, 10, spec=_gauss(np.zeros(2), np.eye(3)))
    with pytest.raises(ValueError, match="mean: expected a 1-D array"):
        _core.qmc_nodes(10, 0, spec=_gauss(np.zeros((1, 1)), np.eye(1)))
    with pytest.raises(ValueError, match="zeros above the diagonal"):
        _core.mc_nodes(0, 0, 10, spec=_gauss(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]])))
    with pytest.raises(ValueError, match="positive diagonal"):
        _core.dist_from_uniform(np.full((4, 2), 0.5), spec=_gauss(np.zeros(2), np.diag([1.0, 0.0])))
    with pytest.raises(ValueError, match="mean: expected finite"):
        _core.mc_nodes(0, 0, 10, spec=_gauss(np.array([np.nan]), np.eye(1)))
    with pytest.raises(ValueError, match="^u:"):
        _core.dist_from_uniform(np.full((4, 3), 0.5), spec=_gauss(np.zeros(2), np.eye(2)))
