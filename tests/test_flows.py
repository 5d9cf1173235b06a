"""Integrators: GD/SGD, fixed-step RK methods, dopri5, the normalized flow, divergence and resuming."""
import numpy as np
import pytest

import reluflow as rf

HAT = rf.targets.PiecewiseLinear([0, .5, 1], [0, 1, 0])


def shallow(H=6):
    return rf.Problem([1, H, 1], HAT, rf.dists.Uniform(0.0, 1.0))


FIXED = rf.MonteCarlo(256, seed=3, resample=False)


def test_one_gd_step_is_theta_minus_lr_grad(dtype, backend):
    prob = shallow()
    theta = prob.init(4, seed=1, dtype=dtype)
    run = rf.gradient_descent(prob, theta, lr=0.01, steps=1, estimator=FIXED, backend=backend)
    _, g = prob.risk_and_grad(theta, FIXED, backend=backend)
    assert run.theta.dtype == dtype
    assert np.array_equal(run.theta, theta - (0.01 * g).astype(dtype))


def test_n_steps_equal_python_loop_with_schedule_and_sgd(backend):
    prob = shallow()
    theta = prob.init(3, seed=2)
    sgd = rf.MonteCarlo(64, seed=5, resample=True)
    lr = lambda n: 0.01 * (n + 1) ** -0.1  # noqa: E731
    run = rf.gradient_descent(prob, theta, lr=lr, steps=25, estimator=sgd, record_every=5, backend=backend)
    th = theta.copy()
    risks = []
    for n in range(25):
        r, g = prob.risk_and_grad(th, sgd, backend=backend, step=n)
        risks.append(r)
        th = th - lr(n) * g
    assert np.array_equal(run.theta, th)
    np.testing.assert_array_equal(run.t, [0, 5, 10, 15, 20, 25])
    assert np.array_equal(run.risk[1], risks[5])
    assert run.risk.shape == (6, 3) and run.grad_norm.shape == (6, 3)


def test_split_run_equals_run_in_one_piece_bitwise(backend):
    prob = shallow()
    theta = prob.init(3, seed=7)
    sgd = rf.MonteCarlo(32, seed=1)
    whole = rf.gradient_descent(prob, theta, lr=0.05, steps=20, estimator=sgd, backend=backend)
    a = rf.gradient_descent(prob, theta, lr=0.05, steps=8, estimator=sgd, backend=backend)
    b = rf.gradient_descent(prob, a.theta, lr=0.05, steps=12, estimator=sgd, backend=backend,
                            start_step=a.next_step)
    assert whole.theta.tobytes() == b.theta.tobytes()


def test_divergence_flags_exactly_the_networks_with_a_huge_step(backend):
    prob = shallow()
    theta = prob.init(4, seed=0)
    lr = np.full(10, 0.01)
    big = prob.init(4, seed=0)
    big[1] *= 1e3  # network 1 starts far out: its gradient is huge
    big[3] *= 1e3
    with pytest.warns(RuntimeWarning, match="diverged"):
        run = rf.gradient_descent(prob, big, lr=lr, steps=10, estimator=FIXED, backend=backend, max_abs=1e6)
    np.testing.assert_array_equal(run.diverged, [False, True, False, True])
    assert np.all(np.isfinite(run.theta))
    assert run.best() in (0, 2)
    ok = rf.gradient_descent(prob, theta, lr=lr, steps=10, estimator=FIXED, backend=backend)
    assert not ok.diverged.any()
    np.testing.assert_array_equal(run.theta[[0, 2]], ok.theta[[0, 2]])


def test_risk_decreases_under_gd_and_best(backend):
    prob = shallow(16)
    theta = prob.init(8, seed=4)
    run = rf.gradient_descent(prob, theta, lr=0.005, steps=200, estimator=FIXED, record_every=50, backend=backend)
    assert np.all(run.risk[-1] < run.risk[0])
    assert run.risk[-1][run.best()] == run.risk[-1].min()


def _smooth_problem():
    # every kink outside [0, 1] for the whole short trajectory: the field is smooth there
    prob = rf.Problem([1, 3, 1], rf.targets.Affine([[2.0]], [0.5]), rf.dists.Uniform(0.0, 1.0))
    theta = np.array([[1.0, 0.8, -0.6, 0.5, 0.3, 2.0, 0.4, -0.2, 0.3, 0.1]])
    return prob, theta


# step sizes in each method's asymptotic range (Heun's error constant makes it look 3rd order until
# dt ~ 1/256 on this problem)
@pytest.mark.parametrize("method,order,dts", [("euler", 1, [1 / 64, 1 / 128, 1 / 256]),
                                              ("heun", 2, [1 / 512, 1 / 1024, 1 / 2048]),
                                              ("rk4", 4, [1 / 32, 1 / 64, 1 / 128])])
def test_convergence_order(method, order, dts, backend):
    prob, theta = _smooth_problem()
    t, w = np.polynomial.legendre.leggauss(6)
    est = rf.Points(0.5 * t + 0.5, 0.5 * w)  # exact for the quadratic integrand: no sampling error
    ref = rf.gradient_flow(prob, theta, 1.0, method="rk4", dt=1 / 1024, estimator=est, backend=backend).theta
    errs = []
    for dt in dts:
        th = rf.gradient_flow(prob, theta, 1.0, method=method, dt=dt, estimator=est, backend=backend).theta
        errs.append(np.linalg.norm(th - ref))
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(rates - order) < 0.3), rates


def test_dopri5_matches_solve_ivp(backend):
    from scipy.integrate import solve_ivp

    prob = shallow(4)
    theta = prob.init(2, seed=3)
    est = rf.MonteCarlo(128, seed=1, resample=False)
    run = rf.gradient_flow(prob, theta, 2.0, method="dopri5", rtol=1e-10, atol=1e-12, estimator=est, backend=backend)
    for k in range(2):
        sol = solve_ivp(lambda t, y: -prob.risk_and_grad(y[None], est, backend=backend)[1][0], (0, 2.0),
                        theta[k], method="DOP853", rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(run.theta[k], sol.y[:, -1], rtol=1e-7, atol=1e-8)
    assert np.all(run.accepted > 0) and run.t[-1] == 2.0
    assert np.all(np.diff(run.risk, axis=0) <= 1e-12)  # the risk never increases along the flow


def test_dopri5_per_network_independence(backend):
    prob = shallow(4)
    theta = prob.init(3, seed=8)
    est = rf.MonteCarlo(128, seed=1, resample=False)
    together = rf.gradient_flow(prob, theta, 1.0, method="dopri5", estimator=est, backend=backend)
    alone = rf.gradient_flow(prob, theta[1:2], 1.0, method="dopri5", estimator=est, backend=backend)
    assert together.accepted[1] == alone.accepted[0] and together.rejected[1] == alone.rejected[0]
    np.testing.assert_allclose(together.theta[1], alone.theta[0], rtol=1e-12, atol=1e-14)


def test_energy_identity_along_the_flow(backend):
    prob = shallow(5)
    theta = prob.init(2, seed=2)
    est = rf.MonteCarlo(200, seed=0, resample=False)
    run = rf.gradient_flow(prob, theta, 1.0, method="rk4", dt=1e-3, estimator=est, backend=backend)
    defect = run.risk[-1] - run.risk[0] + run.energy[-1]
    assert np.all(np.abs(defect) < 1e-5 * run.risk[0])


def test_normalized_flow_stays_on_manifold_and_decreases_risk(backend):
    prob = rf.Problem([1, 6, 4, 1], HAT, rf.dists.Uniform(0.0, 1.0))
    theta = prob.init(3, seed=5)
    run = rf.normalized_gradient_flow(prob, theta, 1.0, method="rk4", dt=0.01, estimator=FIXED, backend=backend)
    for W, b in prob.layout.unpack(run.theta)[:-1]:
        np.testing.assert_allclose(np.sum(W * W, axis=2) + b * b, 1.0, atol=1e-12)
    assert np.all(run.risk[-1] < run.risk[0])
    assert np.all(np.diff(run.risk, axis=0) <= 1e-9)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(lr=0.0, steps=1), ValueError, "lr"),
    (dict(lr=-1.0, steps=1), ValueError, "lr"),
    (dict(lr=0.1, steps=-1), ValueError, "steps"),
    (dict(lr=[0.1], steps=3), ValueError, "lr"),
    (dict(lr=0.1, steps=1, record_every=0), ValueError, "record_every"),
    (dict(lr="fast", steps=1), TypeError, "lr"),
])
def test_bad_gd_arguments(kwargs, exc, match, backend):
    prob = shallow()
    with pytest.raises(exc, match=match):
        rf.gradient_descent(prob, prob.init(1), estimator=FIXED, backend=backend, **kwargs)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(t_end=1.0, method="leapfrog"), ValueError, "method"),
    (dict(t_end=-1.0), ValueError, "t_end"),
    (dict(t_end=1.0, method="dopri5", rtol=0.0), ValueError, "rtol"),
    (dict(t_end=1.0, dt=0.0), ValueError, "dt"),
    (dict(t_end=1.0, method="dopri5", estimator=rf.MonteCarlo(8)), ValueError, "estimator"),
])
def test_bad_flow_arguments(kwargs, exc, match, backend):
    prob = shallow()
    kwargs.setdefault("estimator", FIXED)
    with pytest.raises(exc, match=match):
        rf.gradient_flow(prob, prob.init(1), backend=backend, **kwargs)


def test_bad_prob_and_theta():
    with pytest.raises(TypeError, match="prob"):
        rf.gradient_descent("prob", np.zeros((1, 3)), lr=0.1, steps=1)
    prob = shallow()
    with pytest.raises(ValueError, match="theta0"):
        rf.gradient_descent(prob, np.zeros((1, 3)), lr=0.1, steps=1, estimator=FIXED)


def test_diagnostics(backend):
    from reluflow import diagnostics as dg

    prob = shallow(5)
    theta = prob.init(2, seed=2)
    est = rf.MonteCarlo(200, seed=0, resample=False)
    run = rf.gradient_flow(prob, theta, 1.0, method="rk4", dt=1e-3, estimator=est, backend=backend)
    assert dg.energy_defect(run).shape == run.risk.shape
    assert np.all(np.abs(dg.energy_defect(run)) < 1e-5 * run.risk[0])
    # balancedness is conserved by the flow (to integrator accuracy)
    b0, b1 = dg.balancedness(prob, theta), dg.balancedness(prob, run.theta)
    assert b0.shape == (2, 5)
    np.testing.assert_allclose(b1, b0, atol=1e-8)
    # a neuron with w > 0, b < -w is dead on [0, 1]
    th = theta.copy()
    W, b = prob.layout.unpack(th)[0]
    W[:, 0, 0], b[:, 0] = 1.0, -2.0
    assert np.all(dg.dead_neurons(prob, th, est) >= 1)
    # the fitted rate of an exact power law
    fake = rf.Run(theta=theta, t=np.arange(1.0, 11.0), risk=np.outer(np.arange(1.0, 11.0) ** -1.5, [1, 2]),
                  grad_norm=np.zeros((10, 2)), energy=np.zeros((10, 2)), thetas=None,
                  diverged=np.zeros(2, bool), status=np.array(["ok", "ok"]), accepted=np.zeros(2),
                  rejected=np.zeros(2), method="gd")
    np.testing.assert_allclose(dg.convergence_rate(fake), 1.5, rtol=1e-10)
    with pytest.raises(TypeError, match="run"):
        dg.energy_defect("run")
    with pytest.raises(ValueError, match="tail"):
        dg.convergence_rate(fake, tail=0)
