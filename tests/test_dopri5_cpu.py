"""The C++ Dormand–Prince loop (cpp/src/cpu/dopri5_cpu.cpp) against the Python driver `_dopri5`, scipy,
itself (per-network independence) and the status rules."""
import contextlib

import numpy as np
import pytest

import reluflow as rf
from conftest import python_driver

pytestmark = pytest.mark.skipif(not rf.backends()["cpu"].available, reason="C++ extension not built")

HAT = rf.targets.PiecewiseLinear([0, .5, 1], [0, 1, 0])
U01 = rf.dists.Uniform(0.0, 1.0)


def _core():
    from reluflow import _core  # noqa: PLC0415
    return _core


def _flow(prob, theta, t_end, python=False, **kw):
    """gradient_flow(dopri5) through the C++ loop, or (python=True) the Python driver around the same
    C++ kernels."""
    kw.setdefault("backend", "cpu")
    with np.errstate(over="ignore", invalid="ignore"), (python_driver() if python else contextlib.nullcontext()):
        run = rf.gradient_flow(prob, theta, t_end, method="dopri5", **kw)
    assert (run.info.get("loop") == "C++") == (not python)
    return run


def _agree(a, b, rtol=1e-9, counts=True):
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_array_equal(a.t, b.t)
    scale = np.max(np.abs(b.theta))
    np.testing.assert_allclose(a.theta, b.theta, rtol=rtol, atol=rtol * scale)
    # the risk at the end is small next to its initial value: compare it on that scale too
    np.testing.assert_allclose(a.risk, b.risk, rtol=10 * rtol, atol=rtol * np.nanmax(b.risk))
    np.testing.assert_allclose(a.grad_norm, b.grad_norm, rtol=10 * rtol, atol=rtol * np.nanmax(b.grad_norm))
    np.testing.assert_allclose(a.energy, b.energy, rtol=10 * rtol, atol=rtol * np.nanmax(b.energy))
    np.testing.assert_array_equal(np.isnan(a.risk), np.isnan(b.risk))
    if counts:
        np.testing.assert_array_equal(a.accepted, b.accepted)
        np.testing.assert_array_equal(a.rejected, b.rejected)
        assert a.info["evaluations"] == b.info["evaluations"]


CASES = {
    # shallow 1-D exact quadrature: the exact O(H log H) sweep field
    "shallow_quadrature": (lambda: rf.Problem([1, 9, 1], HAT, U01), rf.Quadrature(), 3.0),
    "shallow_quadrature_poly": (
        lambda: rf.Problem([1, 6, 2], rf.targets.PiecewisePolynomial([0, .4, 1], [[[0, 1], [1, 0], [-1, 2]],
                                                                                  [[.3, .2], [-1, 1], [0, 0]]]),
                           rf.dists.PiecewisePolynomial([0, 1], [[1.0, 1.0]])), rf.Quadrature(), 2.0),
    # deep 1-D exact quadrature (the C++ kink partition when the extension has it)
    "deep_quadrature_1d": (lambda: rf.Problem([1, 5, 4, 1], HAT, U01), rf.Quadrature(), 0.3),
    # point sources: the field jumps where a kink crosses a node, many nodes keep the jumps small
    "shallow_points": (lambda: rf.Problem([1, 7, 1], HAT, U01),
                       rf.Points(np.linspace(0.0, 1.0, 2001)[:, None]), 0.3),
    "deep_points_1d": (lambda: rf.Problem([1, 5, 4, 1], HAT, U01),
                       rf.Points(np.linspace(0.0, 1.0, 3001)[:, None]), 0.3),
    "deep_qmc_2d": (lambda: rf.Problem([2, 6, 5, 1], rf.targets.Affine([[1.0, -1.0]], [0.2]),
                                       rf.dists.Uniform(0.0, 1.0, dim=2)), rf.QuasiMonteCarlo(1024, seed=1), 0.3),
    "deep_tensor_quadrature_2d": (lambda: rf.Problem([2, 4, 3, 1], rf.targets.Affine([[0.5, 1.0]], [0.0]),
                                                     rf.dists.Uniform(0.0, 1.0, dim=2)),
                                  rf.Quadrature(order=4, cells=12), 0.3),
}

# (case, seed, normalized). The two drivers differ only by rounding (numpy's pairwise sums and SIMD
# pow in the controller), but the flow amplifies perturbations near saddles and where the point
# fields jump, and the controller can then take a different branch; these initializations keep away
# from that (measured agreement 1e-11 or better on theta), so any semantic difference shows.
COMPARE = [("shallow_quadrature", s, n) for s in (3, 4) for n in (False, True)] + [
    ("shallow_quadrature_poly", 3, True), ("shallow_quadrature_poly", 4, False), ("shallow_quadrature_poly", 4, True),
    ("deep_quadrature_1d", 4, False), ("deep_quadrature_1d", 5, True), ("deep_quadrature_1d", 6, False),
    ("shallow_points", 5, False), ("shallow_points", 6, False), ("shallow_points", 6, True),
    ("deep_points_1d", 4, False), ("deep_points_1d", 5, False), ("deep_points_1d", 5, True),
    ("deep_qmc_2d", 4, True), ("deep_tensor_quadrature_2d", 5, False), ("deep_tensor_quadrature_2d", 6, True),
]


@pytest.mark.parametrize("case,seed,normalized", COMPARE)
def test_cpp_equals_python_driver(case, seed, normalized):
    make, est, t_end = CASES[case]
    prob = make()
    theta = prob.init(4, seed=seed)
    kw = dict(estimator=est, rtol=1e-7, atol=1e-10, normalized=normalized, record_every=t_end / 7)
    a = _flow(prob, theta, t_end, **kw)
    b = _flow(prob, theta, t_end, python=True, **kw)
    assert a.theta.shape == theta.shape and a.risk.shape == (8, 4)
    assert np.all(a.status == "ok") and np.all(a.accepted > 3)
    _agree(a, b)


def test_cpp_close_to_numpy_reference_driver():
    """Against the reference driver over the numpy kernels (different rounding everywhere)."""
    prob = rf.Problem([1, 6, 1], HAT, U01)
    theta = prob.init(3, seed=7)
    kw = dict(estimator=rf.Quadrature(), rtol=1e-8, atol=1e-11, record_every=0.25)
    a = rf.gradient_flow(prob, theta, 1.0, method="dopri5", backend="cpu", **kw)
    b = rf.gradient_flow(prob, theta, 1.0, method="dopri5", backend="numpy", **kw)
    assert a.info["loop"] == "C++" and "loop" not in b.info
    _agree(a, b, rtol=1e-9)


def test_deep_1d_quadrature_any_driver_matches_reference():
    """Deep 1-D Quadrature: whichever loop runs it on the cpu backend agrees with the numpy driver."""
    prob = rf.Problem([1, 5, 3, 1], HAT, U01)
    theta = prob.init(2, seed=1)
    kw = dict(estimator=rf.Quadrature(), rtol=1e-7, atol=1e-10, record_every=0.1)
    a = rf.gradient_flow(prob, theta, 0.3, method="dopri5", backend="cpu", **kw)
    b = rf.gradient_flow(prob, theta, 0.3, method="dopri5", backend="numpy", **kw)
    _agree(a, b, rtol=1e-8, counts=False)


def test_matches_scipy_dop853():
    scipy_integrate = pytest.importorskip("scipy.integrate")
    prob = rf.Problem([1, 4, 1], HAT, U01)
    theta = prob.init(1, seed=4)
    est = rf.Quadrature()
    run = _flow(prob, theta, 1.0, estimator=est, rtol=1e-11, atol=1e-13, record_every=0.5)

    def rhs(_, y):
        return -prob.risk_and_grad(y[None], est, backend="cpu")[1][0]

    sol = scipy_integrate.solve_ivp(rhs, (0.0, 1.0), theta[0], method="DOP853", rtol=1e-11, atol=1e-13,
                                    t_eval=[0.5, 1.0])
    assert sol.success
    # the flow really moved, and both integrators agree far below that motion
    assert np.max(np.abs(sol.y[:, -1] - theta[0])) > 1e-2
    np.testing.assert_allclose(run.theta[0], sol.y[:, -1], rtol=1e-8, atol=1e-9)
    risk_mid = prob.risk(sol.y[:, 0][None], est, backend="cpu")[0]
    np.testing.assert_allclose(run.risk[1, 0], risk_mid, rtol=1e-8)
    # energy identity: L(0) - L(t) = ∫|G|^2
    np.testing.assert_allclose(run.risk[0] - run.risk[-1], run.energy[-1], rtol=1e-8)


@pytest.mark.parametrize("normalized", [False, True])
def test_per_network_independence(normalized):
    prob = rf.Problem([1, 8, 1], HAT, U01)
    theta = prob.init(5, seed=11)
    theta[2] *= 3.0  # very different step sizes in one batch
    kw = dict(estimator=rf.Quadrature(), rtol=1e-8, atol=1e-11, normalized=normalized, record_every=0.2)
    batch = _flow(prob, theta, 1.0, **kw)
    assert len(set(batch.accepted.tolist())) > 1
    for k in range(5):
        alone = _flow(prob, theta[k:k + 1], 1.0, **kw)
        np.testing.assert_allclose(alone.theta[0], batch.theta[k], rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(alone.risk[:, 0], batch.risk[:, k], rtol=1e-12)
        np.testing.assert_allclose(alone.energy[:, 0], batch.energy[:, k], rtol=1e-12)
        assert alone.accepted[0] == batch.accepted[k] and alone.rejected[0] == batch.rejected[k]


@pytest.mark.parametrize("python", [False, True])
def test_statuses(python):
    prob = rf.Problem([1, 6, 1], HAT, U01)
    theta = prob.init(4, seed=2)
    est = rf.Quadrature()
    # a huge initial step: every attempt leaves the max_abs box, the step shrinks, then gives up
    with pytest.warns(RuntimeWarning, match="diverged"):
        run = _flow(prob, theta * 30.0, 1e6, python=python, estimator=est, dt=1e6, record_every=1e6,
                    max_abs=1e3, max_rejections=3)
    assert list(run.status) == ["diverged"] * 4 and run.diverged.all()
    np.testing.assert_array_equal(run.rejected, 3)
    np.testing.assert_array_equal(run.accepted, 0)
    np.testing.assert_array_equal(run.theta, theta * 30.0)  # frozen at the last finite parameters
    assert np.all(np.isnan(run.risk[1:])) and np.all(np.isfinite(run.risk[0]))
    # a network whose parameters already exceed max_abs diverges; the others are unaffected
    big = theta.copy()
    big[1] *= 1e3
    with pytest.warns(RuntimeWarning, match="diverged"):
        run = _flow(prob, big, 0.5, python=python, estimator=est, max_abs=100.0, max_rejections=4)
    assert list(run.status) == ["ok", "diverged", "ok", "ok"]
    assert run.rejected[1] == 4 and run.accepted[1] == 0
    ok = _flow(prob, theta[[0, 2, 3]], 0.5, python=python, estimator=est, max_abs=100.0)
    np.testing.assert_allclose(run.theta[[0, 2, 3]], ok.theta, rtol=1e-13, atol=1e-14)
    # an impossible tolerance: consecutive rejections
    run = _flow(prob, theta, 1.0, python=python, estimator=est, dt=0.5, rtol=1e-15, atol=1e-18, max_rejections=2)
    assert list(run.status) == ["max_rejections"] * 4
    np.testing.assert_array_equal(run.rejected, 2)
    # the step falls below min_step after the first rejection
    run = _flow(prob, theta, 1.0, python=python, estimator=est, dt=0.02, rtol=1e-14, atol=1e-16, min_step=0.01)
    assert list(run.status) == ["min_step"] * 4
    np.testing.assert_array_equal(run.rejected + run.accepted, 1)
    # out of step attempts
    run = _flow(prob, theta, 100.0, python=python, estimator=est, rtol=1e-9, max_steps=5)
    assert list(run.status) == ["max_steps"] * 4
    np.testing.assert_array_equal(run.accepted + run.rejected, 5)
    assert not run.diverged.any() and np.all(np.isnan(run.risk[-1]))


def test_statuses_mixed_batch_match_python():
    prob = rf.Problem([1, 6, 1], HAT, U01)
    theta = prob.init(4, seed=2)
    theta[1] *= 1e3
    theta[3] *= 20.0
    kw = dict(estimator=rf.Quadrature(), max_abs=200.0, max_rejections=4, max_steps=60, rtol=1e-9)
    with pytest.warns(RuntimeWarning, match="diverged"):
        a = _flow(prob, theta, 5.0, **kw)
    with pytest.warns(RuntimeWarning, match="diverged"):
        b = _flow(prob, theta, 5.0, python=True, **kw)
    assert "diverged" in a.status and "max_steps" in a.status
    _agree(a, b)


def test_normalized_flow_stays_on_manifold():
    prob = rf.Problem([1, 6, 5, 1], HAT, U01)
    theta = prob.init(3, seed=8)
    run = _flow(prob, theta, 1.0, estimator=rf.QuasiMonteCarlo(2048, seed=0), normalized=True, rtol=1e-7)
    assert np.all(run.status == "ok")
    for W, b in prob.layout.unpack(run.theta)[:-1]:
        np.testing.assert_allclose(np.sum(W * W, axis=2) + b * b, 1.0, atol=1e-12)
    # the flow did something
    assert np.all(run.risk[-1] < run.risk[0])


def test_float32():
    prob = rf.Problem([1, 8, 1], HAT, U01)
    theta64 = prob.init(3, seed=5)
    theta32 = theta64.astype(np.float32)
    kw = dict(estimator=rf.Quadrature(), rtol=1e-5, atol=1e-7, record_every=0.25)
    a = _flow(prob, theta32, 1.0, **kw)
    b = _flow(prob, theta32, 1.0, python=True, **kw)
    c = _flow(prob, theta64, 1.0, **kw)
    assert a.theta.dtype == np.float32
    assert np.all(a.status == "ok")
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.theta, c.theta, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(a.risk, c.risk, rtol=1e-3, atol=1e-7)


def test_record_grid_and_nan_records():
    """Records land exactly on the grid (NaN records after an early stop: see test_statuses)."""
    prob = rf.Problem([1, 5, 1], HAT, U01)
    theta = prob.init(2, seed=0)
    run = _flow(prob, theta, 1.0, estimator=rf.Quadrature(), record_every=0.3)
    np.testing.assert_array_equal(run.t, [0.0, 0.3, 0.6, 0.8999999999999999, 1.0])
    assert np.all(np.isfinite(run.risk)) and np.all(np.diff(run.energy, axis=0) >= 0)
    # the first record is the initial state
    r0, g0 = prob.risk_and_grad(theta, rf.Quadrature(), backend="cpu")
    np.testing.assert_array_equal(run.risk[0], r0)
    np.testing.assert_allclose(run.grad_norm[0], np.linalg.norm(g0, axis=1), rtol=1e-14)
    np.testing.assert_array_equal(run.energy[0], 0.0)


def test_binding_rejects_bad_arguments():
    core = _core()
    prob = rf.Problem([1, 3, 1], HAT, U01)
    theta = prob.init(2, seed=0)
    x = np.linspace(0, 1, 11)[:, None]
    field = dict(source="fixed", x=x, w=np.full(11, 1 / 11), y=np.abs(x - .5))
    grid = np.array([0.0, 0.5, 1.0])
    good = dict(widths=[1, 3, 1], theta=theta, t_end=1.0, h0=-1.0, rtol=1e-6, atol=1e-9, grid=grid,
                max_abs=1e8, max_steps=100, max_rejections=10, min_step=1e-14)
    res = core.dopri5_run(**good, **field)
    assert set(res) >= {"theta", "risk", "grad_norm", "energy", "status", "accepted", "rejected", "evaluations"}
    assert res["risk"].shape == (3, 2) and res["status"].shape == (2,)
    assert core.dopri5_status_names[0] == "ok"
    for name, value in [("theta", theta[:, :-1]), ("t_end", 0.0), ("rtol", 0.0), ("atol", -1.0),
                        ("grid", np.array([0.0, np.inf])), ("grid", np.array([-0.5, 0.5])),
                        ("grid", np.array([0.5, 0.2])), ("grid", np.zeros(0)),
                        ("max_steps", 0), ("max_rejections", 0), ("min_step", -1.0), ("h0", np.nan)]:
        with pytest.raises(ValueError, match=name):
            core.dopri5_run(**{**good, name: value}, **field)
    with pytest.raises(ValueError, match="source"):
        core.dopri5_run(**good, **{**field, "source": "nope"})
    with pytest.raises(TypeError, match="theta"):
        core.dopri5_run(**{**good, "theta": theta.astype(np.int64)}, **field)


def test_dopri5_run_records_theta_on_the_grid(dtype):
    """_core.dopri5_run(record_theta=True) keeps the state at every grid time in the C++ loop (theta's
    dtype, NaN where a network never got there), as the Python driver's run.thetas; recording changes
    nothing else."""
    core = _core()
    rng = np.random.default_rng(1)
    x = rng.uniform(-1.0, 1.0, (80, 2))
    w = np.full(80, 1.0 / 80)
    y = np.cos(2.0 * x[:, :1]) - x[:, 1:]
    prob = rf.Problem([2, 5, 4, 1], rf.targets.Affine([[1.0, -1.0]], [0.2]), rf.dists.Uniform(-1.0, 1.0, dim=2))
    theta = prob.init(3, seed=4, dtype=dtype)
    theta[1] *= 1e4  # gives up early: NaN records after it stops
    t_end, rec_dt = 0.5, 0.1
    grid = np.arange(0.0, t_end, rec_dt)
    grid = np.append(grid, t_end) if grid[-1] < t_end else grid
    args = (list(prob.widths), np.ascontiguousarray(theta), t_end, -1.0, 1e-6, 1e-9, grid, 1e3, 1000, 50, 1e-14)
    field = {"source": "fixed", "x": x, "w": w, "y": y}
    res = core.dopri5_run(*args, record_theta=True, **field)
    th = res["thetas"]
    assert th.dtype == dtype and th.shape == (grid.size, 3, prob.num_params)
    assert th[0].tobytes() == theta.tobytes()
    status = np.asarray(core.dopri5_status_names)[res["status"]]
    assert status[0] == "ok" and status[1] != "ok"
    ok = status == "ok"
    assert th[-1, ok].tobytes() == res["theta"][ok].tobytes()
    assert np.all(np.isnan(th[-1, 1]))
    np.testing.assert_array_equal(np.isnan(th).all(axis=2), np.isnan(res["risk"]))
    with pytest.warns(RuntimeWarning, match="diverged"):
        ref = _flow(prob, theta, t_end, python=True, estimator=rf.Points(x, w, y), record_every=rec_dt,
                    rtol=1e-6, atol=1e-9, max_abs=1e3, record_theta=True)
    np.testing.assert_array_equal(np.asarray(ref.status), status)
    np.testing.assert_array_equal(np.isnan(ref.thetas), np.isnan(th))
    tol = 1e-5 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(th, ref.thetas, rtol=tol, atol=tol)
    plain = core.dopri5_run(*args, **field)
    assert plain["thetas"] is None
    for key in ("theta", "risk", "grad_norm", "energy", "status", "accepted", "rejected"):
        assert plain[key].tobytes() == res[key].tobytes(), key
