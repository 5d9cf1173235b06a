"""The reference backend on any array-API namespace (SPEC §7): array-api-strict arrays on a non-CPU
device go in, are computed on in their own namespace, and come back in it; the route is the one
``backend="cupy"`` takes on CuPy arrays, so the CuPy path is exercised here without a GPU.

(The whole reference test set also runs on array-api-strict through the ``backend`` and ``reference``
fixtures of conftest.py, as backend "strict".)"""
import numpy as np
import pytest

import reluflow as rf
from conftest import STRICT_DEVICE, from_strict, to_strict, xps
from reluflow import registry
from reluflow._arrays import from_host, from_native, is_foreign, namespace_of, to_host, to_native
from reluflow.backends import get, reference
from reluflow.plan import plan

pytestmark = pytest.mark.skipif(xps is None, reason="array-api-strict is not installed (pip install "
                                                    "array-api-strict, in the test extra)")

HAT = rf.targets.PiecewiseLinear([0.0, 0.5, 1.0], [0.0, 1.0, 0.0])
ESTIMATORS = [rf.Quadrature(), rf.Quadrature(method="partition", order=7), rf.MonteCarlo(200, seed=1),
              rf.MonteCarlo(64, seed=2, resample=False), rf.QuasiMonteCarlo(128, seed=3),
              rf.Points(np.linspace(0.0, 1.0, 11), y=np.sin(np.linspace(0.0, 1.0, 11)))]


@pytest.fixture
def prob():
    return rf.Problem([1, 6, 4, 1], HAT, rf.dists.PiecewisePolynomial([0.0, 0.3, 1.0], [[1.0], [2.0]]))


def test_foreign_arrays_are_kept_and_come_back_in_their_namespace():
    a = xps.asarray(np.ones((2, 3)), device=STRICT_DEVICE)
    assert is_foreign(a) and not is_foreign(np.ones(3))
    native, origin = to_native(a, "theta")
    assert native is a and origin.library == "array_api_strict"
    assert namespace_of(a) is xps and namespace_of(np.ones(3)) is np
    assert from_native(a, origin) is a
    host = to_host(a)
    assert isinstance(host, np.ndarray) and host.shape == (2, 3)
    back = from_host(xps, np.zeros(4), a)
    assert back.device == STRICT_DEVICE and back.__array_namespace__() is xps
    assert from_host(np, host, host) is host                      # numpy: no copy


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=repr)
def test_risk_and_grad_in_the_namespace_equal_numpy(prob, estimator, dtype):
    theta = prob.init(4, seed=5, dtype=dtype)
    ts = to_strict(theta)
    r, g = prob.risk_and_grad(ts, estimator)                  # "auto": the reference in its namespace
    assert r.dtype == ts.dtype and g.dtype == ts.dtype and tuple(g.shape) == theta.shape
    r0, g0 = prob.risk_and_grad(theta, estimator, backend="numpy")
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(from_strict(r), r0, rtol=tol)
    np.testing.assert_allclose(from_strict(g), g0, rtol=tol, atol=tol * np.abs(g0).max())
    only = prob.risk(ts, estimator, backend="numpy")
    np.testing.assert_array_equal(from_strict(only), from_strict(r))


def test_numpy_results_are_bitwise_unchanged_by_the_array_api_code(prob):
    # the reference's numpy path keeps its einsum sum; every other step is the same arithmetic
    theta = prob.init(3, seed=2)
    x = np.linspace(0, 1, 50)[:, None]
    est = rf.Points(x)
    r, g = prob.risk_and_grad(theta, est, backend="numpy")
    y = prob.target(x)
    r1, g1 = reference.risk_and_grad(prob.layout, theta, x, np.full(50, 1 / 50), y)
    assert r.tobytes() == r1.tobytes() and g.tobytes() == g1.tobytes()
    zs = [z for z in __import__("reluflow").geometry.forward(prob.layout.unpack(theta), x)]
    assert np.array_equal(zs[-1], prob.realization(theta, x, backend="numpy"))


def test_realization_normalize_hessian_in_the_namespace(prob):
    theta = prob.init(2, seed=7)
    ts = to_strict(theta)
    x = np.linspace(0.0, 1.0, 9)
    np.testing.assert_array_equal(from_strict(prob.realization(ts, x)), prob.realization(theta, x, backend="numpy"))
    np.testing.assert_array_equal(from_strict(prob.normalize(ts)), prob.normalize(theta))
    est = rf.Points(x)
    H = from_strict(prob.hessian(ts, est))
    np.testing.assert_allclose(H, prob.hessian(theta, est, backend="numpy"), rtol=1e-12, atol=1e-13)
    V = np.random.default_rng(0).standard_normal((2, 3, prob.num_params))
    hv = from_strict(prob.hvp(ts, to_strict(V), est))
    np.testing.assert_allclose(hv, np.einsum("kpq,kbq->kbp", H, V), rtol=1e-10, atol=1e-12)
    hv_host_v = from_strict(prob.hvp(ts, V, est))                   # numpy directions are moved once
    np.testing.assert_array_equal(hv_host_v, hv)


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_runs_come_back_in_the_namespace(prob, method):
    theta = prob.init(3, seed=1)
    ts = to_strict(theta)
    run = rf.gradient_flow(prob, ts, 0.2, method=method, dt=0.02, record_theta=True)
    ref = rf.gradient_flow(prob, theta, 0.2, method=method, dt=0.02, record_theta=True, backend="numpy")
    assert run.info.get("loop") != "C++"
    np.testing.assert_allclose(from_strict(run.theta), ref.theta, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(from_strict(run.thetas), ref.thetas, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(run.risk, ref.risk, rtol=1e-12)
    assert isinstance(run.risk, np.ndarray) and run.best() == ref.best()   # records: host numpy
    gd = rf.gradient_descent(prob, ts, lr=0.05, steps=5, estimator=rf.MonteCarlo(64, seed=3))
    resumed = rf.gradient_descent(prob, gd.theta, lr=0.05, steps=5, estimator=rf.MonteCarlo(64, seed=3),
                                  start_step=gd.next_step)
    whole = rf.gradient_descent(prob, ts, lr=0.05, steps=10, estimator=rf.MonteCarlo(64, seed=3))
    assert from_strict(resumed.theta).tobytes() == from_strict(whole.theta).tobytes()


def test_the_native_backends_refuse_foreign_arrays_naming_the_argument(prob):
    ts = to_strict(prob.init(1))
    assert registry.resolve("auto", ts) == "numpy" and registry.resolve("numpy", ts) == "numpy"
    for name in ("cpu", "cuda", "cupy"):
        if not rf.backends()[name].available:
            continue
        with pytest.raises(ValueError, match=f"backend: '{name}' runs on numpy or cupy arrays, not on an "
                                             f"array_api_strict array; use 'numpy' or 'auto'"):
            prob.risk(ts, rf.MonteCarlo(8), backend=name)
    with pytest.raises(TypeError, match="theta: expected a float32 or float64 array"):
        prob.risk(xps.asarray(np.zeros((1, prob.num_params), dtype=np.int64), device=STRICT_DEVICE),
                  rf.MonteCarlo(8))
    with pytest.raises(ValueError, match="theta: expected finite parameters"):
        prob.risk(to_strict(np.full((1, prob.num_params), np.nan)), rf.MonteCarlo(8))


@pytest.mark.skipif(not rf.backends()["cpu"].available, reason="the exact sweep is C++ only")
def test_a_cpp_only_route_runs_on_the_host_for_a_foreign_array():
    prob = rf.Problem([1, 8, 1], HAT)
    theta = prob.init(3, seed=4)
    est = rf.Quadrature(method="sweep")
    r, g = prob.risk_and_grad(to_strict(theta), est)
    r0, g0 = prob.risk_and_grad(theta, est, backend="numpy")
    assert from_strict(r).tobytes() == r0.tobytes() and from_strict(g).tobytes() == g0.tobytes()


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=repr)
def test_the_cupy_backend_takes_this_very_path(prob, estimator):
    """backend="cupy" (CuPy arrays) and the reference on array-api-strict arrays are one code path:
    the same route, loop and backend module, called with the array's namespace as ``xp``."""
    p_cupy = plan(prob.spec, estimator, "cupy")
    p_ref = plan(prob.spec, estimator, registry.resolve("auto", to_strict(prob.init(1))))
    assert (p_cupy.route, p_cupy.native, p_cupy.loop, p_cupy.source) == \
        (p_ref.route, p_ref.native, p_ref.loop, p_ref.source)
    assert get(p_cupy) is get(p_ref) is reference


def test_numpy_before_2_1_namespace_gives_the_same_bits(prob):
    """numpy < 2.1 lacks astype, concat and matrix_transpose: the reference then gets numpy with those
    three added (``_arrays._NumpyBefore21``), which must compute exactly what numpy 2.1 does."""
    from reluflow._arrays import _NumpyBefore21

    old = _NumpyBefore21()
    theta = prob.init(3, seed=6)
    x = np.linspace(0.0, 1.0, 40)[:, None]
    w, y = np.full(40, 1 / 40), prob.target(x)
    a = reference.risk_and_grad(prob.layout, theta, x, w, y, True, np)
    b = reference.risk_and_grad(prob.layout, theta, x, w, y, True, old)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    V = np.random.default_rng(1).standard_normal((3, 2, prob.num_params))
    a = reference.risk_grad_hvp(prob.layout, theta, V, x, w, y, np)
    b = reference.risk_grad_hvp(prob.layout, theta, V, x, w, y, old)
    assert all(u.tobytes() == v.tobytes() for u, v in zip(a, b))
    assert reference.realization(prob.layout, theta, x, old).tobytes() == \
        reference.realization(prob.layout, theta, x, np).tobytes()


def test_host_analyses_and_host_data_take_foreign_arrays(prob):
    """Diagnostics and landscape work on the host (numpy out); estimator and target data given as
    array-API arrays are read on the host once."""
    theta = prob.init(2, seed=8)
    ts = to_strict(theta)
    x = np.linspace(0.0, 1.0, 13)
    np.testing.assert_array_equal(rf.diagnostics.balancedness(prob, ts), rf.diagnostics.balancedness(prob, theta))
    est = rf.Points(x)
    np.testing.assert_array_equal(rf.diagnostics.dead_neurons(prob, ts, est), rf.diagnostics.dead_neurons(prob, theta, est))
    np.testing.assert_array_equal(rf.landscape.spectrum(prob, ts, est), rf.landscape.spectrum(prob, theta, est))
    pts = rf.Points(to_strict(x), y=to_strict(np.cos(x)))
    r = prob.risk(ts, pts)
    np.testing.assert_array_equal(from_strict(r), from_strict(prob.risk(ts, rf.Points(x, y=np.cos(x)))))
