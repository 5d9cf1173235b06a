"""The C++ integrator loops (cpu backend) against Python loops over the same kernels and the reference."""
import numpy as np
import pytest

import reluflow as rf
from conftest import python_driver

pytestmark = pytest.mark.skipif(not rf.backends()["cpu"].available, reason="C++ extension not built")

HAT = rf.targets.PiecewiseLinear([0, .5, 1], [0, 1, 0])


@pytest.mark.parametrize("target", [HAT, rf.targets.Affine([[1.5]], [-0.2]),
                                    rf.targets.PiecewisePolynomial([0, .3, 1], [[0, 1, 2], [.5, -1, 0]])])
@pytest.mark.parametrize("resample", [True, False])
def test_cpp_gd_equals_python_loop_bitwise(target, resample, dtype):
    prob = rf.Problem([1, 7, 1], target, rf.dists.Uniform(0.0, 1.0))
    theta = prob.init(5, seed=3, dtype=dtype)
    est = rf.MonteCarlo(100, seed=9, resample=resample)
    lr = lambda n: 0.02 * (n + 1) ** -0.1  # noqa: E731
    run = rf.gradient_descent(prob, theta, lr=lr, steps=30, estimator=est, record_every=10, backend="cpu")
    assert run.info["loop"] == "C++"
    th = theta.copy()
    for n in range(30):
        r, g = prob.risk_and_grad(th, est, backend="cpu", step=n)
        if n == 20:
            np.testing.assert_array_equal(run.risk[2], r.astype(np.float64))
        th = th - lr(n) * g
    assert run.theta.dtype == dtype
    assert run.theta.tobytes() == th.tobytes()


def test_cpp_gd_close_to_reference_driver():
    prob = rf.Problem([2, 9, 5, 2], rf.targets.Affine([[1.0, -1.0], [0.5, 2.0]]), rf.dists.Uniform(-1, 1, dim=2))
    theta = prob.init(4, seed=1)
    est = rf.QuasiMonteCarlo(256, seed=2)
    a = rf.gradient_descent(prob, theta, lr=0.01, steps=40, estimator=est, record_every=8, backend="cpu")
    b = rf.gradient_descent(prob, theta, lr=0.01, steps=40, estimator=est, record_every=8, backend="numpy")
    assert a.info["loop"] == "C++" and "loop" not in b.info
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.risk, b.risk, rtol=1e-10)
    np.testing.assert_allclose(a.energy, b.energy, rtol=1e-10)
    np.testing.assert_array_equal(a.t, b.t)


@pytest.mark.parametrize("method", ["euler", "heun", "rk4"])
@pytest.mark.parametrize("normalized", [False, True])
def test_cpp_flow_close_to_reference_driver(method, normalized):
    prob = rf.Problem([1, 6, 4, 1], HAT, rf.dists.Uniform(0.0, 1.0))
    theta = prob.init(3, seed=5)
    est = rf.MonteCarlo(200, seed=1, resample=False)
    a = rf.gradient_flow(prob, theta, 0.5, method=method, dt=0.01, estimator=est, normalized=normalized, backend="cpu")
    b = rf.gradient_flow(prob, theta, 0.5, method=method, dt=0.01, estimator=est, normalized=normalized, backend="numpy")
    assert a.info["loop"] == "C++"
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(a.risk, b.risk, rtol=1e-9)
    np.testing.assert_allclose(a.t, b.t)
    if normalized:
        for W, bb in prob.layout.unpack(a.theta)[:-1]:
            np.testing.assert_allclose(np.sum(W * W, axis=2) + bb * bb, 1.0, atol=1e-12)


def test_cpp_split_run_bitwise_and_divergence():
    prob = rf.Problem([1, 8, 1], HAT, rf.dists.Uniform(0.0, 1.0))
    theta = prob.init(4, seed=2)
    sgd = rf.MonteCarlo(64, seed=4)
    whole = rf.gradient_descent(prob, theta, lr=0.01, steps=50, estimator=sgd, backend="cpu")
    a = rf.gradient_descent(prob, theta, lr=0.01, steps=20, estimator=sgd, backend="cpu")
    b = rf.gradient_descent(prob, a.theta, lr=0.01, steps=30, estimator=sgd, backend="cpu", start_step=a.next_step)
    assert whole.theta.tobytes() == b.theta.tobytes()
    big = theta.copy()
    big[[0, 2]] *= 1e3
    with pytest.warns(RuntimeWarning, match="diverged"):
        run = rf.gradient_descent(prob, big, lr=0.01, steps=10, estimator=sgd, backend="cpu", max_abs=1e6)
    np.testing.assert_array_equal(run.diverged, [True, False, True, False])
    assert np.all(np.isfinite(run.theta))
    ok = rf.gradient_descent(prob, theta, lr=0.01, steps=10, estimator=sgd, backend="cpu")
    np.testing.assert_array_equal(run.theta[[1, 3]], ok.theta[[1, 3]])


def test_cpu_dispatch_matches_numpy_for_every_estimator(dtype):
    prob = rf.Problem([1, 40, 1], HAT, rf.dists.PiecewisePolynomial([0, 1], [[0.5, 1.0]]))
    theta = prob.init(3, seed=6, dtype=dtype)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for est in [rf.MonteCarlo(500, seed=1), rf.QuasiMonteCarlo(256, seed=3), rf.Quadrature(),
                rf.Points(np.linspace(0, 1, 33))]:
        rn, gn = prob.risk_and_grad(theta, est, backend="numpy")
        for method in (["auto", "dense", "sweep"] if not isinstance(est, rf.Quadrature) else ["auto"]):
            rc, gc = prob.risk_and_grad(theta, est, backend="cpu", method=method)
            assert rc.dtype == dtype
            np.testing.assert_allclose(rc, rn, rtol=tol)
            assert np.linalg.norm(gc - gn) <= tol * np.linalg.norm(gn)
    with pytest.raises(ValueError, match="method"):
        prob.risk(theta, rf.MonteCarlo(10), method="fast")
    deep = rf.Problem([1, 4, 4, 1], HAT)
    with pytest.raises(ValueError, match="method"):
        deep.risk(deep.init(1), rf.MonteCarlo(10), backend="cpu", method="sweep")


@pytest.mark.parametrize("target,dim", [
    (rf.targets.Affine([[1.0, -2.0, 0.5], [0.3, 0.0, 1.0]], [0.1, -0.4]), 3),
    (HAT, 1),
    (rf.targets.PiecewisePolynomial([0, .3, 1], [[0, 1, 2], [.5, -1, 0]]), 1),
])
def test_native_targets_in_cpp_equal_numpy(target, dim):
    out = target.out_dim
    prob = rf.Problem([dim, 3, out], target, rf.dists.Uniform(-0.5, 1.5, dim=dim))
    nodes = rf.MonteCarlo(1000, seed=2).nodes(prob)
    np.testing.assert_allclose(prob.target_values(nodes, "cpu"), target(nodes.x), rtol=1e-15, atol=1e-15)


def test_teacher_target_on_cpu():
    teacher = rf.targets.Teacher([1, 5, 1], rf.Problem([1, 5, 1], HAT).init(1, seed=3)[0])
    prob = rf.Problem([1, 4, 1], teacher)
    theta = prob.init(2, seed=1)
    est = rf.MonteCarlo(300, seed=0)
    rc, gc = prob.risk_and_grad(theta, est, backend="cpu", method="dense")
    rn, gn = prob.risk_and_grad(theta, est, backend="numpy")
    np.testing.assert_allclose(rc, rn, rtol=1e-12)
    np.testing.assert_allclose(gc, gn, rtol=1e-11, atol=1e-12)
    from reluflow import _core

    with pytest.raises(ValueError, match="x"):
        _core.target_values([2, 3, 1], np.zeros((4, 3)),
                            spec={"target_kind": "affine", "target_A": np.ones((1, 2)), "target_b": np.zeros(1)})


def test_spec_errors_name_the_key():
    """The one problem parser (bind_spec.h) names the argument and the key of the spec dict."""
    from reluflow import _core

    with pytest.raises(ValueError, match="^spec: missing key 'target_kind'$"):
        _core.target_values([2, 3, 1], np.zeros((4, 2)), spec={})
    with pytest.raises(ValueError, match="^spec: target_b:"):
        _core.target_values([2, 3, 1], np.zeros((4, 2)),
                            spec={"target_kind": "affine", "target_A": np.ones((1, 2)), "target_b": np.zeros(2)})
    with pytest.raises(ValueError, match="^spec: teacher_widths: expected a list of integers"):
        spec = {**rf.Problem([1, 2, 1], HAT).spec.native(), "target_kind": "teacher", "teacher_widths": "wide"}
        _core.quad1d_risk_and_grad([1, 2, 1], np.zeros((1, 7)), np.zeros(0), 2, spec=spec)


# ---- vector fields run by the C++ loop: point sweep, Python target callback, exact shallow sweep ----

@pytest.mark.parametrize("H", [3, 40, 400])
def test_cpp_sgd_point_sweep_equals_python_loop_bitwise(H, dtype):
    """SGD on a shallow 1-D net: the C++ loop takes the point sweep when the cost model prefers it,
    and equals a Python loop over ``risk_and_grad`` with the same method; the sweep equals the dense
    kernel to rounding along the run."""
    prob = rf.Problem([1, H, 1], HAT, rf.dists.Uniform(0.0, 1.0))
    theta = prob.init(6, seed=H, dtype=dtype)
    est = rf.MonteCarlo(300, seed=5, resample=True)
    method = "sweep" if prob.plan(est, "cpu").route == "point_sweep" else "dense"
    run = rf.gradient_descent(prob, theta, lr=0.05, steps=25, estimator=est, record_every=5, backend="cpu")
    assert run.info["loop"] == "C++"
    th = theta.copy()
    th_dense = theta.astype(np.float64)
    for n in range(25):
        _, g = prob.risk_and_grad(th, est, backend="cpu", step=n, method=method)
        th = th - 0.05 * g
        _, gd = prob.risk_and_grad(th_dense, est, backend="cpu", step=n, method="dense")
        th_dense = th_dense - 0.05 * gd
    assert run.theta.tobytes() == th.tobytes()
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(run.theta, th_dense, rtol=tol, atol=tol)


def test_point_sweep_forced_in_cpp_loop_close_to_dense():
    prob = rf.Problem([1, 50, 2], rf.targets.Affine([[1.0], [-2.0]], [0.5, 0.0]), rf.dists.Uniform(-1.0, 2.0))
    theta = prob.init(4, seed=1)
    est = rf.QuasiMonteCarlo(512, seed=3)
    a = rf.gradient_descent(prob, theta, lr=0.02, steps=40, estimator=est, backend="cpu")
    b = rf.gradient_descent(prob, theta, lr=0.02, steps=40, estimator=est, backend="numpy")
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.risk, b.risk, rtol=1e-10)


@pytest.mark.parametrize("kind", ["function", "teacher"])
def test_cpp_sgd_python_target_callback_bitwise(kind):
    """A Function (or Teacher) target with resampling: the C++ loop calls back once per step on that
    step's nodes and equals the Python driver bitwise."""
    calls = []

    def f(x):
        calls.append(x.shape)
        return np.sin(3 * x[:, 0])

    target = rf.targets.Function(f) if kind == "function" else rf.targets.Teacher([1, 3, 1], np.linspace(-1, 1, 10))
    prob = rf.Problem([1, 5, 1], target, rf.dists.Uniform(0.0, 1.0))
    theta = prob.init(3, seed=2)
    est = rf.MonteCarlo(128, seed=7, resample=True)
    calls.clear()   # Problem probes the function's output dimension once
    run = rf.gradient_descent(prob, theta, lr=0.05, steps=12, estimator=est, backend="cpu")
    assert run.info["loop"] == "C++"
    if kind == "function":
        assert calls == [(128, 1)] * 13   # one call per step (and the final evaluation)
    with python_driver():
        ref = rf.gradient_descent(prob, theta, lr=0.05, steps=12, estimator=est, backend="cpu")
    assert "loop" not in ref.info
    assert run.theta.tobytes() == ref.theta.tobytes()
    np.testing.assert_array_equal(run.risk, ref.risk)


def test_cpp_callback_error_propagates():
    def bad(x):
        if x.shape[0] > 2:   # Problem probes the output dimension with 2 points
            raise RuntimeError("boom in target")
        return x[:, 0]

    prob = rf.Problem([1, 4, 1], rf.targets.Function(bad), rf.dists.Uniform(0.0, 1.0))
    with pytest.raises(RuntimeError, match="boom in target"):
        rf.gradient_descent(prob, prob.init(2), lr=0.1, steps=3, estimator=rf.MonteCarlo(16, resample=True),
                            backend="cpu")
    wrong = rf.Problem([1, 4, 1], rf.targets.Function(lambda x: np.ones(2) if x.shape[0] == 2 else np.ones(3)), rf.dists.Uniform(0.0, 1.0))
    with pytest.raises(ValueError, match="target"):
        rf.gradient_descent(wrong, wrong.init(2), lr=0.1, steps=3, estimator=rf.MonteCarlo(16, resample=True),
                            backend="cpu")


@pytest.mark.parametrize("method", ["gd", "rk4"])
def test_cpp_exact_shallow_quadrature_loop(method, dtype):
    """GD / RK4 with the exact 1-D quadrature of a shallow net run in C++ (the O(H log H) sweep per
    evaluation) and equal the Python driver over the same sweep bitwise (float64) / closely."""
    prob = rf.Problem([1, 12, 1], HAT, rf.dists.Uniform(0.0, 1.0))
    theta = prob.init(5, seed=8, dtype=dtype)
    quad = rf.Quadrature()
    if method == "gd":
        a = rf.gradient_descent(prob, theta, lr=0.05, steps=30, estimator=quad, backend="cpu", record_every=10)
        with python_driver():
            b = rf.gradient_descent(prob, theta, lr=0.05, steps=30, estimator=quad, backend="cpu", record_every=10)
    else:
        a = rf.gradient_flow(prob, theta, 1.0, method="rk4", dt=0.05, estimator=quad, backend="cpu")
        with python_driver():
            b = rf.gradient_flow(prob, theta, 1.0, method="rk4", dt=0.05, estimator=quad, backend="cpu")
    assert a.info["loop"] == "C++" and "loop" not in b.info
    if method == "gd":
        assert a.theta.tobytes() == b.theta.tobytes()
    else:
        # float32: the Python driver rounds every stage's G to float32, the C++ loop keeps float64 stages
        tol = 1e-12 if dtype == np.float64 else 1e-6
        np.testing.assert_allclose(a.theta, b.theta, rtol=tol, atol=tol)
    np.testing.assert_allclose(a.risk, b.risk, rtol=1e-12 if dtype == np.float64 else 1e-5)
    assert a.risk[-1].max() < a.risk[0].max()


@pytest.mark.parametrize("target", [HAT, rf.targets.Teacher([1, 3, 1], np.linspace(-1, 1, 10))])
def test_cpp_deep_quadrature_loop(target, dtype):
    """GD and RK4 with the exact 1-D quadrature of a deep net run in C++ (kink partition per network
    and evaluation); GD equals the Python driver over the same C++ partition path bitwise, and the
    numpy reference to rounding; RK4 decreases the risk."""
    prob = rf.Problem([1, 6, 5, 1], target, rf.dists.Uniform(0.0, 1.0))
    theta = prob.init(4, seed=11, dtype=dtype)
    quad = rf.Quadrature()
    a = rf.gradient_descent(prob, theta, lr=0.05, steps=20, estimator=quad, backend="cpu", record_every=5)
    with python_driver():
        b = rf.gradient_descent(prob, theta, lr=0.05, steps=20, estimator=quad, backend="cpu", record_every=5)
    assert a.info["loop"] == "C++" and "loop" not in b.info
    assert a.theta.tobytes() == b.theta.tobytes()
    if dtype == np.float64:
        c = rf.gradient_descent(prob, theta, lr=0.05, steps=20, estimator=quad, backend="numpy", record_every=5)
        np.testing.assert_allclose(a.theta, c.theta, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(a.risk, c.risk, rtol=1e-10)
    f = rf.gradient_flow(prob, theta, 0.5, method="rk4", dt=0.05, estimator=quad, backend="cpu")
    assert f.info["loop"] == "C++"
    assert np.all(f.risk[-1] < f.risk[0])


def test_cpp_loop_progress_bar_and_ctrl_c(capsys):
    """The C++ loop reports to the progress bar (the last report is 100%) and stops on Ctrl-C, returning
    the partial run (no longer a bare KeyboardInterrupt: issue 15 item 4)."""
    import signal
    import time

    prob = rf.Problem([1, 16, 1], HAT, rf.dists.Uniform(0.0, 1.0))
    theta = prob.init(8, seed=1)
    run = rf.gradient_descent(prob, theta, lr=0.01, steps=200, estimator=rf.QuasiMonteCarlo(256), backend="cpu",
                              progress=True)
    assert run.info["loop"] == "C++"
    assert "100.0%" in capsys.readouterr().err
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    signal.signal(signal.SIGALRM, lambda *a: signal.raise_signal(signal.SIGINT))
    try:
        t0 = time.perf_counter()
        with pytest.warns(RuntimeWarning, match="interrupted at step"):   # ~10 s of steps if not stopped
            run = rf.gradient_descent(prob, theta, lr=1e-4, steps=10**6, estimator=rf.QuasiMonteCarlo(256),
                                      backend="cpu", record_every=10**6)
        assert time.perf_counter() - t0 < 5
        assert run.interrupted and 0 < run.next_step < 10**6
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, old)


def test_flow_run_binding_rejects_bad_field_arguments():
    """The vector-field keyword arguments of the C++ loops are checked, naming the argument."""
    from reluflow import _core

    h = np.full(3, 0.1)
    x, w, y = np.zeros((4, 1)), np.full(4, 0.25), np.zeros((4, 1))
    def run(widths=(1, 3, 1), **kw):
        th = np.zeros((2, rf.layout.Layout(widths).num_params))
        return _core.flow_run(list(widths), th, "gd", 3, 0, 1, h, 1e8, **kw)

    with pytest.raises(ValueError, match="source"):
        run(source="bogus")
    with pytest.raises(ValueError, match="x"):
        run(source="fixed", x=np.zeros((4, 2)), w=w, y=y)
    with pytest.raises(ValueError, match="w"):
        run(source="fixed", x=x, w=np.ones(3), y=y)
    with pytest.raises(ValueError, match="sweep"):
        run(widths=(1, 3, 2, 1), source="fixed", x=x, w=w, y=y, sweep=True)
    with pytest.raises(ValueError, match="n"):
        run(source="resample", n=0)
    with pytest.raises(ValueError, match="order"):
        run(source="quad1d", fixed_breaks=np.zeros(0), order=0,
            spec={"lo": 0.0, "hi": 1.0, "density_kind": "uniform", "low": np.zeros(1), "high": np.ones(1)})


def _points_problem(dtype, K=4):
    """A [2, 6, 3, 1] problem on explicit data points (the dense kernel either way, no point sweep),
    its Points estimator and the field arguments of the C++ loops for the same nodes."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, (60, 2))
    w = np.full(60, 1.0 / 60)
    y = np.sin(3.0 * x[:, :1]) + x[:, 1:] ** 2
    prob = rf.Problem([2, 6, 3, 1], rf.targets.Affine([[1.0, -0.5]], [0.1]), rf.dists.Uniform(-1.0, 1.0, dim=2))
    theta = prob.init(K, seed=5, dtype=dtype)
    return prob, theta, rf.Points(x, w, y), {"source": "fixed", "x": x, "w": w, "y": y}


def test_flow_run_records_theta_like_the_python_driver_bitwise(dtype):
    """_core.flow_run(record_theta=True) keeps theta at every record in the C++ loop: bitwise the Python
    driver's run.thetas, a diverged network frozen at its last
    finite parameters; recording changes nothing else."""
    from reluflow import _core

    prob, theta, est, field = _points_problem(dtype)
    theta[2] *= 1e3  # diverges at the first step: frozen, recorded as it was
    steps, every, lr = 23, 5, 0.05
    with pytest.warns(RuntimeWarning, match="diverged"), python_driver():
        ref = rf.gradient_descent(prob, theta, lr=lr, steps=steps, estimator=est, record_every=every,
                                  backend="cpu", record_theta=True)
    assert "loop" not in ref.info  # the Python driver
    args = (list(prob.widths), np.ascontiguousarray(theta), "gd", steps, 0, every, np.full(steps, lr), 1e8)
    res = _core.flow_run(*args, record_theta=True, **field)
    assert res["thetas"].dtype == dtype and res["thetas"].shape == (6, 4, prob.num_params)
    assert res["thetas"].shape == ref.thetas.shape
    assert res["thetas"].tobytes() == ref.thetas.tobytes()
    assert res["theta"].tobytes() == ref.theta.tobytes()
    np.testing.assert_array_equal(res["active"].astype(bool), ~ref.diverged)
    assert res["thetas"][0].tobytes() == theta.tobytes()
    assert res["thetas"][-1].tobytes() == res["theta"].tobytes()
    plain = _core.flow_run(*args, **field)
    assert plain["thetas"] is None
    for key in ("theta", "risk", "grad_norm", "energy", "active"):
        assert plain[key].tobytes() == res[key].tobytes(), key


def test_configured_field_is_the_keyword_field_bitwise(dtype):
    """_core.Field parses the field once; flow_run and dopri5_run given field= compute bitwise what they
    compute from the same keyword arguments, and refuse a Field of other widths or field= beside them."""
    from reluflow import _core

    prob, theta, est, field = _points_problem(dtype, K=3)
    configured = _core.Field(list(prob.widths), **field)
    assert configured.widths == list(prob.widths) and configured.source == "fixed"
    args = (list(prob.widths), np.ascontiguousarray(theta), "rk4", 7, 0, 2, np.array([0.05]), 1e8)
    by_kw, by_field = _core.flow_run(*args, **field), _core.flow_run(*args, field=configured)
    again = _core.flow_run(*args, field=configured)  # configure once, call many
    for key in ("theta", "risk", "grad_norm", "energy", "active"):
        assert by_field[key].tobytes() == by_kw[key].tobytes() == again[key].tobytes(), key
    d_args = (list(prob.widths), np.ascontiguousarray(theta), 0.3, -1.0, 1e-6, 1e-9, np.array([0.0, 0.3]), 1e8,
              100, 10, 1e-14)
    d_kw, d_field = _core.dopri5_run(*d_args, **field), _core.dopri5_run(*d_args, field=configured)
    for key in ("theta", "risk", "status", "accepted", "rejected"):
        assert d_field[key].tobytes() == d_kw[key].tobytes(), key
    with pytest.raises(ValueError, match="field"):
        _core.flow_run(*args, field=configured, source="fixed")
    with pytest.raises(ValueError, match="field"):
        _core.flow_run(*args, field="fixed")
    other = _core.Field([2, 6, 1], **field)
    with pytest.raises(ValueError, match="field"):
        _core.flow_run(*args, field=other)


def test_theta_with_an_equal_but_not_builtin_dtype_object(dtype):
    """theta's dtype is dispatched by value, not by object identity: an array whose dtype object equals
    float32/float64 without being numpy's builtin one (as zarr or newbyteorder('=') make them) runs in
    that precision, bitwise as the builtin dtype (flow_run, dopri5_run, quad1d_risk_and_grad,
    risk_and_grad)."""
    from reluflow import _core
    from reluflow.backends import cpu as cpu_backend

    odd = np.dtype(dtype).newbyteorder("=")
    assert odd == dtype and odd is not np.dtype(dtype.type)
    prob, theta, est, field = _points_problem(dtype, K=2)
    theta = np.ascontiguousarray(theta)
    theta_odd = theta.view(odd)
    assert theta_odd.dtype is not np.dtype(dtype.type) and theta_odd.dtype == dtype
    args = (list(prob.widths), "gd", 3, 0, 1, np.array([0.05]), 1e8)
    ref, got = (_core.flow_run(args[0], th, *args[1:], **field) for th in (theta, theta_odd))
    assert got["theta"].dtype == dtype
    for key in ("theta", "risk", "grad_norm", "energy", "active"):
        assert got[key].tobytes() == ref[key].tobytes(), key
    d_args = (0.2, -1.0, 1e-6, 1e-9, np.array([0.0, 0.2]), 1e8, 100, 10, 1e-14)
    ref, got = (_core.dopri5_run(args[0], th, *d_args, **field) for th in (theta, theta_odd))
    assert got["theta"].dtype == dtype
    for key in ("theta", "risk", "status"):
        assert got[key].tobytes() == ref[key].tobytes(), key
    ref, got = (_core.risk_and_grad(args[0], th, est.x, est.weights, est.y, True, "auto") for th in (theta, theta_odd))
    assert ref[0].tobytes() == got[0].tobytes() and ref[1].tobytes() == got[1].tobytes()
    prob1 = rf.Problem([1, 5, 4, 1], rf.targets.Affine([[1.0]], [0.5]), rf.dists.Uniform(0.0, 1.0))
    th1 = np.ascontiguousarray(prob1.init(2, seed=1, dtype=dtype))
    q = cpu_backend.quad1d_args(prob1.spec, rf.Quadrature())
    ref, got = (_core.quad1d_risk_and_grad(list(prob1.widths), th, want_grad=True, **q) for th in (th1, th1.view(odd)))
    assert ref[0].tobytes() == got[0].tobytes() and ref[1].tobytes() == got[1].tobytes()


@pytest.mark.parametrize("method", ["heun", "rk4"])
def test_flow_run_records_theta_of_runge_kutta_loops(method, dtype):
    """The fixed-step RK loops record theta too: the first record is theta0, the last the final theta,
    every record theta's dtype, close to the Python driver's records."""
    from reluflow import _core

    prob, theta, est, field = _points_problem(dtype, K=3)
    with python_driver():
        ref = rf.gradient_flow(prob, theta, 0.6, method=method, dt=0.05, estimator=est, record_every=0.2,
                               backend="cpu", record_theta=True)
    assert "loop" not in ref.info  # the Python driver
    steps, every, h = 12, 4, ref.info["dt"]
    args = (list(prob.widths), np.ascontiguousarray(theta), method, steps, 0, every, np.full(steps, h), 1e8)
    res = _core.flow_run(*args, record_theta=True, **field)
    th = res["thetas"]
    assert th.dtype == dtype and th.shape == (4, 3, prob.num_params)
    assert th[0].tobytes() == theta.tobytes() and th[-1].tobytes() == res["theta"].tobytes()
    assert ref.thetas.shape == th.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(th, ref.thetas, rtol=tol, atol=tol)
    plain = _core.flow_run(*args, **field)
    for key in ("theta", "risk", "grad_norm", "energy"):
        assert plain[key].tobytes() == res[key].tobytes(), key


def test_record_theta_does_not_change_the_engine(dtype):
    """Recording theta is a logging option: the run stays in the C++ loop its plan chose, records the
    Python driver's thetas (bitwise for GD, to rounding for dopri5) and changes no other result."""
    prob = rf.Problem([1, 7, 1], HAT, rf.dists.Uniform(0.0, 1.0))
    theta = prob.init(3, seed=6, dtype=dtype)
    est = rf.MonteCarlo(200, seed=2)
    run = rf.gradient_descent(prob, theta, lr=0.05, steps=12, estimator=est, record_every=4, backend="cpu",
                              record_theta=True)
    plain = rf.gradient_descent(prob, theta, lr=0.05, steps=12, estimator=est, record_every=4, backend="cpu")
    assert run.info["loop"] == "C++" and run.thetas.shape == (4, 3, prob.num_params)
    assert run.theta.tobytes() == plain.theta.tobytes() and run.risk.tobytes() == plain.risk.tobytes()
    with python_driver():
        ref = rf.gradient_descent(prob, theta, lr=0.05, steps=12, estimator=est, record_every=4, backend="cpu",
                                  record_theta=True)
    assert "loop" not in ref.info and run.thetas.tobytes() == ref.thetas.tobytes()
    flow = rf.gradient_flow(prob, theta, 0.5, method="dopri5", estimator=rf.Quadrature(), record_every=0.1,
                            backend="cpu", record_theta=True)
    assert flow.info["loop"] == "C++" and flow.thetas.shape == (6, 3, prob.num_params)
    with python_driver():
        ref = rf.gradient_flow(prob, theta, 0.5, method="dopri5", estimator=rf.Quadrature(), record_every=0.1,
                               backend="cpu", record_theta=True)
    tol = 1e-5 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(flow.thetas, ref.thetas, rtol=tol, atol=tol)


# ---- Gaussian input: SGD with fresh samples drawn in C++ every step ----------------------------------

@pytest.mark.parametrize("widths,dist", [
    ([1, 30, 1], rf.dists.Gaussian(0.5, 0.3)),
    ([3, 6, 4, 2], rf.dists.Gaussian([0.0, 1.0, -1.0], [[1.0, 0.4, 0.1], [0.4, 2.0, -0.3], [0.1, -0.3, 0.5]])),
], ids=["1d-point-sweep", "3d-full-cov"])
def test_cpp_sgd_gaussian_input(widths, dist, dtype):
    target = HAT if widths[0] == 1 else rf.targets.Affine(np.arange(6.0).reshape(2, 3) / 6, [0.1, -0.2])
    prob = rf.Problem(widths, target, dist)
    theta = prob.init(4, seed=11, dtype=dtype)
    est = rf.MonteCarlo(256, seed=3, resample=True)
    run = rf.gradient_descent(prob, theta, lr=0.01, steps=30, estimator=est, record_every=10, backend="cpu")
    assert run.info["loop"] == "C++"
    with python_driver():   # the same kernels, one risk_and_grad per step from Python: bitwise
        loop = rf.gradient_descent(prob, theta, lr=0.01, steps=30, estimator=est, record_every=10, backend="cpu")
    assert run.theta.tobytes() == loop.theta.tobytes()
    ref = rf.gradient_descent(prob, theta, lr=0.01, steps=30, estimator=est, record_every=10, backend="numpy")
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(run.theta, ref.theta, rtol=tol, atol=tol)
    np.testing.assert_allclose(run.risk, ref.risk, rtol=tol)
    assert np.all(np.isfinite(run.risk)) and not np.any(run.diverged)
