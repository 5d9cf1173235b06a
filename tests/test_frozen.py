"""Frozen parameters (SPEC §8): ``prob.mask`` and ``frozen=`` of the integrators keep the masked
parameters fixed (zero velocity) in the C++ loops and the Python driver alike, and move the others
exactly as the gradient restricted to them."""
import numpy as np
import pytest

import reluflow as rf
from conftest import STRICT, python_driver, use_strict

HAT = rf.targets.PiecewiseLinear([0.0, 0.5, 1.0], [0.0, 1.0, 0.0])


def test_mask_selects_layers_and_kinds():
    prob = rf.Problem([2, 3, 4, 1], rf.targets.Affine([1.0, 1.0]), rf.dists.Uniform(0, 1, dim=2))
    lay = prob.layout
    assert prob.mask().all() and prob.mask().shape == (prob.num_params,)
    out = prob.mask(layers=[3], biases=False)
    assert out.sum() == 4 and out[lay.w_offsets[2]:lay.w_offsets[2] + 4].all()
    b = prob.mask(weights=False)
    assert b.sum() == 3 + 4 + 1 and b[lay.b_offsets[0]:lay.b_offsets[0] + 3].all()
    assert prob.mask(layers=1).sum() == 3 * 2 + 3
    with pytest.raises(ValueError, match="layers: expected layer numbers in 1..3"):
        prob.mask(layers=[0])
    with pytest.raises(TypeError, match="weights: expected True or False"):
        prob.mask(weights="yes")


@pytest.mark.parametrize("how", ["gd", "rk4", "dopri5"])
@pytest.mark.parametrize("driver", ["cpp", "python", "numpy", STRICT])
def test_frozen_parameters_keep_their_values(how, driver, monkeypatch):
    prob = rf.Problem([1, 6, 1], HAT)
    theta = prob.init(3, seed=2)
    frozen = prob.mask(layers=[2], biases=False)          # fixed output weights
    theta[:, prob.mask(weights=False)] = 0.0               # and a bias-free net
    frozen |= prob.mask(weights=False)
    backend = driver if driver in ("numpy", "strict") else "cpu"
    if driver == "strict":
        use_strict(monkeypatch)
    est = rf.Quadrature()
    kw = dict(estimator=est, backend=backend, frozen=frozen)
    ctx = python_driver() if driver == "python" else __import__("contextlib").nullcontext()
    with ctx:
        if how == "gd":
            run = rf.gradient_descent(prob, theta, lr=0.05, steps=20, **kw)
        else:
            run = rf.gradient_flow(prob, theta, 0.5, method=how, dt=0.05, **kw)
    assert (run.info.get("loop") == "C++") == (driver == "cpp")
    assert run.theta[:, frozen].tobytes() == theta[:, frozen].tobytes()
    assert np.abs(run.theta[:, ~frozen] - theta[:, ~frozen]).max() > 1e-3
    # (a bias-free network whose hidden neurons are all dead on [0, 1] keeps its risk)
    assert np.all(run.risk[-1] <= run.risk[0] + 1e-12) and np.any(run.risk[-1] < run.risk[0] - 1e-6)


def test_frozen_step_is_the_restricted_gradient():
    prob = rf.Problem([1, 5, 1], HAT)
    theta = prob.init(2, seed=4)
    frozen = prob.mask(layers=[1])
    run = rf.gradient_descent(prob, theta, lr=0.1, steps=1, estimator=rf.Quadrature(), backend="cpu", frozen=frozen)
    _, g = prob.risk_and_grad(theta, rf.Quadrature(), backend="cpu")
    expect = theta - 0.1 * np.where(frozen, 0.0, g)
    np.testing.assert_allclose(run.theta, expect, rtol=0, atol=1e-15)


def test_frozen_argument_checked():
    prob = rf.Problem([1, 3, 1], HAT)
    theta = prob.init(1)
    with pytest.raises(TypeError, match="frozen: expected a \\(10,\\) bool mask"):
        rf.gradient_descent(prob, theta, lr=0.1, steps=1, frozen=np.zeros(10))
    with pytest.raises(TypeError, match="frozen: expected a \\(10,\\) bool mask"):
        rf.gradient_flow(prob, theta, 0.1, frozen=np.zeros(9, dtype=bool))
    with pytest.raises(ValueError, match="frozen: not supported with normalized=True"):
        rf.gradient_flow(prob, theta, 0.1, normalized=True, frozen=prob.mask(layers=[2]))
