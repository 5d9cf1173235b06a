"""Arrays from any library (SPEC §7, ``reluflow._arrays``): torch and JAX arrays and DLPack /
``__array__`` producers go in without a copy where possible, and results come back in the caller's
library, equal to the numpy results bitwise."""
import numpy as np
import pytest

import reluflow as rf
from conftest import available_backends
from reluflow._arrays import Origin, from_native, to_native

HAT = rf.targets.PiecewiseLinear([0.0, 0.5, 1.0], [0.0, 1.0, 0.0])


@pytest.fixture(params=[b for b in ("numpy", "cpu") if b in available_backends()])
def backend(request):
    """The backends behind torch / JAX input, which is read as numpy: the suite's "strict" backend is an
    input library of its own (array-api-strict in, array-api-strict out), not a backend for torch or
    JAX arrays, so it is excluded here; tests/test_array_api.py has its own in/out tests."""
    return request.param


@pytest.fixture
def prob():
    return rf.Problem([1, 12, 1], HAT)


ESTIMATORS = [rf.Quadrature(), rf.MonteCarlo(256, seed=1), rf.QuasiMonteCarlo(128, seed=2)]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=repr)
def test_torch_in_torch_out(prob, estimator, backend, dtype):
    torch = pytest.importorskip("torch")
    theta = prob.init(4, seed=3, dtype=dtype)
    t = torch.from_numpy(theta.copy())
    r, g = prob.risk_and_grad(t, estimator, backend=backend)
    assert isinstance(r, torch.Tensor) and isinstance(g, torch.Tensor)
    assert r.dtype == t.dtype and g.shape == t.shape
    r0, g0 = prob.risk_and_grad(theta, estimator, backend=backend)
    assert r.numpy().tobytes() == r0.tobytes() and g.numpy().tobytes() == g0.tobytes()
    assert isinstance(prob.risk(t, estimator, backend=backend), torch.Tensor)


def test_torch_realization_normalize_and_points(prob, backend):
    torch = pytest.importorskip("torch")
    theta = prob.init(2, seed=4)
    t = torch.from_numpy(theta.copy())
    x = torch.linspace(0.0, 1.0, 9, dtype=torch.float64)
    out = prob.realization(t, x, backend=backend)
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (2, 9, 1)
    np.testing.assert_array_equal(out.numpy(), prob.realization(theta, x.numpy(), backend=backend))
    n = prob.normalize(t)
    assert isinstance(n, torch.Tensor)
    np.testing.assert_array_equal(n.numpy(), prob.normalize(theta))
    r = prob.risk(t, rf.Points(x, y=torch.zeros(9)), backend=backend)
    np.testing.assert_array_equal(r.numpy(), prob.risk(theta, rf.Points(x.numpy(), y=np.zeros(9)), backend=backend))


def test_torch_read_without_copy_and_grad_refused():
    torch = pytest.importorskip("torch")
    t = torch.zeros((3, 5), dtype=torch.float64)
    arr, origin = to_native(t, "theta")
    assert origin == Origin("torch", False) and isinstance(arr, np.ndarray)
    t[1, 2] = 7.0
    assert arr[1, 2] == 7.0                       # the same memory (DLPack), no copy
    with pytest.raises(TypeError, match="theta: a torch tensor that requires grad; pass theta.detach"):
        to_native(torch.zeros(2, requires_grad=True), "theta")
    with pytest.raises(TypeError, match="theta: expected a float32 or float64 array"):
        rf.Problem([1, 2, 1], HAT).risk(torch.zeros((1, 7), dtype=torch.float16), rf.MonteCarlo(4))


def test_jax_in_jax_out(prob, backend):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    theta = prob.init(3, seed=5)
    j = jax.numpy.asarray(theta)
    r, g = prob.risk_and_grad(j, rf.Quadrature(), backend=backend)
    assert isinstance(r, jax.Array) and isinstance(g, jax.Array) and g.dtype == j.dtype
    r0, g0 = prob.risk_and_grad(theta, rf.Quadrature(), backend=backend)
    np.testing.assert_array_equal(np.asarray(r), r0)
    np.testing.assert_array_equal(np.asarray(g), g0)


class _ArrayLike:
    """Only ``__array__``: numpy is the common currency, results come back as numpy."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


def test_array_protocol_only(prob):
    theta = prob.init(2, seed=6)
    r, g = prob.risk_and_grad(_ArrayLike(theta), rf.MonteCarlo(64))
    assert isinstance(r, np.ndarray)
    r0, g0 = prob.risk_and_grad(theta, rf.MonteCarlo(64))
    assert r.tobytes() == r0.tobytes() and g.tobytes() == g0.tobytes()
    assert from_native(None, Origin("torch")) is None


def test_integrators_take_torch_theta0(prob):
    torch = pytest.importorskip("torch")
    theta = prob.init(2, seed=7)
    run = rf.gradient_descent(prob, torch.from_numpy(theta.copy()), lr=0.05, steps=5, estimator=rf.MonteCarlo(64))
    ref = rf.gradient_descent(prob, theta, lr=0.05, steps=5, estimator=rf.MonteCarlo(64))
    assert run.theta.tobytes() == ref.theta.tobytes()
