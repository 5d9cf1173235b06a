"""The normalized flow with the whole device loop (GD / SGD, euler, heun, rk4), run on the host (issue
13, part 1).

The projection and retracting-update kernels of cuda/src/gd_loop.cu (reluflow/normalized_step.h) run
through their host harnesses (``_core._harness_project``, ``_harness_nm_update``) against flows.py's
numpy projection and retraction, and the whole loop through test_cuda_harness.HarnessLoop against the
cpu C++ loop (flow_cpu.cpp with normalized=True): theta and records to 1e-12 (float64; the |G| and
energy sums are block trees), the same statuses and evaluation counts, theta on the manifold.
"""
import numpy as np
import pytest

core = pytest.importorskip("reluflow._core")

import reluflow as rf  # noqa: E402
from reluflow import flows  # noqa: E402
from test_cuda_harness import (OVER, RUNNING, assert_runs_match, fresh_state, gd_estimator,  # noqa: E402
                               gd_problem, rel)
from test_cuda_harness import host_cuda_loop  # noqa: E402, F401  (the fixture)


def on_manifold(prob, theta):
    for W, b in prob.layout.unpack(theta)[:-1]:
        np.testing.assert_allclose(np.sum(W * W, axis=2) + b * b, 1.0, rtol=1e-12)


@pytest.mark.parametrize("widths", [[1, 7, 1], [2, 140, 1], [2, 5, 4, 3]])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_projection_harness_equals_numpy(widths, dtype):
    """One entry per (network, hidden neuron): the numpy projection of flows.py to rounding, and the
    result orthogonal to every neuron's (w_i, b_i)."""
    prob = rf.Problem(widths, rf.targets.Affine(np.ones((widths[-1], widths[0])), np.zeros(widths[-1])))
    rng = np.random.default_rng(0)
    theta = flows._onto_manifold(prob, rng.normal(size=(3, prob.layout.num_params)), False).astype(dtype)
    g = rng.normal(size=theta.shape)
    got = core._harness_project(widths, theta, g)
    want = flows._project(prob, theta.astype(np.float64), g)
    assert rel(got, want) <= 1e-14
    if dtype == np.float32:   # a float32 row is on the sphere to ~1e-7 only: so is the orthogonality
        return
    for (W, b), (gW, gb) in zip(prob.layout.unpack(theta.astype(np.float64))[:-1], prob.layout.unpack(got)[:-1]):
        assert np.abs(np.sum(gW * W, axis=2) + gb * b).max() <= 1e-13
    with pytest.raises(ValueError, match="grad"):
        core._harness_project(widths, theta, g[:, 1:])
    with pytest.raises(ValueError, match="theta"):
        core._harness_project(widths, theta[:, 1:], g)


@pytest.mark.parametrize("method", ["euler", "heun", "rk4"])
def test_retracting_update_harness_equals_numpy(method):
    """new = theta - h sum b_s k_s (euler: in theta's dtype), every hidden neuron retracted, then the
    parameter tests (a network beyond max_abs is frozen at theta, stop_iter = i + 1); energy as the cpu."""
    prob = gd_problem([2, 6, 1])
    P = prob.layout.num_params
    rng = np.random.default_rng(3)
    theta = flows._onto_manifold(prob, rng.normal(size=(3, P)), False)
    stages = {"euler": 1, "heun": 2, "rk4": 4}[method]
    ks = [rng.normal(size=(3, P)) for _ in range(stages)]
    ks[0][2, -1] = 1e9          # network 2's output weight leaves max_abs
    A, B = flows._TABLEAUX[method] if method != "euler" else (None, [1.0])
    state = fresh_state(3)
    state["last_gn"] = np.array([1.5, 2.0, 3.0])
    h = 0.01
    got = core._harness_nm_update([2, 6, 1], theta, ks, state=state, i=4, h=h, method=method, max_abs=1e6)
    incr = sum(b * k for b, k in zip(B, ks))
    new = flows._retract(prob, theta - h * incr)
    assert rel(got["theta"][:2], new[:2]) <= 1e-14
    np.testing.assert_array_equal(got["theta"][2], theta[2])
    assert list(got["reason"]) == [RUNNING, RUNNING, OVER] and list(got["stop_iter"]) == [-1, -1, 5]
    en = h * (state["last_gn"] ** 2 if method == "euler" else sum(b * np.sum(k * k, axis=1) for b, k in zip(B, ks)))
    np.testing.assert_allclose(got["energy"][:2], en[:2], rtol=1e-13)
    on_manifold(prob, got["theta"][:2])


CASES = [("gd", [1, 16, 1], "points"), ("gd", [2, 8, 8, 1], "sgd"), ("euler", [1, 16, 1], "points"),
         ("heun", [2, 8, 8, 1], "points"), ("rk4", [1, 16, 1], "points"), ("rk4", [2, 8, 8, 1], "sgd")]


@pytest.mark.parametrize("method,widths,kind", CASES, ids=[f"{m}-{w}-{k}" for m, w, k in CASES])
def test_device_normalized_loop_emulated_equals_cpu_loop(host_cuda_loop, method, widths, kind):
    """normalized=True on the cuda backend takes the device loop (the projection after every dense
    evaluation, the retracting update) and gives the cpu C++ loop's run to 1e-12; theta stays on the
    manifold (frozen= is refused with normalized=True on every backend)."""
    prob = gd_problem(widths)
    est = gd_estimator(kind, widths[0])
    theta = prob.init(3, seed=2)
    before = host_cuda_loop.loops
    if method == "gd":
        kw = dict(record_every=5, normalized=True, record_theta=True)
        a = rf.gradient_descent(prob, theta, 0.05, 23, est, backend="cuda", **kw)
        b = rf.gradient_descent(prob, theta, 0.05, 23, est, backend="cpu", **kw)
    else:
        kw = dict(method=method, dt=0.02, record_every=0.1, estimator=est, normalized=True, record_theta=True)
        a = rf.gradient_flow(prob, theta, 0.5, backend="cuda", **kw)
        b = rf.gradient_flow(prob, theta, 0.5, backend="cpu", **kw)
    assert host_cuda_loop.loops == before + 1 and a.info["loop"] == "CUDA" and b.info["loop"] == "C++"
    assert_runs_match(a, b)
    assert rel(a.thetas, b.thetas) <= 1e-12
    on_manifold(prob, a.theta)
    # the runs went somewhere (rk4 with resampled nodes at this dt loses a network on both loops alike)
    ok = ~a.diverged
    assert ok.sum() >= 2 and (a.risk[-1][ok] < a.risk[0][ok]).all()
