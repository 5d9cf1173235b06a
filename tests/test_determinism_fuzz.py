"""Determinism (same seed, bitwise same result) and hypothesis-driven fuzzing of shapes and dtypes."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reluflow as rf


def test_same_seed_bitwise_same_result(dtype, reference):
    prob = rf.Problem([2, 12, 3, 1], rf.targets.Affine([[1.0, -1.0]]), rf.dists.Uniform(0, 1, dim=2))
    theta = prob.init(4, seed=11, dtype=dtype)
    r1, g1 = prob.risk_and_grad(theta, rf.MonteCarlo(777, seed=5), backend=reference)
    r2, g2 = prob.risk_and_grad(theta, rf.MonteCarlo(777, seed=5), backend=reference)
    assert r1.tobytes() == r2.tobytes() and g1.tobytes() == g2.tobytes()
    r3, _ = prob.risk_and_grad(theta, rf.MonteCarlo(777, seed=6), backend=reference)
    assert not np.array_equal(r1, r3)


def test_monte_carlo_steps_and_resample():
    prob = rf.Problem([1, 4, 1], rf.targets.Affine([[1.0]]))
    sgd = rf.MonteCarlo(64, seed=1, resample=True)
    fixed = rf.MonteCarlo(64, seed=1, resample=False)
    x0, x1 = sgd.nodes(prob, 0).x, sgd.nodes(prob, 1).x
    assert not np.array_equal(x0, x1)
    assert np.array_equal(fixed.nodes(prob, 0).x, fixed.nodes(prob, 5).x)
    assert np.array_equal(fixed.nodes(prob, 3).x, x0)
    assert np.array_equal(rf.MonteCarlo(128, seed=1).nodes(prob, 1).x[:64], x1)  # prefix property


widths_st = st.lists(st.integers(1, 6), min_size=2, max_size=5)


# (the reference fixture is the same for every example: function scope is what it needs)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(widths=widths_st, K=st.integers(1, 3), n=st.integers(1, 40),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32))
def test_fuzz_shapes_dtypes(widths, K, n, dtype, seed, reference):
    d, out = widths[0], widths[-1]
    prob = rf.Problem(widths, rf.targets.Affine(np.ones((out, d)), np.zeros(out)), rf.dists.Uniform(-1, 1))
    theta = prob.init(K, seed=seed % 1000, dtype=dtype)
    risk, grad = prob.risk_and_grad(theta, rf.MonteCarlo(n, seed=seed), backend=reference)
    assert risk.shape == (K,) and grad.shape == (K, prob.num_params)
    assert risk.dtype == dtype and grad.dtype == dtype
    assert np.all(np.isfinite(risk)) and np.all(risk >= 0) and np.all(np.isfinite(grad))
    # float32 is the float64 computation rounded: compare with the float64 result
    r64, g64 = prob.risk_and_grad(theta.astype(np.float64), rf.MonteCarlo(n, seed=seed), backend=reference)
    np.testing.assert_allclose(risk, r64, rtol=1e-6 if dtype == np.float32 else 0)
    out_nodes = prob.realization(theta, rf.MonteCarlo(n, seed=seed).nodes(prob).x)
    assert out_nodes.shape == (K, n, out)
