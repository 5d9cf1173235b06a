"""Argument checks (``reluflow._validate`` and every public entry point): bad input is refused at once
with a ValueError/TypeError that names the argument (issue 15, item 6), and ``Run.best`` never returns a
network that did not finish (item 1)."""
import numpy as np
import pytest

import reluflow as rf

HAT = rf.targets.PiecewiseLinear([0.0, 0.5, 1.0], [0.0, 1.0, 0.0])


@pytest.fixture
def prob():
    return rf.Problem([1, 6, 1], HAT)


# ---- arrays of real numbers only ------------------------------------------------------------------

@pytest.mark.parametrize("bad, kind", [([True, False], "booleans"), ([1j, 2.0], "complex"),
                                       (["0.1", "0.2"], "strings"), ([[0.1], [0.2, 0.3]], "ragged")])
def test_points_refuse_non_real_arrays(bad, kind):
    with pytest.raises((TypeError, ValueError), match=f"x: expected .*{kind.split()[0][:5]}"):
        rf.Points(bad)


@pytest.mark.parametrize("bad", [[[1j]], [[True]], [["1"]]])
def test_affine_refuses_non_real_coefficients(bad):
    with pytest.raises(TypeError, match="A: expected an array of real numbers"):
        rf.targets.Affine(bad)
    with pytest.raises(TypeError, match="b: expected"):
        rf.targets.Affine([[1.0]], b=bad[0])


def test_realization_refuses_string_points(prob):
    with pytest.raises(TypeError, match="x: expected an array of real numbers, got strings"):
        prob.realization(prob.init(1), np.array(["0.5"]))


def test_ragged_theta_names_theta(prob):
    with pytest.raises(ValueError, match="theta: expected a \\(K, P\\) array.*ragged"):
        prob.risk(prob.init(1).tolist() + [[0.0]], rf.MonteCarlo(8))


# ---- constructors ------------------------------------------------------------------------------------

def test_uniform_box_checked_at_construction():
    with pytest.raises(ValueError, match="high: expected high > low"):
        rf.dists.Uniform(1.0, 0.0)
    with pytest.raises(ValueError, match="high: expected high > low"):
        rf.dists.Uniform(0.0, 0.0)


def test_empty_coefficients_refused():
    with pytest.raises(ValueError, match="coeffs: expected at least one coefficient per piece"):
        rf.targets.PiecewisePolynomial([0.0, 1.0], np.zeros((1, 0)))
    with pytest.raises(ValueError, match="coeffs: expected at least one coefficient per piece"):
        rf.dists.PiecewisePolynomial([0.0, 1.0], np.zeros((1, 0)))


def test_points_weights_must_have_mass():
    with pytest.raises(ValueError, match="weights: expected a positive total weight"):
        rf.Points([0.1, 0.2], weights=[0.0, 0.0])


@pytest.mark.parametrize("out_dim, exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError)])
def test_function_out_dim_checked(out_dim, exc):
    with pytest.raises(exc, match="out_dim"):
        rf.targets.Function(np.sin, out_dim=out_dim)


# ---- flags --------------------------------------------------------------------------------------------

def test_want_grad_must_be_a_bool(prob):
    with pytest.raises(TypeError, match="want_grad: expected True or False"):
        prob.risk_and_grad(prob.init(1), rf.MonteCarlo(8), want_grad="no")


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"record_theta": "yes"}, TypeError, "record_theta"),
    ({"normalized": 1}, TypeError, "normalized"),
    ({"progress": "bar"}, TypeError, "progress"),
    ({"max_abs": 0.0}, ValueError, "max_abs"),
    ({"max_abs": -1.0}, ValueError, "max_abs"),
])
def test_integrator_flags_checked(prob, kwargs, exc, name):
    theta = prob.init(1)
    with pytest.raises(exc, match=f"{name}:"):
        rf.gradient_descent(prob, theta, lr=0.01, steps=2, estimator=rf.MonteCarlo(8), **kwargs)
    with pytest.raises(exc, match=f"{name}:"):
        rf.gradient_flow(prob, theta, 0.1, method="euler", estimator=rf.MonteCarlo(8, resample=False), **kwargs)


@pytest.mark.parametrize("min_step, exc", [("tiny", TypeError), (-1.0, ValueError), (float("nan"), ValueError)])
def test_min_step_checked_for_every_method(prob, min_step, exc):
    with pytest.raises(exc, match="min_step:"):
        rf.gradient_flow(prob, prob.init(1), 0.1, method="rk4", min_step=min_step)


@pytest.mark.parametrize("value", [-0.1, 0.0, float("nan"), float("inf")])
def test_callable_lr_must_stay_positive(prob, backend, value):
    """A callable schedule that turns negative would run gradient ascent; it is refused, naming lr(n)."""
    def lr(n):
        return 0.01 if n < 3 else value

    with pytest.raises(ValueError, match="lr\\(3\\)"):
        rf.gradient_descent(prob, prob.init(2), lr=lr, steps=6, estimator=rf.MonteCarlo(16), backend=backend)


# ---- diagnostics ----------------------------------------------------------------------------------------

def test_diagnostics_arguments(prob):
    theta = prob.init(2)
    with pytest.raises(TypeError, match="estimator: expected Points, MonteCarlo or QuasiMonteCarlo"):
        rf.diagnostics.dead_neurons(prob, theta, rf.Quadrature())
    with pytest.raises(TypeError, match="prob: expected a reluflow.Problem"):
        rf.diagnostics.balancedness(None, theta)
    with pytest.raises(TypeError, match="prob: expected a reluflow.Problem"):
        rf.diagnostics.dead_neurons("prob", theta, rf.MonteCarlo(8))
    run = rf.gradient_flow(prob, theta, 1.0, method="rk4", dt=0.01)
    with pytest.raises(ValueError, match="l_inf: expected finite values"):
        rf.diagnostics.convergence_rate(run, l_inf=float("nan"))
    assert np.all(np.isfinite(rf.diagnostics.convergence_rate(run, l_inf=0.0)))


# ---- Run.best: only networks that finished ---------------------------------------------------------------

def test_best_skips_networks_stopped_by_max_steps(prob, backend):
    """dopri5 with max_steps too small for some networks: their last risk is NaN and their status
    "max_steps"; best() picks among the finished ones, and raises when none finished."""
    theta = prob.init(4, seed=3)
    run = rf.gradient_flow(prob, theta, 5.0, method="dopri5", max_steps=3, backend=backend)
    assert set(run.status) == {"max_steps"}
    assert not run.finished().any()
    with pytest.raises(ValueError, match="run: no network finished.*max_steps"):
        run.best()
    assert "best risk=nan" in repr(run) and "finished=0" in repr(run)
    full = rf.gradient_flow(prob, theta, 5.0, method="dopri5", backend=backend)
    assert full.finished().all()
    # a mixed run: pretend networks 0 and 2 stopped early; the best is among 1 and 3
    mixed = full
    mixed.status = np.array(["max_steps", "ok", "min_step", "ok"])
    best = mixed.best()
    assert best in (1, 3) and mixed.risk[-1][best] == min(mixed.risk[-1][1], mixed.risk[-1][3])


def test_best_skips_diverged(prob):
    theta = prob.init(3, seed=1)
    theta[1] *= 1e3
    with pytest.warns(RuntimeWarning, match="diverged"):
        run = rf.gradient_descent(prob, theta, lr=1.0, steps=20, estimator=rf.MonteCarlo(64), max_abs=1e4)
    assert run.diverged[1] and run.best() != 1


# ---- overflow is said, not returned silently (item 5) ------------------------------------------------

def test_overflowing_risk_warns(prob, backend):
    theta = prob.init(3) * 1e200
    with pytest.warns(RuntimeWarning, match="risk: overflowed.*network\\(s\\) \\[0, 1, 2\\]"):
        prob.risk(theta, rf.MonteCarlo(32), backend=backend)


def test_overflowing_domains_refused():
    with pytest.raises(ValueError, match="high: the box's side high - low overflows"):
        rf.dists.Uniform(-1e308, 1e308)
    with pytest.raises(ValueError, match="high: the box's side high - low overflows"):
        rf.dists.Uniform([-1e308, 0.0], [1e308, 1.0])
    with pytest.raises(ValueError, match="coeffs: the density's total mass overflows"):
        rf.dists.PiecewisePolynomial([0.0, 1e200], [[1e200]])


# ---- ragged coefficient rows are padded (item 9) -------------------------------------------------------

def test_ragged_coefficients_padded():
    t = rf.targets.PiecewisePolynomial([0.0, 0.5, 1.0], [[1.0, 0.5], [0.2, 0.0, 1.0]])
    assert t.degree == 2 and t.coeffs.shape == (2, 3, 1)
    x = np.array([[0.25], [0.75]])
    np.testing.assert_allclose(t(x)[:, 0], [1.0 + 0.5 * 0.25, 0.2 + 0.25 ** 2], rtol=1e-15)
    d = rf.dists.PiecewisePolynomial([0.0, 0.5, 1.0], [[1.0], [0.5, 1.0]])
    assert d.degree == 1
    np.testing.assert_allclose(d.cdf(np.array([1.0])), [1.0], rtol=1e-15)
    with pytest.raises(TypeError, match="coeffs\\[1\\]: expected an array of real numbers"):
        rf.targets.PiecewisePolynomial([0.0, 0.5, 1.0], [[1.0], ["a", "b"]])


# ---- resuming a normalized run is bitwise (item 8) -----------------------------------------------------

def test_normalized_resume_bitwise(prob, backend):
    theta = prob.init(3, seed=4)
    est = rf.MonteCarlo(64, seed=1)
    whole = rf.gradient_descent(prob, theta, lr=0.01, steps=40, estimator=est, normalized=True, backend=backend)
    a = rf.gradient_descent(prob, theta, lr=0.01, steps=17, estimator=est, normalized=True, backend=backend)
    b = rf.gradient_descent(prob, a.theta, lr=0.01, steps=23, estimator=est, normalized=True, backend=backend,
                            start_step=a.next_step)
    assert b.theta.tobytes() == whole.theta.tobytes()
    fixed = rf.MonteCarlo(64, seed=1, resample=False)
    whole = rf.gradient_flow(prob, theta, 0.4, method="rk4", dt=0.01, estimator=fixed, normalized=True,
                             backend=backend)
    a = rf.gradient_flow(prob, theta, 0.17, method="rk4", dt=0.01, estimator=fixed, normalized=True, backend=backend)
    b = rf.gradient_flow(prob, a.theta, 0.23, method="rk4", dt=0.01, estimator=fixed, normalized=True,
                         backend=backend)
    assert b.theta.tobytes() == whole.theta.tobytes()


# ---- requests that would exhaust memory are refused up front (item 7) ---------------------------------

def test_memory_exhausting_requests_refused(prob):
    theta = prob.init(2)
    with pytest.raises(ValueError, match="t_end, record_every: this run would allocate .* GiB up front"):
        rf.gradient_flow(prob, theta, 1.0, method="dopri5", record_every=1e-12)
    # a constant dt / lr is never materialized (item 7): these ask for no memory now, but for more
    # steps than a run can address
    with pytest.raises(ValueError, match=r"t_end, dt: this run would reach step index 10000000000000, beyond"):
        rf.gradient_flow(prob, theta, 1.0, method="euler", dt=1e-13)
    with pytest.raises(ValueError, match=r"start_step, steps: this run would reach step index 1000000000000, beyond"):
        rf.gradient_descent(prob, theta, lr=0.01, steps=10**12, record_every=10**6)
    with pytest.raises(ValueError, match="t_end, dt, record_every: this run would allocate"):
        rf.gradient_flow(prob, theta, 1.0, method="euler", dt=1e-11, record_every=1e-11)
    with pytest.raises(ValueError, match="steps, record_every: this run would allocate"):
        rf.gradient_descent(prob, theta, lr=0.01, steps=2**32 - 1, record_every=1)
    with pytest.raises(ValueError, match="steps, record_every: .* with theta"):
        rf.gradient_descent(prob, theta, lr=0.01, steps=10**10, record_every=1, record_theta=True)
