"""``rf.Exact()`` (SPEC §8): the planner's choice, the Gaussian closed form through every entry point
(risk, gradient, Hessian, flows, polish, the CLI config), and the refusals that name the estimator.

The closed form itself is checked against numerical integration in tests/test_gaussian_exact.py; here
it is checked against the rest of the library: Monte-Carlo on Gaussian samples, finite differences
through ``Problem``, and the exact 1-D quadrature that ``Exact()`` means elsewhere in 1-D."""
from __future__ import annotations

import numpy as np
import pytest

import reluflow as rf

HAT = rf.targets.PiecewiseLinear([0.0, 0.5, 1.0], [0.0, 1.0, 0.0])


def gaussian_problem(d=2, H=3, out=1, target="teacher", seed=0):
    rng = np.random.default_rng(seed)
    if target == "teacher":
        tw = [d, 2, out]
        tgt = rf.targets.Teacher(tw, rng.standard_normal(rf.Layout(tw).num_params))
    else:
        tgt = rf.targets.Affine(rng.standard_normal((out, d)), rng.standard_normal(out))
    A = rng.standard_normal((d, d))
    cov = A @ A.T + 0.5 * np.eye(d)
    return rf.Problem([d, H, out], tgt, rf.dists.Gaussian(rng.standard_normal(d), cov))


def test_exact_in_1d_is_the_exact_quadrature_bitwise():
    prob = rf.Problem([1, 5, 1], HAT)
    theta = prob.init(3, seed=1)
    for backend in ("numpy", "cpu"):
        p = prob.plan(rf.Exact(), backend, theta)
        assert isinstance(p.estimator, rf.Quadrature) and "Exact() in 1-D" in p.explain()
        r1, g1 = prob.risk_and_grad(theta, rf.Exact(), backend=backend)
        r2, g2 = prob.risk_and_grad(theta, rf.Quadrature(), backend=backend)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(prob.hessian(theta, rf.Exact()), prob.hessian(theta, rf.Quadrature()))


@pytest.mark.parametrize("target", ["teacher", "affine"])
def test_gaussian_closed_form_route_on_every_backend(target):
    prob = gaussian_problem(target=target, out=2)
    theta = prob.init(4, seed=2)
    p = prob.plan(rf.Exact(), "cpu", theta)
    assert p.route == "gaussian_closed_form" and p.loop == "Python"
    assert "closed form" in prob.explain(rf.Exact(), backend="cpu")
    r_np, g_np = prob.risk_and_grad(theta, rf.Exact(), backend="numpy")
    r_cpu, g_cpu = prob.risk_and_grad(theta, rf.Exact(), backend="cpu")
    np.testing.assert_array_equal(r_np, r_cpu)
    np.testing.assert_array_equal(g_np, g_cpu)
    r32, g32 = prob.risk_and_grad(theta.astype(np.float32), rf.Exact())
    assert r32.dtype == np.float32 and g32.dtype == np.float32
    np.testing.assert_allclose(r32, r_np, rtol=1e-5)


@pytest.mark.parametrize("target", ["teacher", "affine"])
def test_gaussian_closed_form_agrees_with_monte_carlo_on_gaussian_samples(target):
    """Independent of the closed form: the dense kernel on 4e5 Gaussian samples (the library's own
    sampler), risk and gradient within 5 standard errors (the errors estimated from 8 batches)."""
    prob = gaussian_problem(target=target)
    theta = prob.init(2, seed=3)
    r, g = prob.risk_and_grad(theta, rf.Exact())
    rs, gs = zip(*(prob.risk_and_grad(theta, rf.MonteCarlo(50_000, seed=s, resample=False), backend="cpu")
                   for s in range(8)))
    rs, gs = np.array(rs), np.array(gs)
    se_r = rs.std(axis=0, ddof=1) / np.sqrt(8)
    se_g = gs.std(axis=0, ddof=1) / np.sqrt(8)
    assert np.all(np.abs(rs.mean(axis=0) - r) <= 5 * se_r + 1e-12)
    assert np.all(np.abs(gs.mean(axis=0) - g) <= 5 * se_g + 1e-10)


def test_gaussian_hessian_through_problem_matches_finite_differences():
    prob = gaussian_problem(d=3, H=4, target="teacher", seed=4)
    theta = prob.init(2, seed=5)
    Hs = prob.hessian(theta, rf.Exact())
    assert Hs.shape == (2, prob.num_params, prob.num_params)
    np.testing.assert_array_equal(Hs, np.swapaxes(Hs, 1, 2))
    eps = 1e-6
    P = prob.num_params
    fd = np.empty_like(Hs)
    for i in range(P):
        e = np.zeros(P)
        e[i] = eps
        gp = prob.risk_and_grad(theta + e, rf.Exact())[1]
        gm = prob.risk_and_grad(theta - e, rf.Exact())[1]
        fd[:, :, i] = (gp - gm) / (2 * eps)
    np.testing.assert_allclose(Hs, fd, rtol=1e-6, atol=1e-7 * np.abs(Hs).max())
    V = np.random.default_rng(6).standard_normal((2, P))
    np.testing.assert_allclose(prob.hvp(theta, V, rf.Exact()), np.einsum("kpq,kq->kp", Hs, V), rtol=1e-12,
                               atol=1e-13 * np.abs(Hs).max())


def teacher_student(k=4):
    tw = [k, k, 1]
    theta_t = np.concatenate([np.eye(k).ravel(), np.zeros(k), np.ones(k), np.zeros(1)])
    prob = rf.Problem(tw, rf.targets.Teacher(tw, theta_t), rf.dists.Gaussian(0.0, 1.0, dim=k))
    frozen = prob.mask(layers=[1], weights=False, biases=True) | prob.mask(layers=[2])
    return prob, frozen, theta_t


def test_teacher_student_flow_then_polish_reaches_the_teacher():
    """Bias-free student, output weights fixed to 1 (frozen), started near the teacher: the exact flow
    decreases the risk, polish reaches |G| <= 1e-12 and the global minimum (risk ~ 0, the teacher's
    weights up to a permutation), the frozen parameters untouched."""
    prob, frozen, theta_t = teacher_student(4)
    rng = np.random.default_rng(7)
    theta0 = theta_t[None].repeat(3, axis=0)
    theta0[:, ~frozen] += 0.1 * rng.standard_normal((3, int((~frozen).sum())))
    run = rf.gradient_flow(prob, theta0, 20.0, method="dopri5", estimator=rf.Exact(), frozen=frozen,
                           progress=False)
    assert np.all(np.diff(run.risk, axis=0) <= 1e-15)
    np.testing.assert_array_equal(run.theta[:, frozen], theta0[:, frozen])
    pol = rf.polish(prob, run.theta, rf.Exact(), frozen=frozen)
    assert list(pol.status) == ["converged"] * 3, pol
    assert pol.risk.max() < 1e-13                                # 0 up to the rounding of O(1) terms
    W = pol.theta[:, :16].reshape(3, 4, 4)
    for k in range(3):   # each student neuron is one teacher neuron e_j
        np.testing.assert_allclose(np.sort(np.abs(W[k]).max(axis=1)), np.ones(4), atol=1e-10)
    H = prob.hessian(pol.theta, rf.Exact())[:, ~frozen][:, :, ~frozen]
    assert np.linalg.eigvalsh(H)[:, 0].min() > 1e-3             # an isolated, regular minimum


def test_gradient_descent_with_exact_runs_the_python_loop():
    prob, frozen, theta_t = teacher_student(3)
    theta0 = theta_t[None] + 0.05 * np.random.default_rng(8).standard_normal((2, prob.num_params))
    theta0[:, frozen] = theta_t[frozen]
    run = rf.gradient_descent(prob, theta0, 0.1, 20, estimator=rf.Exact(), frozen=frozen, progress=False)
    assert "loop" not in run.info                  # the Python driver
    assert np.all(run.risk[-1] < run.risk[0])


def test_exact_refusals_name_the_estimator():
    with pytest.raises(ValueError, match="estimator: Exact\\(\\) has no closed form"):
        rf.Problem([2, 3, 1], rf.targets.Affine([[1.0, 2.0]])).risk(np.zeros((1, 13)), rf.Exact())
    deep = rf.Problem([2, 3, 3, 1], rf.targets.Affine([[1.0, 2.0]]), rf.dists.Gaussian(0.0, 1.0, dim=2))
    with pytest.raises(ValueError, match="estimator: .*shallow nets"):
        deep.risk(deep.init(1), rf.Exact())
    fn = rf.Problem([2, 3, 1], rf.targets.Function(lambda x: x[:, :1] ** 2, out_dim=1),
                    rf.dists.Gaussian(0.0, 1.0, dim=2))
    with pytest.raises(ValueError, match="estimator: .*Affine or a shallow Teacher"):
        fn.risk(fn.init(1), rf.Exact())
    with pytest.raises(ValueError, match="estimator: Exact\\(\\) has no nodes"):
        rf.Exact().nodes(deep.spec)


def test_config_estimator_exact():
    from reluflow.experiments.config import _estimator
    assert isinstance(_estimator({"kind": "exact"}, "estimator"), rf.Exact)
