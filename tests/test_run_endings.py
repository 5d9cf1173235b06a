"""How runs end (issue 15, items 2, 3, 4 and 7): constant step sizes never materialized, divergence by
risk blow-up with a reason per network, the energy identity of the fixed-step flows, and Ctrl-C
returning a resumable partial Run; the C++ loops and the Python driver alike."""
import contextlib
import time
import tracemalloc

import numpy as np
import pytest

import reluflow as rf
from conftest import ctrl_c_after, python_driver

HAT = rf.targets.PiecewiseLinear([0, .5, 1], [0, 1, 0])
U01 = rf.dists.Uniform(0.0, 1.0)
needs_cpu = pytest.mark.skipif(not rf.backends()["cpu"].available, reason="C++ extension not built")


def _driver(python):
    return python_driver() if python else contextlib.nullcontext()


# ---- item 7: a constant step size is one number -------------------------------------------------

@needs_cpu
@pytest.mark.parametrize("method", ["gd", "euler", "rk4"])
def test_flow_run_length_one_h_is_the_same_step_every_step_bitwise(method, dtype):
    """_core.flow_run with h of length 1 gives bitwise what the materialized schedule gives."""
    from reluflow import _core

    prob = rf.Problem([1, 5, 1], HAT, U01)
    theta = prob.init(3, seed=4, dtype=dtype)
    x = np.linspace(0.05, 0.95, 9)[:, None]
    field = {"source": "fixed", "x": x, "w": np.full(9, 1 / 9), "y": HAT(x).reshape(-1, 1)}
    args = (list(prob.widths), np.ascontiguousarray(theta), method, 40, 3, 7)
    full = _core.flow_run(*args, np.full(40, 0.05), 1e8, **field)
    one = _core.flow_run(*args, np.array([0.05]), 1e8, **field)
    for key in ("theta", "risk", "grad_norm", "energy", "active"):
        assert full[key].tobytes() == one[key].tobytes(), key
    with pytest.raises(ValueError, match="h"):
        _core.flow_run(*args, np.full(2, 0.05), 1e8, **field)


@needs_cpu
def test_constant_lr_is_not_materialized():
    """1,000,000 GD steps with a constant lr allocate no schedule (the old one took 8 MB)."""
    prob = rf.Problem([1, 2, 1], rf.targets.Affine([[1.0]], [0.0]), U01)
    theta = prob.init(1, seed=0)
    est = rf.Points(np.array([0.1, 0.4, 0.6, 0.9]), np.full(4, 0.25))
    tracemalloc.start()
    try:
        run = rf.gradient_descent(prob, theta, lr=1e-3, steps=1_000_000, estimator=est, backend="cpu",
                                  record_every=500_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert run.info["loop"] == "C++" and run.next_step == 1_000_000 and run.t.size == 3
    assert peak < 2 << 20, peak
    flow = rf.gradient_flow(prob, theta, 1.0, method="euler", dt=1e-3, estimator=est, backend="cpu")
    with python_driver():
        ref = rf.gradient_flow(prob, theta, 1.0, method="euler", dt=1e-3, estimator=est, backend="cpu")
    assert flow.theta.tobytes() == ref.theta.tobytes()


# ---- item 2: a risk that blows up freezes the network, with a reason ------------------------------

def _dead_net(dtype=np.float64):
    """[1, 4, 1] nets whose hidden neurons are dead on [0, 1] (biases -5): the realization is the output
    bias c, the risk c^2 against the zero target, and GD with lr 1.5 maps c to -2c (risk x4 a step).
    Network 0 starts at risk 0.12, network 1 at risk 0 (its gradient is 0: it stays there)."""
    prob = rf.Problem([1, 4, 1], rf.targets.Affine([[0.0]], [0.0]), U01)
    theta = np.zeros((2, prob.num_params), dtype=dtype)
    (W1, b1), (W2, b2) = prob.layout.unpack(theta)
    W1[...], b1[...], W2[...] = 1.0, -5.0, 0.5
    b2[0], b2[1] = np.sqrt(0.12), 0.0
    return prob, theta


@pytest.mark.parametrize("python", [False, True])
def test_gd_risk_blow_up_is_caught(backend, python):
    """The issue's case: GD with lr=1.5 on a net with dead hidden neurons takes the risk from 0.12 to
    1e11 in 20 steps; with the default max_growth the network is frozen when its risk passes 1e6 x
    its start, flagged and explained; the other network runs on."""
    prob, theta = _dead_net()
    est = rf.Quadrature()
    with _driver(python):
        free = rf.gradient_descent(prob, theta, lr=1.5, steps=20, estimator=est, backend=backend,
                                   max_growth=np.inf)
        assert not free.diverged.any() and list(free.reason) == ["", ""]
        assert free.risk[0, 0] == pytest.approx(0.12) and free.risk[-1, 0] > 1e10  # it really blows up
        with pytest.warns(RuntimeWarning, match=r"1 of 2 networks diverged .*network 0: risk grew .*x over its start"):
            run = rf.gradient_descent(prob, theta, lr=1.5, steps=20, estimator=est, backend=backend)
    assert list(run.diverged) == [True, False] and list(run.status) == ["diverged", "ok"]
    factor = run.risk[-1, 0] / run.risk[0, 0]
    assert 1e6 < factor < 4.1e6  # frozen at the first state past the bound (x4 a step)
    assert run.reason[0] == f"risk grew {factor:.2g}x over its start" and run.reason[1] == ""
    # frozen at the parameters of that risk: the free run's state after the same number of steps
    n = int(np.argmax(free.risk[:, 0] > 1e6 * free.risk[0, 0]))
    assert run.theta[0].tobytes() == (rf.gradient_descent(prob, theta[:1], lr=1.5, steps=n, estimator=est,
                                                          backend=backend, max_growth=np.inf).theta[0].tobytes())
    assert run.best() == 1
    if backend == "cpu" and not python:
        with python_driver(), pytest.warns(RuntimeWarning, match="diverged"):
            ref = rf.gradient_descent(prob, theta, lr=1.5, steps=20, estimator=est, backend=backend)
        assert "loop" in run.info and "loop" not in ref.info
        assert run.theta.tobytes() == ref.theta.tobytes() and run.risk.tobytes() == ref.risk.tobytes()
        np.testing.assert_allclose(run.energy, ref.energy, rtol=1e-12)  # |G|'s sum order differs
        assert list(run.reason) == list(ref.reason)


@pytest.mark.parametrize("method,dt", [("euler", 1.5), ("heun", 2.0), ("rk4", 3.0), ("dopri5", 10.0)])
@pytest.mark.parametrize("python", [False, True])
def test_flow_risk_blow_up_is_caught(method, dt, backend, python):
    """Every integrator freezes a network whose risk passes max_growth x its start, status "diverged"."""
    prob, theta = _dead_net()
    kw = dict(method=method, dt=dt, estimator=rf.Quadrature(), backend=backend, record_every=100.0)
    if method == "dopri5":  # a tolerance that accepts every step: far outside the stability region
        kw.update(rtol=1e3, atol=1e3)
    with _driver(python), np.errstate(over="ignore", invalid="ignore"), pytest.warns(RuntimeWarning) as seen:
        run = rf.gradient_flow(prob, theta, 100.0, **kw)
    messages = [str(w.message) for w in seen]
    assert any("network 0: risk grew" in m for m in messages), messages
    # and the fixed-step methods say that the risk rose on the way
    assert any("the risk rose during the run in 1 of 2 networks" in m for m in messages) == (method != "dopri5")
    assert list(run.risk_rose) == [method != "dopri5", False]
    assert list(run.status) == ["diverged", "ok"] and run.reason[0].startswith("risk grew")
    assert run.reason[1] == ""
    assert float(run.reason[0].split()[2].rstrip("x")) > 1e6


def test_reasons_for_parameters_and_max_growth_validation(backend):
    prob = rf.Problem([1, 6, 1], HAT, U01)
    big = prob.init(4, seed=0)
    big[[1, 3]] *= 1e3
    with pytest.warns(RuntimeWarning, match="network 1: parameters exceeded max_abs; network 3: parameters"):
        run = rf.gradient_descent(prob, big, lr=0.01, steps=10, estimator=rf.MonteCarlo(64, seed=1),
                                  backend=backend, max_abs=1e6, max_growth=np.inf)
    assert list(run.reason) == ["", "parameters exceeded max_abs", "", "parameters exceeded max_abs"]
    for bad, exc in [(1.0, ValueError), (0.5, ValueError), (np.nan, ValueError), (-np.inf, ValueError),
                     ("big", TypeError), (True, TypeError)]:
        with pytest.raises(exc, match="max_growth"):
            rf.gradient_descent(prob, big, lr=0.01, steps=1, backend=backend, max_growth=bad)
        with pytest.raises(exc, match="max_growth"):
            rf.gradient_flow(prob, big, 1.0, backend=backend, max_growth=bad)


@needs_cpu
def test_dopri5_reason_when_giving_up():
    """dopri5 gives a network up as "diverged" after rejections of bad steps: the reason says which,
    the same in the C++ loop and the Python driver."""
    prob = rf.Problem([1, 6, 1], HAT, U01)
    theta = prob.init(4, seed=2)
    big = theta.copy()
    big[1] *= 1e3  # beyond max_abs from the start
    reasons = []
    for python in (False, True):
        with _driver(python), np.errstate(over="ignore", invalid="ignore"):
            with pytest.warns(RuntimeWarning, match="network 1: parameters exceeded max_abs"):
                run = rf.gradient_flow(prob, big, 0.5, method="dopri5", estimator=rf.Quadrature(), max_abs=100.0,
                                       max_rejections=4, backend="cpu")
            assert list(run.reason) == ["", "parameters exceeded max_abs", "", ""]
            with pytest.warns(RuntimeWarning, match="diverged"):
                run = rf.gradient_flow(prob, theta * 30.0, 1e6, method="dopri5", estimator=rf.Quadrature(), dt=1e6,
                                       record_every=1e6, max_abs=1e3, max_rejections=3, backend="cpu")
        assert set(run.reason) <= {"parameters exceeded max_abs", "parameters not finite"}
        reasons.append(list(run.reason))
    assert reasons[0] == reasons[1]


# ---- item 3: the energy identity of the fixed-step flows -------------------------------------------

@pytest.mark.parametrize("method,dt,factor", [("euler", 1.2, 1.4 ** 2), ("heun", 1.2, 1.48 ** 2),
                                              ("rk4", 1.5, 1.375 ** 2)])
@pytest.mark.parametrize("python", [False, True])
def test_a_rising_risk_is_flagged_and_warned_once(method, dt, factor, backend, python, dtype):
    """dc/dt = -2c on the dead net: a step beyond the method's stability interval multiplies the risk
    by R(-2 dt)^2 > 1 every step (no blow-up past max_growth in 5 steps); the network is flagged in
    Run.risk_rose and one warning points to a smaller dt or dopri5. A small dt says nothing."""
    prob, theta = _dead_net(dtype)
    kw = dict(method=method, estimator=rf.Quadrature(), backend=backend)
    with _driver(python), pytest.warns(RuntimeWarning) as seen:
        run = rf.gradient_flow(prob, theta, 5 * dt, dt=dt, record_every=dt, **kw)
    rose = [w for w in seen if "the risk rose" in str(w.message)]
    assert len(rose) == 1 and len(seen) == 1, [str(w.message) for w in seen]
    assert "1 of 2 networks" in str(rose[0].message) and "smaller dt or method='dopri5'" in str(rose[0].message)
    assert list(run.risk_rose) == [True, False] and not run.diverged.any()
    np.testing.assert_allclose(run.risk[1:, 0] / run.risk[:-1, 0], factor, rtol=1e-4)  # it really rises
    with _driver(python), warnings_as_errors():
        small = rf.gradient_flow(prob, theta, 1.0, dt=0.01, **kw)
    assert not small.risk_rose.any() and small.risk[-1, 0] < small.risk[0, 0]


@pytest.mark.parametrize("python", [False, True])
def test_risk_rose_is_false_for_gd_sgd_and_dopri5(backend, python):
    """Gradient descent has no energy identity (its risk may rise: that is max_growth's business), a
    resampled estimator moves the risk anyway, and dopri5 controls its error: all False, no warning."""
    prob, theta = _dead_net()
    with _driver(python), warnings_as_errors():
        # lr = dt = 1.2: c -> -1.4c, the risk x1.96 a step (not past max_growth in 5 steps)
        gd = rf.gradient_descent(prob, theta, lr=1.2, steps=5, estimator=rf.Quadrature(), backend=backend)
        sgd = rf.gradient_flow(prob, theta, 6.0, method="euler", dt=1.2, backend=backend,
                               estimator=rf.MonteCarlo(16, seed=1, resample=True))
        dp = rf.gradient_flow(prob, theta, 1.0, method="dopri5", estimator=rf.Quadrature(), backend=backend)
    assert gd.risk[-1, 0] > 20 * gd.risk[0, 0] and sgd.risk[-1, 0] > 20 * sgd.risk[0, 0]
    for run in (gd, sgd, dp):
        assert run.risk_rose.dtype == bool and run.risk_rose.shape == (2,) and not run.risk_rose.any()


@contextlib.contextmanager
def warnings_as_errors():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


# ---- item 4: Ctrl-C returns the partial run ---------------------------------------------------------

@pytest.mark.parametrize("python", [False, True])
def test_ctrl_c_in_gd_returns_a_run_that_resumes_bitwise(backend, python):
    """Ctrl-C during a long SGD run (C++ loop on cpu, the Python driver on numpy and on cpu) returns the
    partial Run with a warning; its records are those of the uninterrupted run, and resuming from
    run.next_step gives bitwise the uninterrupted run's final theta."""
    prob = rf.Problem([1, 16, 1], HAT, U01)
    theta = prob.init(4, seed=1)
    est = rf.MonteCarlo(64, seed=3)  # resampled: the resumed run must continue the sample stream
    kw = dict(lr=1e-3, estimator=est, backend=backend, record_every=100)
    t0 = time.perf_counter()
    with _driver(python), ctrl_c_after(0.4):
        with pytest.warns(RuntimeWarning, match=r"interrupted at step \d+; resume with start_step=run.next_step"):
            run = rf.gradient_descent(prob, theta, steps=10**8, **kw)  # hours if not stopped
        import signal
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the driver's handler is gone
    assert time.perf_counter() - t0 < 5
    m = run.next_step
    assert run.interrupted and 0 < m < 10**8 and "interrupted" in repr(run)
    np.testing.assert_array_equal(run.t, np.arange(0, m, 100))
    assert run.risk.shape == run.grad_norm.shape == run.energy.shape == (run.t.size, 4)
    assert list(run.status) == ["ok"] * 4 and run.accepted[0] == m
    with _driver(python):
        rest = rf.gradient_descent(prob, run.theta, steps=30, start_step=m, **kw)
        whole = rf.gradient_descent(prob, theta, steps=m + 30, **kw)
    assert not rest.interrupted and not whole.interrupted
    assert rest.theta.tobytes() == whole.theta.tobytes()
    assert run.risk.tobytes() == whole.risk[:run.t.size].tobytes()


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
@pytest.mark.parametrize("python", [False, True])
def test_ctrl_c_in_a_flow_returns_the_partial_run(method, backend, python):
    prob = rf.Problem([1, 8, 1], HAT, U01)
    theta = prob.init(3, seed=2)
    kw = dict(method=method, estimator=rf.Quadrature(), backend=backend, record_every=1.0)
    if method == "rk4":
        kw["dt"] = 1e-4
    else:
        kw.update(rtol=1e-12, atol=1e-14, max_steps=10**9)
    t0 = time.perf_counter()
    with _driver(python), ctrl_c_after(0.4), pytest.warns(RuntimeWarning, match="interrupted"):
        run = rf.gradient_flow(prob, theta, 1e5, **kw)
    assert time.perf_counter() - t0 < 5
    assert run.interrupted and np.all(np.isfinite(run.theta)) and np.isfinite(run.risk[0]).all()
    if method == "rk4":
        assert 0 < run.next_step < 10**9 and run.t[-1] < run.next_step * 1e-4
        assert run.t.size == run.risk.shape[0] and list(run.status) == ["ok"] * 3
    else:
        assert list(run.status) == ["interrupted"] * 3 and not run.finished().any()
        assert np.all(run.info["t_reached"] > 0) and np.all(run.info["t_reached"] < 1e5)
        with pytest.raises(ValueError, match="no network finished"):
            run.best()
