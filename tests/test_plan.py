"""The planner (``reluflow.plan``, ``Problem.plan`` / ``Problem.explain``): which route and loop run,
and the promise that comes with it: a network's bits do not depend on K, on the other networks of its
batch or on the thread count (SPEC §7)."""
import json
import textwrap

import numpy as np
import pytest

import reluflow as rf
from conftest import run_with_threads

HAT = rf.targets.PiecewiseLinear([0.0, 0.5, 1.0], [0.0, 1.0, 0.0])
DENSITY = rf.dists.PiecewisePolynomial([0.0, 0.5, 1.0], [[1.0, 1.0], [1.5, -1.0]])


def _cases():
    """(name, problem, estimator, expected cpu route, expected native, expected loop)."""
    shallow = rf.Problem([1, 64, 1], HAT)
    deep = rf.Problem([1, 8, 8, 1], HAT, DENSITY)
    fn = rf.Problem([1, 8, 8, 1], rf.targets.Function(lambda x: np.sin(3 * x)))
    two_d = rf.Problem([2, 16, 1], rf.targets.Affine([1.0, -1.0]))
    return [
        ("mc-shallow", shallow, rf.MonteCarlo(1024, seed=1), "point_sweep", True, "C++"),
        ("mc-shallow-tiny-H", rf.Problem([1, 2, 1], HAT), rf.MonteCarlo(1024), "dense", True, "C++"),
        ("qmc-deep", deep, rf.QuasiMonteCarlo(256), "dense", True, "C++"),
        ("quad-shallow", shallow, rf.Quadrature(), "exact_sweep", True, "C++"),
        ("quad-shallow-low-order", shallow, rf.Quadrature(order=1), "partition", True, "C++"),
        ("quad-deep", deep, rf.Quadrature(), "partition", True, "C++"),
        ("quad-function", fn, rf.Quadrature(exact=False), "partition", False, "Python"),
        ("quad-2d", two_d, rf.Quadrature(), "tensor_grid", True, "C++"),
        ("points-2d", two_d, rf.Points(np.random.default_rng(0).uniform(size=(50, 2))), "dense", True, "C++"),
    ]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_routes_on_cpu(case):
    _, prob, est, route, native, loop = case
    p = prob.plan(est, backend="cpu")
    assert (p.backend, p.route, p.native, p.loop) == ("cpu", route, native, loop)
    text = prob.explain(est, backend="cpu", K=7)
    assert f"route {route!r}" in text and f"integrator loop {loop}" in text and "K = 7" in text
    assert p.why and all(isinstance(w, str) and w for w in p.why)


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_numpy_backend_keeps_the_reference(case):
    _, prob, est, route, _, _ = case
    p = prob.plan(est, backend="numpy")
    assert p.loop == "Python" and not p.native and p.source is None
    assert p.route == {"point_sweep": "dense", "exact_sweep": "partition"}.get(route, route)


def test_explain_does_not_depend_on_K():
    prob = rf.Problem([1, 64, 1], HAT)
    for est in (rf.MonteCarlo(1024), rf.Quadrature(), rf.MonteCarlo(64)):
        texts = {prob.explain(est, "cpu", K=K).replace(f"K = {K} networks", "K") for K in (1, 2, 1000)}
        assert len(texts) == 1, texts


def test_explain_refuses_bad_arguments():
    prob = rf.Problem([1, 8, 1], HAT)
    with pytest.raises(ValueError, match="K:"):
        prob.explain(rf.MonteCarlo(10), K=0)
    with pytest.raises(TypeError, match="estimator:"):
        prob.explain("mc")
    with pytest.raises(ValueError, match="backend:"):
        prob.explain(rf.MonteCarlo(10), backend="tpu")
    with pytest.raises(ValueError, match="method:"):
        prob.explain(rf.MonteCarlo(10), method="fast")
    with pytest.raises(ValueError, match="method: 'sweep' needs a shallow 1-D net"):
        rf.Problem([2, 8, 1], rf.targets.Affine([1.0, 1.0])).explain(rf.MonteCarlo(10), backend="cpu",
                                                                    method="sweep")


def test_integrators_follow_the_plan():
    prob = rf.Problem([1, 8, 8, 1], rf.targets.Function(lambda x: np.sin(3 * x)))
    theta = prob.init(2, seed=0)
    run = rf.gradient_flow(prob, theta, t_end=0.01, method="euler", dt=0.005, estimator=rf.Quadrature(exact=False),
                           backend="cpu")
    assert "loop" not in run.info                         # the plan says Python
    run = rf.gradient_descent(prob, theta, lr=0.01, steps=2, estimator=rf.MonteCarlo(64), backend="cpu")
    assert run.info["loop"] == "C++"                      # the plan says C++ (target by callback)


# ---- a network's bits do not depend on its batch ----------------------------------------------------

def _estimators():
    return [rf.MonteCarlo(1024, seed=3), rf.MonteCarlo(64, seed=3), rf.QuasiMonteCarlo(512, seed=1),
            rf.MonteCarlo(20000, seed=4),
            rf.Quadrature()]


@pytest.mark.parametrize("widths", [[1, 64, 1], [1, 3, 1], [1, 12, 12, 1], [2, 16, 1]])
def test_risk_and_grad_alone_equals_in_batch(backend, widths, dtype):
    target = HAT if widths[0] == 1 else rf.targets.Affine([1.0, -0.5])
    prob = rf.Problem(widths, target, DENSITY if widths[0] == 1 else None)
    theta = prob.init(5, seed=11, dtype=dtype)
    for est in _estimators():
        r, g = prob.risk_and_grad(theta, est, backend=backend)
        for k in (0, 3):
            rk, gk = prob.risk_and_grad(theta[k:k + 1], est, backend=backend)
            assert rk.tobytes() == r[k:k + 1].tobytes(), (est, k)
            assert gk.tobytes() == g[k:k + 1].tobytes(), (est, k)


@pytest.mark.parametrize("estimator", [rf.MonteCarlo(1024, seed=2), rf.MonteCarlo(128, seed=2), rf.Quadrature()],
                         ids=["sgd-1024", "sgd-128", "gd-quadrature"])
@pytest.mark.parametrize("H", [10, 64])
def test_trajectory_alone_equals_in_batch(estimator, H):
    """The issue's case: SGD of one network alone or in a batch of 4, bitwise the same trajectory."""
    prob = rf.Problem([1, H, 1], HAT)
    theta = prob.init(4, seed=5)
    batch = rf.gradient_descent(prob, theta, lr=0.02, steps=30, estimator=estimator, record_every=10,
                                backend="cpu")
    for k in (0, 2):
        alone = rf.gradient_descent(prob, theta[k:k + 1], lr=0.02, steps=30, estimator=estimator,
                                    record_every=10, backend="cpu")
        assert alone.theta.tobytes() == batch.theta[k:k + 1].tobytes()
        assert alone.risk.tobytes() == np.ascontiguousarray(batch.risk[:, k:k + 1]).tobytes()


# ---- nor on the thread count ---------------------------------------------------------------------------

_THREAD_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import reluflow as rf
    hat = rf.targets.PiecewiseLinear([0.0, 0.5, 1.0], [0.0, 1.0, 0.0])
    out = {}
    for widths, K in (([1, 64, 1], 1), ([1, 64, 1], 3), ([1, 300, 1], 8), ([1, 16, 16, 1], 4)):
        prob = rf.Problem(widths, hat)
        theta = prob.init(K, seed=9)
        for name, est in (("mc", rf.MonteCarlo(1024, seed=1)), ("qmc", rf.QuasiMonteCarlo(4096, seed=2)),
                          ("quad", rf.Quadrature())):
            r, g = prob.risk_and_grad(theta, est, backend="cpu")
            out[f"{widths}-{K}-{name}"] = [r.tobytes().hex(), g.tobytes().hex()]
        run = rf.gradient_descent(prob, theta, lr=0.01, steps=20, estimator=rf.MonteCarlo(512, seed=4),
                                  backend="cpu")
        out[f"{widths}-{K}-sgd"] = [run.theta.tobytes().hex(), run.risk.tobytes().hex()]
    json.dump(out, sys.stdout)
""")


def _run_with_threads(n: int) -> dict:
    return json.loads(run_with_threads(_THREAD_SCRIPT, n, timeout=300))


def test_results_do_not_depend_on_thread_count():
    """The issue's case (MonteCarlo(1024) on [1, 64, 1], K = 1) and others, with 1 and 2 (and 3)
    OpenMP threads: bitwise the same risks, gradients and SGD trajectories."""
    one = _run_with_threads(1)
    for n in (2, 3):
        assert _run_with_threads(n) == one


def test_dense_kernel_chunks_and_blocks_do_not_change_bits():
    """Large N (several chunks per network) and a batch large enough to be processed in blocks of
    networks (the chunk partials' memory cap): each network's bits equal its bits alone."""
    from reluflow.backends import cpu as cpu_backend
    from reluflow.layout import Layout

    if not rf.backends()["cpu"].available:
        pytest.skip("cpu backend not built")
    lay = Layout([1, 512, 512, 1])        # P ~ 2.6e5: a few 2 MB partials per network, ~10 networks a block
    rng = np.random.default_rng(3)
    theta = rng.normal(size=(12, lay.num_params)) * 0.05
    x = rng.uniform(size=(8192, 1))
    w = np.full(x.shape[0], 1.0 / x.shape[0])
    y = rng.normal(size=(x.shape[0], 1))
    r, g = cpu_backend.risk_and_grad(lay, theta, x, w, y)
    for k in (0, 11):
        rk, gk = cpu_backend.risk_and_grad(lay, theta[k:k + 1], x, w, y)
        assert rk.tobytes() == r[k:k + 1].tobytes() and gk.tobytes() == g[k:k + 1].tobytes()


# ---- Gaussian input: point estimators plan as usual, Quadrature is refused at plan time --------------

GAUSS_1D = rf.Problem([1, 64, 1], HAT, rf.dists.Gaussian(0.5, 0.25))
GAUSS_2D = rf.Problem([2, 16, 1], rf.targets.Affine([1.0, -1.0]), rf.dists.Gaussian([0, 1], [[1, .3], [.3, 2]]))


@pytest.mark.parametrize("prob", [GAUSS_1D, GAUSS_2D], ids=["1d", "2d"])
@pytest.mark.parametrize("est", [rf.Quadrature(), rf.Quadrature(method="partition"), rf.Quadrature(exact=False)],
                         ids=["auto", "partition", "inexact"])
def test_quadrature_refuses_gaussian_input(prob, est):
    for backend in ("cpu", "numpy"):
        with pytest.raises(ValueError, match="^estimator: Quadrature .* unbounded; use MonteCarlo"):
            prob.plan(est, backend)
    with pytest.raises(ValueError, match="^estimator: .*rf.Exact"):
        prob.risk_and_grad(prob.init(1), est)
    from reluflow.quadrature import quadrature_nodes
    with pytest.raises(ValueError, match="^estimator: Quadrature"):
        quadrature_nodes(prob, prob.init(1)[0], est)
    assert "bounded" in prob.spec.exact_sweep_unsupported()


def test_gaussian_point_estimators_plan_as_usual():
    p = GAUSS_1D.plan(rf.MonteCarlo(1024, seed=1), "cpu")
    assert (p.route, p.loop, p.source) == ("point_sweep", "C++", "resample")
    p = GAUSS_2D.plan(rf.QuasiMonteCarlo(256), "cpu")
    assert (p.route, p.loop, p.source) == ("dense", "C++", "fixed")


@pytest.mark.parametrize("est", [rf.MonteCarlo(3000, seed=2), rf.QuasiMonteCarlo(2048, seed=5),
                                 rf.MonteCarlo(500, seed=2, resample=False)], ids=["mc", "qmc", "mc-fixed"])
def test_gaussian_point_sweep_equals_dense_and_reference(est):
    """The point sweep takes the Gaussian's nodes like any weighted points (sorted, unbounded)."""
    theta = GAUSS_1D.init(5, seed=4)
    r_sweep, g_sweep = GAUSS_1D.risk_and_grad(theta, est, backend="cpu", method="sweep", step=3)
    r_dense, g_dense = GAUSS_1D.risk_and_grad(theta, est, backend="cpu", method="dense", step=3)
    r_ref, g_ref = GAUSS_1D.risk_and_grad(theta, est, backend="numpy", step=3)
    np.testing.assert_allclose(r_sweep, r_ref, rtol=1e-12)
    np.testing.assert_allclose(r_dense, r_ref, rtol=1e-12)
    scale = np.abs(g_ref).max()
    np.testing.assert_allclose(g_sweep, g_ref, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(g_dense, g_ref, rtol=0, atol=1e-12 * scale)
    # and the nodes are the Gaussian's: the risk of an affine net against HAT is the sampled mean
    x = est.nodes(GAUSS_1D.spec, 3).x
    assert x.min() < 0.0 and x.max() > 1.0   # outside the hat's box: unbounded input
