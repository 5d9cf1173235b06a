"""The fixed-step gradient flows (euler, heun, rk4) with the whole loop on the device, run on the host
(issue 13, part 1).

The per-network pieces of cuda/src/gd_loop.cu's Heun / RK4 step (reluflow/rk_step.h) run through their
host harnesses (``_core._harness_rk_stage`` / ``_harness_rk_update``) against numpy and against the
closed form of one step on a linear field; the watch's energy-identity check (``rise_tol``) against
the rule of ``flows._Watch``; then ``rf.gradient_flow(..., backend="cuda")`` through plan.py, flows.py
and backends/cuda.py with the device loop emulated on the host (test_cuda_harness.HarnessLoop) against
the cpu C++ loop: theta and records to 1e-12 (float64), statuses, stop steps, risk_rose, evaluation
counts, resuming bitwise. tests/test_cuda.py runs the same on a GPU where one exists.
"""
import numpy as np
import pytest

core = pytest.importorskip("reluflow._core")

import reluflow as rf  # noqa: E402
from reluflow import flows  # noqa: E402
from reluflow.backends import cuda as cuda_backend  # noqa: E402
from test_cuda_harness import (OVER, PARAMS_NAN, RISK_NAN, RUNNING, assert_runs_match,  # noqa: E402
                               fresh_state, gd_estimator, gd_problem, gd_step, rel)
from test_cuda_harness import host_cuda_loop  # noqa: E402, F401  (the fixture)

stage_h = core._harness_rk_stage
update_h = core._harness_rk_update
METHODS = ("heun", "rk4")


def masked(k, frozen):
    k = k.copy()
    if frozen is not None:
        k[:, frozen] = 0.0
    return k


def numpy_stage(theta, ks, s, h, method, frozen):
    """Stage s's point as the Python driver writes it (flows.gradient_flow): theta - h a_s k_{s-1}, in
    float64, rounded to theta's dtype."""
    A, _ = flows._TABLEAUX[method]
    return (theta.astype(np.float64) - h * A[s, s - 1] * masked(ks[s - 1], frozen)).astype(theta.dtype)


def numpy_update(theta, ks, state, i, h, method, max_abs, frozen):
    """The update of the running networks in numpy: new = theta - h sum_s b_s k_s (float64, rounded),
    en = sum_s b_s |k_s|^2; the parameter tests of flows._params_reason."""
    _, B = flows._TABLEAUX[method]
    st = {k: v.copy() for k, v in state.items()}
    th = theta.copy()
    incr = np.zeros(theta.shape)
    en = np.zeros(theta.shape[0])
    for b, k in zip(B, ks):
        k = masked(k, frozen)
        incr = incr + b * k
        en = en + b * np.sum(k * k, axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        new = (theta.astype(np.float64) - h * incr).astype(theta.dtype)
    for k in np.flatnonzero(st["active"]):
        why = PARAMS_NAN if not np.all(np.isfinite(new[k])) else OVER if np.any(np.abs(new[k]) > max_abs) else RUNNING
        if why == RUNNING:
            th[k] = new[k]
            st["energy"][k] += h * en[k]
        else:
            st["active"][k], st["reason"][k], st["stop_iter"][k] = 0, why, i + 1
    return th, st


def rk_case(dtype, method, K=6, P=300):
    rng = np.random.default_rng(11)
    theta = rng.normal(size=(K, P)).astype(dtype)
    ks = [rng.normal(size=(K, P)) for _ in flows._TABLEAUX[method][1]]
    ks[-1][1, 7] = np.nan          # a stage value not finite: the new parameters are not
    ks[0][2, 299] = -1e9           # a new parameter beyond max_abs
    state = fresh_state(K)
    state["active"][3] = 0         # frozen earlier: left alone
    state["energy"][:] = rng.uniform(size=K)
    return theta, ks, state


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_rk_stage_harness_equals_numpy_bitwise(method, dtype):
    theta, ks, _ = rk_case(dtype, method)
    frozen = np.zeros(theta.shape[1], bool)
    frozen[[0, 128, 257]] = True
    for fz in (None, frozen):
        for s in range(1, len(ks)):
            got = stage_h(theta, ks[:s], stage=s, h=0.3, method=method, frozen=fz)
            want = numpy_stage(theta, ks, s, 0.3, method, fz)
            assert got.dtype == dtype and got.tobytes() == want.tobytes(), (s, fz is None)
            if fz is not None:
                np.testing.assert_array_equal(got[:, frozen], theta[:, frozen])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_rk_update_harness_equals_numpy(method, dtype):
    theta, ks, state = rk_case(dtype, method)
    frozen = np.zeros(theta.shape[1], bool)
    frozen[[1, 130]] = True
    for fz in (None, frozen):
        got = update_h(theta, ks, state=state, i=4, h=0.05, method=method, max_abs=1e6, frozen=fz)
        th, st = numpy_update(theta, ks, state, 4, 0.05, method, 1e6, fz)
        assert got["theta"].dtype == dtype and got["theta"].tobytes() == th.tobytes()
        for key in ("active", "reason", "stop_iter", "risk0", "last_risk", "growth"):
            np.testing.assert_array_equal(got[key], st[key], err_msg=key)
        # en: a block tree instead of numpy's sums: equal to rounding
        np.testing.assert_allclose(got["energy"], st["energy"], rtol=1e-14)
        assert list(got["reason"]) == [RUNNING, PARAMS_NAN, OVER, RUNNING, RUNNING, RUNNING]
        assert list(got["stop_iter"]) == [-1, 5, 5, -1, -1, -1]
        assert got["theta"][3].tobytes() == theta[3].tobytes()   # the earlier frozen network


@pytest.mark.parametrize("method", METHODS)
def test_rk_step_on_a_linear_field_is_the_taylor_polynomial(method):
    """On G(theta) = M theta the method's step is a polynomial in h M: Heun I - hM + (hM)^2/2, RK4 the
    Taylor polynomial of exp(-hM) to degree 4 (an independent check of the stage coefficients)."""
    rng = np.random.default_rng(4)
    P, K, h = 12, 3, 0.1
    Q = rng.normal(size=(P, P))
    M = Q @ Q.T / P
    theta = rng.normal(size=(K, P))
    ks = [theta @ M.T]
    for s in range(1, 2 if method == "heun" else 4):
        ks.append(stage_h(theta, ks, stage=s, h=h, method=method) @ M.T)
    got = update_h(theta, ks, state=fresh_state(K), i=0, h=h, method=method, max_abs=1e8)["theta"]
    hM = h * M
    terms = [np.eye(P), -hM, hM @ hM / 2, -hM @ hM @ hM / 6, hM @ hM @ hM @ hM / 24]
    step = sum(terms[:3 if method == "heun" else 5])
    np.testing.assert_allclose(got, theta @ step.T, rtol=1e-13, atol=1e-14)


def test_harness_watch_flags_a_rise_like_the_python_watch():
    """rise_tol >= 0: a risk above the last one x (1 + rise_tol) sets 'rose' (not at the first
    iteration, not for a non-finite risk), as flows._Watch; a GD run (rise_tol < 0) never sets it."""
    theta, grad = np.zeros((4, 5)), np.ones((4, 5))
    state = fresh_state(4)
    state["rose"] = np.zeros(4, np.uint8)
    tol = 1e-12
    kw = dict(update=False, h=0.1, max_abs=1e8, max_growth=1e6, rise_tol=tol)
    out = gd_step(theta, np.array([1.0, 1.0, 1.0, 1.0]), grad, state=state, i=0, **kw)
    state = {k: out[k] for k in state}
    assert not out["rose"].any()
    risk = np.array([1.0 + 0.5 * tol, 1.0 + 4 * tol, 2.0, np.nan])
    out = gd_step(theta, risk, grad, state=state, i=1, **kw)
    watch = flows._Watch(4, 1e6, tol)
    watch.evaluated(np.arange(4), True, np.ones(4), grad)
    watch.evaluated(np.arange(3), False, risk[:3], grad[:3])
    np.testing.assert_array_equal(out["rose"].astype(bool)[:3], watch.rose[:3])
    assert list(out["rose"]) == [0, 1, 1, 0] and out["reason"][3] == RISK_NAN
    plain = gd_step(theta, risk, grad, state=state, i=1, **{**kw, "rise_tol": -1.0})
    assert not plain["rose"].any()
    with pytest.raises(ValueError, match="rose"):
        gd_step(theta, risk, grad, state=fresh_state(4), i=1, **kw)


def test_rk_harness_checks_arguments():
    theta, ks, state = rk_case(np.float64, "rk4")
    with pytest.raises(ValueError, match="method"):
        stage_h(theta, ks, stage=1, h=0.1, method="dopri5")
    with pytest.raises(ValueError, match="stage"):
        stage_h(theta, ks, stage=2, h=0.1, method="heun")
    with pytest.raises(ValueError, match="ks"):
        stage_h(theta, ks[:1], stage=3, h=0.1, method="rk4")
    with pytest.raises(ValueError, match="ks"):
        update_h(theta, ks[:3], state=state, i=0, h=0.1, method="rk4", max_abs=1e8)
    with pytest.raises(ValueError, match="ks"):
        update_h(theta, [k[:, 1:] for k in ks], state=state, i=0, h=0.1, method="rk4", max_abs=1e8)
    with pytest.raises(ValueError, match="frozen"):
        update_h(theta, ks, state=state, i=0, h=0.1, method="rk4", max_abs=1e8, frozen=np.zeros(3, bool))
    with pytest.raises(ValueError, match="energy"):
        update_h(theta, ks, state={k: v for k, v in state.items() if k != "energy"}, i=0, h=0.1, method="rk4",
                 max_abs=1e8)


# ---- rf.gradient_flow on the emulated device loop against the cpu C++ loop ------------------------------

FLOW_CASES = [([1, 16, 1], "points"), ([2, 8, 8, 1], "points"), ([1, 16, 1], "sgd")]


def flow_pair(prob, theta, est, **kw):
    """The same flow on the (emulated) device and on the cpu C++ loop."""
    a = rf.gradient_flow(prob, theta, estimator=est, backend="cuda", **kw)
    b = rf.gradient_flow(prob, theta, estimator=est, backend="cpu", **kw)
    return a, b


@pytest.mark.parametrize("method", ["euler", "heun", "rk4"])
@pytest.mark.parametrize("widths,kind", FLOW_CASES, ids=[f"{w}-{k}" for w, k in FLOW_CASES])
def test_device_flow_emulated_equals_cpu_loop(host_cuda_loop, widths, kind, method):
    """gradient_flow(method in euler/heun/rk4) on the cuda backend takes the device loop and gives the
    cpu C++ loop's run: theta and records to 1e-12, the same times, statuses, risk_rose and evaluation
    count (stages included); the resampled field draws the samples of step n for every stage of n."""
    prob = gd_problem(widths)
    est = gd_estimator(kind, widths[0])
    plan = prob.plan(est, "cuda")
    assert plan.loop == "CUDA" and "flows euler, heun, rk4" in plan.explain()
    theta = prob.init(3, seed=2)
    before = host_cuda_loop.loops
    a, b = flow_pair(prob, theta, est, t_end=0.46, method=method, dt=0.02, record_every=0.1)
    assert host_cuda_loop.loops == before + 1 and a.info["loop"] == "CUDA" and a.info["blocks"] > 1
    assert b.info["loop"] == "C++"
    assert_runs_match(a, b)
    stages = {"euler": 1, "heun": 2, "rk4": 4}[method]
    assert a.info["evaluations"] == stages * 23 + 1 and a.info["dt"] == b.info["dt"]
    np.testing.assert_array_equal(a.risk_rose, b.risk_rose)
    assert not a.diverged.any() and a.risk[-1].max() < a.risk[0].max()


@pytest.mark.parametrize("method", ["heun", "rk4"])
def test_device_flow_emulated_float32_band(host_cuda_loop, method):
    """float32 theta: the emulated device loop and the cpu loop, both in float32 with different
    summation orders in the dense kernels, stay within 1e-5 relative after 100 steps (the band
    tests/test_cuda.py states for the GPU)."""
    prob = gd_problem([2, 8, 8, 1])
    est = gd_estimator("points", 2)
    theta = prob.init(3, seed=2).astype(np.float32)
    a, b = flow_pair(prob, theta, est, t_end=1.0, method=method, dt=0.01, record_every=0.25)
    assert a.theta.dtype == b.theta.dtype == np.float32
    assert rel(a.theta, b.theta) <= 1e-5 and rel(a.risk, b.risk) <= 1e-5 and rel(a.energy, b.energy) <= 1e-5
    np.testing.assert_array_equal(a.risk_rose, b.risk_rose)


@pytest.mark.parametrize("method", ["euler", "heun", "rk4"])
def test_device_flow_emulated_divergence_frozen_and_records(host_cuda_loop, method):
    """Networks blown up by a large step are frozen for the same reasons at the same steps as on the
    cpu loop; frozen parameters keep their values; theta records; every network frozen ends the loop
    early (the cpu loop's evaluation count, records filled); a rising risk is flagged alike."""
    prob = gd_problem([1, 16, 1])
    est = gd_estimator("points", 1)
    theta = prob.init(4, seed=5)
    theta[1] *= 40.0
    theta[2, 0] = 1e7
    mask = prob.mask(layers=[2], biases=False)   # the output weights
    kw = dict(t_end=18 * 0.9, method=method, dt=0.9, record_every=2.7, record_theta=True, max_abs=2e7,
              max_growth=100.0, frozen=mask)
    with pytest.warns(RuntimeWarning, match="diverged"):
        a, b = flow_pair(prob, theta, est, **kw)
    assert_runs_match(a, b)
    assert a.diverged.any() and rel(a.thetas, b.thetas) <= 1e-12
    np.testing.assert_array_equal(a.risk_rose, b.risk_rose)
    stop = a.info["stop_step"]
    assert all((stop[k] >= 0) == a.diverged[k] for k in range(4))
    np.testing.assert_array_equal(a.theta[:, mask], theta[:, mask])
    with pytest.warns(RuntimeWarning, match="diverged"):
        c, d = flow_pair(prob, theta * 1e3, est, t_end=40 * 5.0, method=method, dt=5.0, record_every=20.0,
                         max_growth=10.0)
    assert c.diverged.all() and c.info["evaluations"] < {"euler": 1, "heun": 2, "rk4": 4}[method] * 40 + 1
    assert_runs_match(c, d)


def test_device_flow_emulated_flags_a_rising_risk(host_cuda_loop):
    """A step too large for Euler lets the risk rise without diverging: Run.risk_rose and its warning
    as on the cpu loop."""
    prob = gd_problem([1, 16, 1])
    est = gd_estimator("points", 1)
    theta = prob.init(4, seed=3)
    kw = dict(t_end=30 * 0.05, method="euler", dt=0.05, record_every=0.15)
    with pytest.warns(RuntimeWarning, match="rose"):
        a, b = flow_pair(prob, theta, est, **kw)
    assert a.risk_rose.any() and not a.risk_rose.all() and not a.diverged.any()
    np.testing.assert_array_equal(a.risk_rose, b.risk_rose)
    assert_runs_match(a, b)


@pytest.mark.parametrize("method", ["heun", "rk4"])
def test_device_flow_emulated_resume_and_stop_are_bitwise(host_cuda_loop, monkeypatch, method):
    """Continuing from run.theta with the same dt (t_end reduced) gives the run in one piece bitwise;
    a stop at a block boundary (Ctrl-C) returns a partial run that continues bitwise too."""
    prob = gd_problem([2, 8, 8, 1])
    est = gd_estimator("points", 2)
    theta = prob.init(3, seed=7)
    dt = 1 / 32   # a power of two: t_end = n dt exactly, so every piece takes the same dt
    whole = rf.gradient_flow(prob, theta, 40 * dt, method=method, dt=dt, estimator=est, backend="cuda")
    first = rf.gradient_flow(prob, theta, 13 * dt, method=method, dt=dt, estimator=est, backend="cuda")
    rest = rf.gradient_flow(prob, first.theta, 27 * dt, method=method, dt=dt, estimator=est, backend="cuda")
    assert rest.theta.tobytes() == whole.theta.tobytes()
    with monkeypatch.context() as m:
        m.setattr(flows, "_progress_hook", lambda bar: (lambda done: done >= 10))
        with pytest.warns(RuntimeWarning, match="interrupted"):
            part = rf.gradient_flow(prob, theta, 40 * dt, method=method, dt=dt, estimator=est, backend="cuda")
    done = part.next_step
    assert part.interrupted and 10 <= done < 40 and part.risk.shape[0] == done
    assert part.info["evaluations"] == {"heun": 2, "rk4": 4}[method] * done
    end = rf.gradient_flow(prob, part.theta, (40 - done) * dt, method=method, dt=dt, estimator=est, backend="cuda")
    assert end.theta.tobytes() == whole.theta.tobytes()


def test_device_flow_only_where_it_applies(host_cuda_loop):
    """Rosenbrock on the cuda backend keeps the Python driver (the device loop is not called); gd_run
    refuses other methods (dopri5 has its own device loop: tests/test_cuda_dopri5_harness.py; normalized
    runs take the device loop: tests/test_cuda_normalized_harness.py)."""
    prob = gd_problem([1, 6, 1])
    est = rf.MonteCarlo(64, seed=1, resample=False)
    theta = prob.init(2, seed=1)
    before = host_cuda_loop.loops
    n = rf.gradient_flow(prob, theta, 0.1, method="rosenbrock", estimator=est, backend="cuda")
    assert host_cuda_loop.loops == before
    assert n.info.get("loop") != "CUDA"
    assert cuda_backend.LOOP_METHODS == ("gd", "euler", "heun", "rk4")
    with pytest.raises(ValueError, match="method"):
        cuda_backend.gd_run(prob.plan(est, "cuda"), prob.spec, theta, 3, 0, 1, {"h": np.ones(1)}, 1e8, 1e6, None,
                            method="dopri5")
