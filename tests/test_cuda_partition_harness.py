"""The exact 1-D quadrature of deep nets on the device (issue 12): every network's kink-partition nodes made
on the host in C++ (``_core.quad1d_nodes_batch``), then one ragged kernel over all networks' nodes
(cuda/src/risk_grad.cu ``risk_and_grad_ragged``, reluflow/risk_grad_grid.h "ragged nodes").

``_core._harness_risk_grad_ragged`` runs that kernel's grid sequentially on the host with the same
per-thread functions; judged here against the cpu backend's partition path (float64 to 1e-12, float32
within a band), against the per-network node builder, for degenerate nets (the zero flags), networks
without nodes, several work items per network, bitwise batch independence; and the cuda backend's Python
plumbing with the harness standing in for the device. tests/test_cuda.py runs the kernel itself where a
device exists.
"""
import numpy as np
import pytest
from test_cuda_harness import host_cuda  # noqa: F401  (the fixture)

import reluflow as rf
from reluflow.backends import cpu as cpu_backend
from reluflow.backends import cuda as cuda_backend
from reluflow.backends import get as backend_for
from reluflow.plan import plan as make_plan
from reluflow.quadrature import fixed_1d

core = pytest.importorskip("reluflow._core")
harness = core._harness_risk_grad_ragged
PL = rf.targets.PiecewiseLinear([-1.0, 0.0, 0.3, 1.0], [0.0, 1.0, -0.5, 0.5])


def problem(widths, dist=None):
    out = widths[-1]
    target = PL if out == 1 else rf.targets.Affine(np.linspace(0.2, 0.7, out)[:, None], np.zeros(out))
    return rf.Problem(widths, target, dist or rf.dists.Uniform(-2.0, 2.0))


def batch(prob, theta, est=rf.Quadrature()):
    return cpu_backend.quad1d_nodes_batch(prob.spec, est, theta)


def rel(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


CASES = [([1, 5, 4, 1], 6, "init"), ([1, 16, 16, 2], 4, "init"), ([1, 8, 6, 5, 1], 3, "init"),
         ([1, 3, 3, 1], 60, "half-integer"), ([1, 40, 30, 1], 2, "init")]


@pytest.mark.parametrize("widths,K,kind", CASES, ids=[f"{w}-{k}" for w, _, k in CASES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_ragged_grid_equals_cpu_partition(widths, K, kind, dtype):
    prob = problem(widths)
    theta = prob.init(K, seed=3) if kind == "init" else \
        np.random.default_rng(0).integers(-4, 5, size=(K, prob.num_params)) / 2.0
    theta = theta.astype(dtype)
    offset, x, w, y, zero = batch(prob, theta)
    if kind == "half-integer":   # nets whose pre-activations vanish on whole pieces: the flags travel
        assert zero is not None and zero.shape == (x.shape[0], sum(widths[1:-1])) and zero.any()
    r, g = harness(widths, theta, x[:, None], w, y, offset, zero)
    r0, g0 = prob.risk_and_grad(theta, rf.Quadrature(), backend="cpu")
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert rel(r, r0) <= tol and rel(g, g0) <= tol
    if dtype == np.float64:
        rn, gn = prob.risk_and_grad(theta, rf.Quadrature(), backend="numpy")
        assert rel(r, rn) <= 1e-12 and rel(g, gn) <= 1e-11


def test_nodes_batch_is_the_per_network_nodes_side_by_side():
    prob = problem([1, 9, 7, 1])
    theta = prob.init(5, seed=1)
    theta[2, 3] = np.nan
    offset, x, w, y, zero = batch(prob, theta)
    assert offset.dtype == np.int64 and offset.shape == (6,) and offset[0] == 0 and offset[-1] == x.shape[0]
    assert offset[3] == offset[2] and zero is None          # the non-finite network: no nodes
    for bad in (theta[:, 1:], theta[0], "theta"):   # refused, naming the argument
        with pytest.raises(ValueError, match=rf"theta: expected shape \(K, P\) with P = {prob.num_params}"):
            batch(prob, bad)
    with pytest.raises(ValueError, match="widths"):
        core.quad1d_nodes_batch([2, 4, 1], np.zeros((1, 17)), np.zeros(0), 2, spec=prob.spec.native())
    lo, hi, fixed, q = fixed_1d(prob.spec, rf.Quadrature())
    for k in (0, 1, 3, 4):
        xk, wk, yk = core.quad1d_nodes(list(prob.widths), theta[k], fixed, q, spec=prob.spec.native())
        sl = slice(offset[k], offset[k + 1])
        assert np.array_equal(x[sl], xk) and np.array_equal(w[sl], wk) and np.array_equal(y[sl], yk)


def test_ragged_grid_bits_independent_of_the_batch_and_of_the_gradient():
    prob = problem([1, 12, 10, 1])
    theta = prob.init(5, seed=7)
    offset, x, w, y, zero = batch(prob, theta, rf.Quadrature(order=12))
    assert np.all(np.diff(offset) > 64)                     # several work items (chunks of >= 32 nodes) each
    r, g = harness(list(prob.widths), theta, x[:, None], w, y, offset, zero)
    r_only, none = harness(list(prob.widths), theta, x[:, None], w, y, offset, zero, False)
    assert none is None and r_only.tobytes() == r.tobytes()
    for k in (0, 3):
        sl = slice(offset[k], offset[k + 1])
        rk, gk = harness(list(prob.widths), theta[k:k + 1], x[sl, None], w[sl], y[sl],
                         np.array([0, offset[k + 1] - offset[k]]), None)
        assert rk.tobytes() == r[k:k + 1].tobytes() and gk.tobytes() == g[k:k + 1].tobytes()


def test_ragged_grid_networks_without_nodes_and_no_networks():
    widths = [1, 4, 3, 1]
    P = rf.Layout(widths).num_params
    theta = np.random.default_rng(2).normal(size=(3, P))
    x, w, y = np.linspace(0, 1, 10)[:, None], np.full(10, 0.1), np.zeros((10, 1))
    r, g = harness(widths, theta, x, w, y, np.array([0, 0, 10, 10]))
    assert r[0] == 0 and r[2] == 0 and not g[[0, 2]].any() and r[1] > 0
    r, g = harness(widths, theta[:0], x[:0], w[:0], y[:0], np.array([0]))
    assert r.shape == (0,) and g.shape == (0, P)


def test_ragged_grid_refuses_bad_arguments():
    widths = [1, 4, 3, 1]
    P = rf.Layout(widths).num_params
    theta, x, w, y = np.zeros((2, P)), np.zeros((10, 1)), np.ones(10), np.zeros((10, 1))
    for bad, what in ((np.array([0, 10]), r"\(K \+ 1,\)"), (np.array([1, 5, 10]), ".*from 0 to N"),
                      (np.array([0, 6, 5]), ".*from 0 to N"), (np.array([0, 5, 9]), ".*from 0 to N")):
        with pytest.raises(ValueError, match="offset: expected " + what):
            harness(widths, theta, x, w, y, bad)
    with pytest.raises(ValueError, match=r"zero: expected shape \(N, hidden\)"):
        harness(widths, theta, x, w, y, np.array([0, 5, 10]), np.zeros((10, 6), np.uint8))
    with pytest.raises(ValueError, match=r"y: expected shape \(N, out\)"):
        harness(widths, theta, x, w, y[:-1], np.array([0, 5, 10]))


# ---- the cuda backend's partition route, with the harness standing in for the device -------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_cuda_backend_partition_route_like_cpu(host_cuda, dtype):  # noqa: F811
    prob = problem([1, 10, 8, 1], rf.dists.Uniform(0.0, 1.0))
    theta = prob.init(4, seed=5).astype(dtype)
    p = make_plan(prob.spec, rf.Quadrature(), "cuda", theta.dtype)
    assert p.route == "partition" and p.native and backend_for(p) is cuda_backend
    assert "ragged CUDA kernel" in p.explain()
    before = host_cuda.ragged
    r, g = backend_for(p).evaluate(p, prob.spec, theta, 0, True)
    assert host_cuda.ragged == before + 1                     # one launch for all networks
    r0, g0 = prob.risk_and_grad(theta, rf.Quadrature(), backend="cpu")
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert rel(r, r0) <= tol and rel(g, g0) <= tol
    bad = theta.copy()
    bad[1, 0] = np.inf                                        # a diverged network: NaN, alone
    rb, gb = cuda_backend.partition(prob.spec, rf.Quadrature(), bad, True)
    assert np.isnan(rb[1]) and np.isnan(gb[1]).all()
    keep = [0, 2, 3]
    assert np.array_equal(rb[keep], r[keep]) and np.array_equal(gb[keep], g[keep])
    r0n, g0n = cuda_backend.partition(prob.spec, rf.Quadrature(), theta[:0], True)   # no networks
    assert r0n.shape == (0,) and g0n.shape == (0, prob.num_params)
    with pytest.raises(ValueError, match=rf"theta: expected shape \(K, {prob.num_params}\)"):
        cuda_backend.partition(prob.spec, rf.Quadrature(), theta[:, 1:], True)


def test_cuda_partition_keeps_the_python_loop_for_a_function_target(host_cuda):  # noqa: F811
    prob = rf.Problem([1, 6, 5, 1], rf.targets.Function(lambda x: np.sin(3 * x), out_dim=1),
                      rf.dists.Uniform(0.0, 1.0))
    theta = prob.init(2, seed=0)
    est = rf.Quadrature(exact=False)
    p = make_plan(prob.spec, est, "cuda", theta.dtype)
    assert p.route == "partition" and not p.native and "in Python" in p.explain()
    before = host_cuda.ragged
    r, g = backend_for(p).evaluate(p, prob.spec, theta, 0, True)
    assert host_cuda.ragged == before
    r0, g0 = prob.risk_and_grad(theta, est, backend="cpu")
    assert rel(r, r0) <= 1e-12 and rel(g, g0) <= 1e-12
