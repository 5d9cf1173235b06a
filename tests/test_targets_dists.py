"""Targets and input distributions: values, validation, samplers (moments and KS)."""
import numpy as np
import pytest
from scipy import integrate, stats

import reluflow as rf


def test_piecewise_linear_values_and_extension():
    f = rf.targets.PiecewiseLinear([0, .5, 1], [0, 1, 0])
    x = np.array([-1.0, 0.0, 0.25, 0.5, 0.75, 1.0, 3.0])[:, None]
    np.testing.assert_allclose(f(x)[:, 0], [0, 0, .5, 1, .5, 0, 0], atol=1e-15)
    g = rf.targets.PiecewiseLinear([0, 1], [[0, 1], [2, -1]])  # two outputs
    np.testing.assert_allclose(g(np.array([[0.5]])), [[1.0, 0.0]])
    assert g.out_dim == 2 and g.degree == 1


def test_piecewise_polynomial_local_powers():
    f = rf.targets.PiecewisePolynomial([0, 1, 3], [[1, 0, 2], [3, -1, 0]])
    x = np.array([0.5, 1.0, 2.0])[:, None]
    np.testing.assert_allclose(f(x)[:, 0], [1 + 2 * .25, 3, 3 - 1], rtol=1e-15)
    assert f.degree == 2


def test_affine_and_teacher():
    A = np.array([[1.0, -2.0], [0.5, 0.0]])
    f = rf.targets.Affine(A, [1.0, 2.0])
    x = np.array([[1.0, 1.0]])
    np.testing.assert_allclose(f(x), [[0.0, 2.5]])
    prob = rf.Problem([2, 3, 2], f, rf.dists.Uniform(0, 1, dim=2))
    th = prob.init(1, seed=5)
    t = rf.targets.Teacher([2, 3, 2], th[0])
    np.testing.assert_allclose(t(x), prob.realization(th, x)[0])


@pytest.mark.parametrize("make,exc,match", [
    (lambda: rf.targets.PiecewiseLinear([0, 1, 1], [0, 1, 2]), ValueError, "knots"),
    (lambda: rf.targets.PiecewiseLinear([0, 1], [0, 1, 2]), ValueError, "values"),
    (lambda: rf.targets.PiecewisePolynomial([0, 1], [[1], [2]]), ValueError, "coeffs"),
    (lambda: rf.targets.Affine([[1.0, 2.0]], [1.0, 2.0]), ValueError, "b"),
    (lambda: rf.targets.Affine([[np.nan]]), ValueError, "A"),
    (lambda: rf.targets.Teacher([1, 2, 1], np.zeros(6)), ValueError, "theta"),
    (lambda: rf.targets.Function(3), TypeError, "fn"),
    (lambda: rf.dists.Uniform(1.0, 0.0, dim=1), ValueError, "high"),
    (lambda: rf.dists.Uniform([0, 0], [1, 1, 1]), ValueError, "low, high"),
    (lambda: rf.dists.PiecewisePolynomial([0, 1], [[1.0, -2.0]]), ValueError, "non-negative"),
    (lambda: rf.dists.PiecewisePolynomial([0, 1], [[0.0]]), ValueError, "mass"),
    (lambda: rf.dists.PiecewisePolynomial([1, 0], [[1.0]]), ValueError, "breaks"),
    (lambda: rf.dists.PiecewisePolynomial([0, 1, 2], [[1.0]]), ValueError, "coeffs"),
])
def test_bad_targets_and_dists(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_function_target_output_checked():
    with pytest.raises(ValueError, match="target"):
        rf.Problem([1, 2, 1], rf.targets.Function(lambda x: np.ones((x.shape[0], 3))))
    with pytest.raises(ValueError, match="target"):
        rf.Problem([1, 2, 1], rf.targets.Function(lambda x: np.full(x.shape[0], np.nan)))


def test_uniform_box_samples():
    dist = rf.dists.Uniform([0, -1, 2], [1, 1, 5])
    prob = rf.Problem([3, 2, 1], rf.targets.Affine(np.ones((1, 3))), dist)
    x = rf.MonteCarlo(50_000, seed=3).nodes(prob).x
    assert x.shape == (50_000, 3)
    assert np.all(x >= dist.low) and np.all(x <= dist.high)
    np.testing.assert_allclose(x.mean(0), (dist.low + dist.high) / 2, atol=5 * 3 / np.sqrt(12 * 50_000))


DENSITIES = {
    "linear": ([0, 1], [[0.0, 2.0]]),
    "quadratic": ([-1, 1], [[0.0, 2.0, -1.0]]),
    "three-piece": ([0, 1, 2, 4], [[1.0, 1.0], [2.0], [0.5, 0.0, 0.25]]),
    "zero-end-piece": ([0, 1, 2], [[1.0], [0.0]]),
}


@pytest.mark.parametrize("name", DENSITIES)
def test_piecewise_polynomial_density_sampler(name):
    breaks, rows = DENSITIES[name]
    deg = max(len(r) for r in rows)
    coeffs = np.array([r + [0.0] * (deg - len(r)) for r in rows])
    dist = rf.dists.PiecewisePolynomial(breaks, coeffs)
    lo, hi = breaks[0], breaks[-1]
    mass = sum(integrate.quad(lambda t: dist.pdf(np.array([t]))[0], a, b)[0] for a, b in zip(breaks, breaks[1:]))
    assert abs(mass - 1) < 1e-12
    prob = rf.Problem([1, 2, 1], rf.targets.Affine([[1.0]]), dist)
    x = rf.MonteCarlo(20_000, seed=7).nodes(prob).x[:, 0]
    assert np.all((x >= lo) & (x <= hi))
    assert stats.kstest(x, dist.cdf).pvalue > 1e-3
    pieces = list(zip(breaks, breaks[1:]))
    m1 = sum(integrate.quad(lambda t: t * dist.pdf(np.array([t]))[0], a, b)[0] for a, b in pieces)
    m2 = sum(integrate.quad(lambda t: t * t * dist.pdf(np.array([t]))[0], a, b)[0] for a, b in pieces)
    sd = np.sqrt(m2 - m1 ** 2)
    assert abs(x.mean() - m1) < 5 * sd / np.sqrt(x.size)
    assert abs((x ** 2).mean() - m2) < 5 * np.std(x ** 2) / np.sqrt(x.size)


def test_inverse_cdf_is_exact():
    dist = rf.dists.PiecewisePolynomial(*DENSITIES["three-piece"][:1], np.array(
        [[1.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.5, 0.0, 0.25]]))
    u = np.linspace(0.001, 0.999, 97)[:, None]
    x = dist.from_uniform(u)[:, 0]
    np.testing.assert_allclose(dist.cdf(x), u[:, 0], atol=1e-14)


# ---- Gaussian ------------------------------------------------------------------------------------

def test_gaussian_attributes_and_bind():
    g = rf.dists.Gaussian()
    assert g.dim is None and "Gaussian" in rf.dists.__all__
    b = g.bind(3)
    assert b.dim == 3 and b.mean.shape == (3,) and b.cov.shape == b.chol.shape == (3, 3)
    np.testing.assert_array_equal(b.cov, np.eye(3))
    np.testing.assert_array_equal(b.chol, np.eye(3))
    assert np.all(b.low == -np.inf) and np.all(b.high == np.inf)
    d = rf.dists.Gaussian([1.0, 2.0], [4.0, 9.0])
    assert d.dim == 2 and d.bind(2) is d
    np.testing.assert_array_equal(d.chol, np.diag([2.0, 3.0]))
    cov = np.array([[4.0, 1.2, -0.4], [1.2, 2.0, 0.3], [-0.4, 0.3, 1.0]])
    f = rf.dists.Gaussian(0.5, cov)
    assert f.dim == 3 and np.all(f.mean == 0.5)
    assert np.all(np.triu(f.chol, 1) == 0) and np.all(np.diag(f.chol) > 0)
    np.testing.assert_allclose(f.chol @ f.chol.T, cov, rtol=1e-14, atol=1e-15)
    assert "Gaussian(mean=0.5" in repr(f) and "dim=3" in repr(f)
    assert repr(g) == "Gaussian(mean=0.0, cov=1.0)" and repr(b) == "Gaussian(mean=0.0, cov=1.0, dim=3)"
    lo, hi = d.typical_box()
    np.testing.assert_array_equal(lo, [1.0 - 8.0, 2.0 - 12.0])
    np.testing.assert_array_equal(hi, [1.0 + 8.0, 2.0 + 12.0])
    prob = rf.Problem([3, 2, 1], rf.targets.Function(lambda x: x[:, :1] ** 2), g)  # probe inside the box
    assert prob.input.dim == 3 and prob.target.out_dim == 1


def test_gaussian_from_uniform_is_mean_plus_chol_times_quantile():
    special = pytest.importorskip("scipy.special")
    cov = np.array([[2.0, -0.7], [-0.7, 1.5]])
    g = rf.dists.Gaussian([1.0, -3.0], cov)
    u = np.random.default_rng(4).random((1000, 2))
    expected = g.mean + special.ndtri(u) @ np.linalg.cholesky(cov).T
    np.testing.assert_allclose(g.from_uniform(u), expected, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("make,exc,match", [
    (lambda: rf.dists.Gaussian(np.nan), ValueError, "mean: expected finite"),
    (lambda: rf.dists.Gaussian(0.0, np.inf), ValueError, "cov: expected finite"),
    (lambda: rf.dists.Gaussian(1j), TypeError, "mean"),
    (lambda: rf.dists.Gaussian(0.0, "1"), TypeError, "cov"),
    (lambda: rf.dists.Gaussian(True), TypeError, "mean"),
    (lambda: rf.dists.Gaussian(np.zeros((2, 2))), ValueError, "mean: expected an array with 0 or 1"),
    (lambda: rf.dists.Gaussian(0.0, np.ones((2, 2, 2))), ValueError, "cov: expected an array with 0 or 1 or 2"),
    (lambda: rf.dists.Gaussian(0.0, np.ones((2, 3))), ValueError, "cov: expected a square"),
    (lambda: rf.dists.Gaussian([0.0, 0.0], [1.0, 1.0, 1.0]), ValueError, "mean, cov"),
    (lambda: rf.dists.Gaussian([0.0, 0.0], dim=3), ValueError, "dim: expected 2"),
    (lambda: rf.dists.Gaussian(0.0, 1.0, dim=0), ValueError, "dim"),
    (lambda: rf.dists.Gaussian(0.0, 1.0, dim=1.5), TypeError, "dim"),
    (lambda: rf.dists.Gaussian([]), ValueError, "mean: expected at least one"),
    (lambda: rf.dists.Gaussian(0.0, 0.0), ValueError, "cov: expected positive variances"),
    (lambda: rf.dists.Gaussian(0.0, [1.0, -1.0]), ValueError, "cov: expected positive variances"),
    (lambda: rf.dists.Gaussian(0.0, [[1.0, 0.5], [0.4, 1.0]]), ValueError, "cov: expected a symmetric"),
    (lambda: rf.dists.Gaussian(0.0, [[1.0, 1.0], [1.0, 1.0]]), ValueError, "cov: expected a symmetric positive definite"),
    (lambda: rf.dists.Gaussian(0.0, [[1.0, 2.0], [2.0, 1.0]]), ValueError, "cov: expected a symmetric positive definite"),
    (lambda: rf.Problem([1, 2, 1], rf.targets.Affine([[1.0]]), rf.dists.Gaussian([0.0, 1.0])), ValueError,
     "input: Gaussian has dimension 2, but widths\\[0\\] = 1"),
])
def test_bad_gaussians(make, exc, match):
    with pytest.raises(exc, match=match):
        make()
