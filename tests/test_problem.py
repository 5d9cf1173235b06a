"""Public API shapes, dtypes and bad input: every error names the argument."""
import numpy as np
import pytest

import reluflow as rf

HAT = rf.targets.PiecewiseLinear([0, .5, 1], [0, 1, 0])


def hat_problem(widths=(1, 8, 1)):
    return rf.Problem(list(widths), HAT, rf.dists.Uniform(0.0, 1.0))


def test_num_params_and_layout():
    prob = rf.Problem([3, 5, 4, 2], rf.targets.Affine(np.ones((2, 3))), rf.dists.Uniform(0, 1))
    assert prob.num_params == 5 * 4 + 4 * 6 + 2 * 5
    lay = prob.layout
    assert lay.w_offsets == [0, 20, 44] and lay.b_offsets == [15, 40, 52]
    theta = np.arange(prob.num_params, dtype=float)[None]
    (W1, b1), (W2, b2), (W3, b3) = lay.unpack(theta)
    assert W1.shape == (1, 5, 3) and W1[0, 1, 0] == 3  # row-major
    assert b1[0, 0] == 15 and W3.shape == (1, 2, 4) and b3[0, -1] == prob.num_params - 1


def test_shallow_layout_is_the_papers_order():
    # [d, H, 1]: (w_11..w_1d, ..., w_H1..w_Hd, b_1..b_H, v_1..v_H, c)
    prob = rf.Problem([2, 3, 1], rf.targets.Affine([[1.0, 1.0]]), rf.dists.Uniform(0, 1))
    theta = np.zeros((1, prob.num_params))
    theta[0, 6:9] = [1.0, 2.0, 3.0]          # b
    theta[0, 9:12] = [10.0, 20.0, 30.0]      # v
    theta[0, 12] = 0.5                        # c
    out = prob.realization(theta, np.zeros((1, 2)))
    assert out.shape == (1, 1, 1)
    assert out[0, 0, 0] == 10 * 1 + 20 * 2 + 30 * 3 + 0.5


def test_init_shapes_dtypes_and_reproducibility(dtype):
    prob = hat_problem()
    a = prob.init(n=4, seed=3, dtype=dtype)
    assert a.shape == (4, prob.num_params) and a.dtype == dtype
    b = prob.init(n=7, seed=3, dtype=dtype)
    assert np.array_equal(a, b[:4])  # network k depends on (seed, k) only
    assert not np.array_equal(a, prob.init(n=4, seed=4, dtype=dtype))


def test_init_is_standard_normal():
    prob = rf.Problem([1, 200, 1], HAT)
    z = prob.init(n=200, seed=0).ravel()
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / z.size)
    from scipy import stats

    assert stats.kstest(z, "norm").pvalue > 1e-3


def test_init_schemes():
    prob = rf.Problem([4, 300, 1], rf.targets.Affine(np.ones((1, 4))), rf.dists.Uniform(0, 1))
    he = prob.init(n=20, seed=0, scheme="he")
    (W1, b1), _ = prob.layout.unpack(he)
    assert np.all(b1 == 0) and abs(W1.var() - 2 / 4) < 0.05
    with pytest.raises(ValueError, match="scheme"):
        prob.init(n=2, scheme="xavier-magic")


def test_realization_shapes(dtype):
    prob = rf.Problem([2, 6, 3], rf.targets.Affine(np.ones((3, 2))), rf.dists.Uniform(0, 1, dim=2))
    theta = prob.init(5, dtype=dtype)
    out = prob.realization(theta, np.random.default_rng(0).random((11, 2)))
    assert out.shape == (5, 11, 3) and out.dtype == dtype


def test_normalize_keeps_realization_and_lands_on_manifold():
    prob = rf.Problem([1, 7, 5, 1], HAT)
    theta = prob.init(3, seed=2)
    x = np.linspace(-1, 2, 101)[:, None]
    th = prob.normalize(theta)
    np.testing.assert_allclose(prob.realization(th, x), prob.realization(theta, x), rtol=1e-12, atol=1e-12)
    for W, b in prob.layout.unpack(th)[:-1]:
        np.testing.assert_allclose(np.sum(W * W, axis=2) + b * b, 1.0, rtol=1e-14)


def test_points_with_data_does_not_evaluate_target(reference):
    calls = []

    def f(x):
        calls.append(1)
        return x[:, 0]

    prob = rf.Problem([1, 4, 1], rf.targets.Function(f))
    n_probe = len(calls)
    x = np.linspace(0, 1, 9)
    y = np.cos(x)
    theta = prob.init(2)
    risk, _ = prob.risk_and_grad(theta, rf.Points(x, y=y), backend=reference)
    assert len(calls) == n_probe
    expected = np.mean((prob.realization(theta, x[:, None])[:, :, 0] - y) ** 2, axis=1)
    np.testing.assert_allclose(risk, expected, rtol=1e-13)


def test_points_weights(reference):
    prob = hat_problem()
    theta = prob.init(2)
    x = np.array([0.1, 0.4, 0.8])
    w = np.array([0.5, 0.0, 2.0])
    r = prob.risk(theta, rf.Points(x, w), backend=reference)
    res = prob.realization(theta, x[:, None])[:, :, 0] - HAT(x[:, None])[:, 0]
    np.testing.assert_allclose(r, (res ** 2) @ w, rtol=1e-13)


def test_backends_listing():
    info = rf.backends()
    assert set(info) == {"numpy", "cupy", "cpu", "cuda"}
    assert info["numpy"].available and info["cpu"].available
    for name, item in info.items():
        assert item.detail  # a reason for every backend, available or not


# ---- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("widths,exc,match", [
    ([1], ValueError, "widths"),
    ([1, 0, 1], ValueError, "widths"),
    ([1, -3, 1], ValueError, "widths"),
    ([1, 2.5, 1], TypeError, "widths"),
    (5, TypeError, "widths"),
])
def test_bad_widths(widths, exc, match):
    with pytest.raises(exc, match=match):
        rf.Problem(widths, HAT)


def test_bad_problem_arguments():
    with pytest.raises(TypeError, match="target"):
        rf.Problem([1, 2, 1], lambda x: x)
    with pytest.raises(ValueError, match="target"):
        rf.Problem([2, 2, 1], HAT)  # 1-D target, 2-D input
    with pytest.raises(ValueError, match="target"):
        rf.Problem([1, 2, 3], HAT)  # output dimension 1 vs 3
    with pytest.raises(TypeError, match="input"):
        rf.Problem([1, 2, 1], HAT, input="uniform")
    with pytest.raises(ValueError, match="input"):
        rf.Problem([2, 2, 1], rf.targets.Affine([[1.0, 1.0]]), rf.dists.Uniform(0, 1, dim=3))


@pytest.mark.parametrize("theta,exc,match", [
    (np.zeros(25), ValueError, r"theta.*\(K, P\)"),
    (np.zeros((2, 24)), ValueError, "theta.*P = 25"),
    (np.zeros((2, 25), dtype=np.int64), TypeError, "theta.*float"),
    (np.zeros((2, 25), dtype=np.float16), TypeError, "theta"),
    (np.full((2, 25), np.nan), ValueError, "theta.*finite"),
    (np.zeros((0, 25)), ValueError, "theta"),
])
def test_bad_theta(theta, exc, match, reference):
    prob = hat_problem()
    with pytest.raises(exc, match=match):
        prob.risk_and_grad(theta, rf.MonteCarlo(16), backend=reference)


def test_bad_estimator_and_backend():
    prob = hat_problem()
    theta = prob.init(2)
    with pytest.raises(TypeError, match="estimator"):
        prob.risk(theta, 1000)
    with pytest.raises(ValueError, match="backend"):
        prob.risk(theta, rf.MonteCarlo(8), backend="tpu")
    with pytest.raises(TypeError, match="backend"):
        prob.risk(theta, rf.MonteCarlo(8), backend=3)
    if not rf.backends()["cuda"].available:
        with pytest.raises(ValueError, match="backend.*cuda.*not available"):
            prob.risk(theta, rf.MonteCarlo(8), backend="cuda")


@pytest.mark.parametrize("make,exc,match", [
    (lambda: rf.MonteCarlo(0), ValueError, "n"),
    (lambda: rf.MonteCarlo(1.5), TypeError, "n"),
    (lambda: rf.MonteCarlo(10, seed=-1), ValueError, "seed"),
    (lambda: rf.MonteCarlo(10, resample="yes"), TypeError, "resample"),
    (lambda: rf.QuasiMonteCarlo(0), ValueError, "n"),
    (lambda: rf.Quadrature(order=0), ValueError, "order"),
    (lambda: rf.Points(np.zeros((0, 1))), ValueError, "x"),
    (lambda: rf.Points([[0.1], [np.inf]]), ValueError, "x.*finite"),
    (lambda: rf.Points([0.1, 0.2], weights=[1.0]), ValueError, "weights"),
    (lambda: rf.Points([0.1, 0.2], weights=[1.0, -1.0]), ValueError, "weights"),
    (lambda: rf.Points([0.1, 0.2], y=[1.0]), ValueError, "y"),
])
def test_bad_estimators(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_points_dimension_mismatch():
    prob = rf.Problem([2, 3, 1], rf.targets.Affine([[1.0, 0.0]]), rf.dists.Uniform(0, 1))
    with pytest.raises(ValueError, match="x"):
        prob.risk(prob.init(1), rf.Points(np.zeros((4, 3))))
    with pytest.raises(ValueError, match="y"):
        prob.risk(prob.init(1), rf.Points(np.zeros((4, 2)), y=np.zeros((4, 2))))


def test_bad_init_arguments():
    prob = hat_problem()
    with pytest.raises(ValueError, match="n"):
        prob.init(n=0)
    with pytest.raises(TypeError, match="dtype"):
        prob.init(n=1, dtype="int32")
    with pytest.raises(ValueError, match="seed"):
        prob.init(n=1, seed=-5)


def test_normalize_refuses_zero_neuron():
    prob = hat_problem()
    theta = prob.init(1)
    W, b = prob.layout.unpack(theta)[0]
    W[0, 2] = 0.0
    b[0, 2] = 0.0
    with pytest.raises(ValueError, match="theta"):
        prob.normalize(theta)
