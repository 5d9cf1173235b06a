"""The CUDA dense risk/gradient grid, run on the host (issue 12, part 5).

``_core._harness_risk_grad`` runs the grid of cuda/src/risk_grad.cu sequentially (blocks, threads, the
phases between barriers in order) with the same per-thread functions as the kernels
(reluflow/risk_grad_grid.h). Judged here against the cpu backend and the numpy reference: float64 to
1e-12 relative, float32 theta within a band against the float64 reference on the float32 values;
both paths (two-pass shallow, per-item deep); N not a multiple of the block, several node blocks,
grid-stride nodes and several chunks; bitwise determinism, independence of the batch, the risk the
same with and without the gradient; relu'(0) = 0. This proves the indexing and the reduction order
without a GPU; tests/test_cuda.py runs the kernels themselves where a device exists.
"""
import numpy as np
import pytest
from conftest import make_data

from reluflow.backends import reference as ref
from reluflow.layout import Layout

core = pytest.importorskip("reluflow._core")
harness = core._harness_risk_grad
BLOCK = 128          # grid::kThreads
GRID_STRIDE_N = BLOCK * 1024 + 3 * BLOCK + 5   # more nodes than blocks x threads: grid-stride loop
TOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}

SHAPES = [  # (widths, K, N)
    ([1, 7, 1], 1, 1),
    ([1, 7, 1], 3, 333),
    ([1, 200, 1], 3, 1000),
    ([2, 9, 1], 1, 129),
    ([2, 130, 2], 3, 5000),     # two neuron blocks, two pass-2 chunks
    ([1, 5, 2], 3, 9001),       # three chunks, the last one short
    ([2, 8, 3], 1, 257),
    ([8, 4, 3], 3, 300),        # the largest shallow moments (d = 8, out = 3)
    ([1, 6, 5, 1], 1, 300),     # deep: ten items of 32 nodes, the last one short
    ([2, 7, 6, 2], 3, 1000),
    ([2, 5, 4, 3, 2], 3, 777),
    ([1, 4, 9], 3, 200),        # out > 3: the deep path takes shallow widths too
    ([9, 3, 1], 1, 100),        # d > 8: likewise
]


def rel(a, b):
    return np.linalg.norm(np.asarray(a) - b) / max(np.linalg.norm(b), 1e-300)


def paths_for(widths):
    shallow = len(widths) == 3 and widths[0] <= 8 and widths[2] <= 3
    return ["auto", "shallow", "deep"] if shallow else ["auto", "deep"]


@pytest.mark.parametrize("widths,K,N", SHAPES, ids=[f"{w}-K{K}-N{N}" for w, K, N in SHAPES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_harness_equals_cpu_and_reference(widths, K, N, dtype):
    lay, theta, x, w, y = make_data(widths, K, N, dtype, seed=N)
    r_ref, g_ref = ref.risk_and_grad(lay, theta.astype(np.float64), x, w, y)
    r_cpu, g_cpu = core.risk_and_grad(widths, theta, x, w, y, True)
    tol = TOL[np.dtype(dtype)]
    for path in paths_for(widths):
        r, g = harness(widths, theta, x, w, y, True, path)
        assert r.shape == (K,) and g.shape == (K, lay.num_params) and r.dtype == g.dtype == np.float64
        assert np.all(np.isfinite(r)) and np.all(np.isfinite(g))
        assert rel(r, r_ref) <= tol and rel(g, g_ref) <= tol, path
        assert rel(r, r_cpu) <= 2 * tol and rel(g, g_cpu) <= 2 * tol, path
        for k in range(K):  # each network on its own, not only the batch's norm
            assert rel(g[k], g_ref[k]) <= tol, (path, k)


def test_grid_stride_nodes_and_many_chunks():
    """More nodes than pass 1's blocks x threads (each thread takes several nodes) and the maximum
    number of pass-2 chunks."""
    widths = [1, 3, 1]
    lay, theta, x, w, y = make_data(widths, 1, GRID_STRIDE_N, np.float64, seed=5)
    r_ref, g_ref = ref.risk_and_grad(lay, theta, x, w, y)
    for path in ("shallow", "deep"):
        r, g = harness(widths, theta, x, w, y, True, path)
        assert rel(r, r_ref) <= 1e-12 and rel(g, g_ref) <= 1e-12, path


def test_relu_derivative_at_zero_is_zero():
    """Pre-activations exactly 0 (x = 0 or b = 0 with w = 0): relu'(0) = 0, as the cpu backend."""
    widths = [2, 4, 1]
    lay = Layout(widths)
    theta = np.zeros((1, lay.num_params))
    W, b, V, c = lay.unpack(theta)[0][0][0], lay.unpack(theta)[0][1][0], lay.unpack(theta)[1][0][0], None
    W[:] = [[1.0, -1.0], [0.5, 0.0], [0.0, 0.0], [-2.0, 1.0]]
    V[:] = [[1.0, -1.0, 2.0, 0.5]]
    theta[0, -1] = 0.25
    x = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 3.0], [0.3, -0.2], [-1.0, 0.0]])
    w, y = np.full(5, 0.2), np.array([[1.0], [-1.0], [0.5], [0.0], [2.0]])
    r_cpu, g_cpu = core.risk_and_grad(widths, theta, x, w, y, True)
    r_ref, g_ref = ref.risk_and_grad(lay, theta, x, w, y)
    np.testing.assert_allclose(g_cpu, g_ref, rtol=1e-14, atol=1e-15)
    for path in ("shallow", "deep"):
        r, g = harness(widths, theta, x, w, y, True, path)
        np.testing.assert_allclose(r, r_ref, rtol=1e-14)
        np.testing.assert_allclose(g, g_ref, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("widths", [[2, 130, 2], [2, 7, 6, 2]], ids=["shallow", "deep"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_bitwise_deterministic_batch_independent_and_risk_without_grad(widths, dtype):
    lay, theta, x, w, y = make_data(widths, 3, 5000, dtype, seed=3)
    r, g = harness(widths, theta, x, w, y, True, "auto")
    r2, g2 = harness(widths, theta, x, w, y, True, "auto")
    assert r.tobytes() == r2.tobytes() and g.tobytes() == g2.tobytes()
    r_only, none = harness(widths, theta, x, w, y, False, "auto")
    assert none is None and r_only.tobytes() == r.tobytes()
    for k in range(3):  # a network's bits do not depend on the other networks of its batch
        rk, gk = harness(widths, theta[k:k + 1], x, w, y, True, "auto")
        assert rk.tobytes() == r[k:k + 1].tobytes() and gk.tobytes() == g[k:k + 1].tobytes()
    # and on its position in the batch
    rr, gr = harness(widths, theta[::-1].copy(), x, w, y, True, "auto")
    assert rr[::-1].tobytes() == r.tobytes() and gr[::-1].tobytes() == g.tobytes()


def test_no_nodes_and_no_networks():
    widths = [2, 5, 1]
    lay, theta, x, w, y = make_data(widths, 3, 0, np.float64)
    for path in ("shallow", "deep"):
        r, g = harness(widths, theta, x, w, y, True, path)
        assert r.tolist() == [0.0] * 3 and not np.any(g)
    r, g = harness(widths, theta[:0], x, w, y, True)
    assert r.shape == (0,) and g.shape == (0, lay.num_params)


def test_arguments_are_checked():
    widths = [2, 5, 1]
    lay, theta, x, w, y = make_data(widths, 2, 10, np.float64)
    with pytest.raises(ValueError, match="path"):
        harness(widths, theta, x, w, y, True, "fast")
    with pytest.raises(ValueError, match="path: 'shallow'"):
        harness([2, 5, 4, 1], np.zeros((1, Layout([2, 5, 4, 1]).num_params)), x, w, y, True, "shallow")
    with pytest.raises(ValueError, match="theta"):
        harness(widths, theta[:, :-1], x, w, y)
    with pytest.raises(ValueError, match="x"):
        harness(widths, theta, x[:, :1], w, y)
    with pytest.raises(ValueError, match="w"):
        harness(widths, theta, x, w[:-1], y)
    with pytest.raises(ValueError, match="y"):
        harness(widths, theta, x, w, y[:-1])


# ---- the cuda backend's Python plumbing, with the harness standing in for the device -------------

import types  # noqa: E402

import reluflow as rf  # noqa: E402
from reluflow.backends import get as backend_for  # noqa: E402
from reluflow.backends import cpu as cpu_backend  # noqa: E402
from reluflow.backends import cuda as cuda_backend  # noqa: E402
from reluflow.plan import plan as make_plan  # noqa: E402


class HarnessExtension:
    """_cuda.risk_and_grad's signature, computed by the host harness into the given outputs."""

    calls = 0
    kernel_targets = 0   # calls with the target evaluated in the kernel (y None, spec given)

    @classmethod
    def risk_and_grad(cls, widths, theta, x, w, y, *, risk, grad, path, stream, spec):
        cls.calls += 1
        cls.kernel_targets += y is None
        for name, a in (("theta", theta), ("x", x), ("w", w), ("y", y)):
            assert a is None or a.flags.c_contiguous, name
        r, g = harness(widths, theta, x, w, y, grad is not None, path, spec=spec)
        risk[...] = r
        if grad is not None:
            grad[...] = g


class NumpyAsCupy(types.SimpleNamespace):
    """numpy under CuPy's name, with a current stream: enough of CuPy for backends/cuda.py."""

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.fixture
def host_cuda(monkeypatch):
    fake_cp = NumpyAsCupy(cuda=types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(ptr=0)))
    monkeypatch.setattr(cuda_backend, "_modules", lambda: (HarnessExtension, fake_cp))
    return HarnessExtension


HAT = rf.targets.PiecewiseLinear([0.0, 0.5, 1.0], [0.0, 1.0, 0.0])


@pytest.mark.parametrize("estimator", [rf.MonteCarlo(3000, seed=1), rf.QuasiMonteCarlo(1024, seed=2),
                                       rf.MonteCarlo(500, seed=3, resample=True), rf.Quadrature(),
                                       rf.Points(np.linspace(0.0, 1.0, 77)[:, None])], ids=repr)
@pytest.mark.parametrize("widths", [[1, 12, 1], [2, 9, 2], [1, 5, 4, 1]])
def test_cuda_backend_evaluates_every_route_like_cpu(host_cuda, widths, estimator):
    """Every plan of the cuda backend (dense, tensor_grid, the partition loop) gives the cpu backend's
    values; the exact sweeps stay on the cpu backend."""
    if isinstance(estimator, rf.Points) and widths[0] != 1:
        estimator = rf.Points(np.random.default_rng(0).uniform(size=(77, widths[0])))
    target = HAT if widths[0] == 1 else rf.targets.Affine(np.ones((widths[-1], widths[0])), np.zeros(widths[-1]))
    prob = rf.Problem(widths, target)
    theta = prob.init(3, seed=4)
    p = make_plan(prob.spec, estimator, "cuda", theta.dtype)
    assert backend_for(p) is cuda_backend
    assert p.native == (p.route != "partition") and "CUDA" in p.explain()
    before, in_kernel = host_cuda.calls, host_cuda.kernel_targets
    r, g = backend_for(p).evaluate(p, prob.spec, theta, 2, True)
    assert host_cuda.calls > before
    # native targets in the kernel on the dense routes; the partition path gives its y
    assert (host_cuda.kernel_targets > in_kernel) == (p.route != "partition")
    r0, g0 = cpu_backend.evaluate(make_plan(prob.spec, estimator, "cpu", theta.dtype, "dense"), prob.spec, theta, 2,
                                  True)
    assert rel(r, r0) <= 1e-12 and rel(g, g0) <= 1e-12
    r1, none = backend_for(p).evaluate(p, prob.spec, theta, 2, False)
    assert none is None and np.array_equal(r1, r)


def test_cuda_backend_checks_arguments(host_cuda):
    lay = Layout([2, 5, 1])
    theta, x, w, y = np.zeros((2, lay.num_params)), np.zeros((10, 2)), np.ones(10), np.zeros((10, 1))
    with pytest.raises(ValueError, match="theta"):
        cuda_backend.risk_and_grad(lay, theta[:, 1:], x, w, y)
    with pytest.raises(ValueError, match="x"):
        cuda_backend.risk_and_grad(lay, theta, x[:, :1], w, y)
    with pytest.raises(ValueError, match="w"):
        cuda_backend.risk_and_grad(lay, theta, x, w[1:], y)
    with pytest.raises(ValueError, match="y"):
        cuda_backend.risk_and_grad(lay, theta, x, w, y[1:])
    with pytest.raises(ValueError, match="path"):
        cuda_backend.risk_and_grad(lay, theta, x, w, y, path="fast")
    r, g = cuda_backend.risk_and_grad(Layout([1, 3, 1]), np.ones((1, 10), np.float32), np.ones(4), np.ones(4),
                                      np.ones(4))   # (N,) x and y of a 1-D, 1-output net
    assert r.shape == (1,) and g.shape == (1, 10)


def test_cuda_backend_unavailable_is_a_clear_error():
    ext, why = rf.registry.cuda_extension()
    if ext is not None:
        pytest.skip("a CUDA device is visible here")
    with pytest.raises(ValueError, match="backend: 'cuda' is not available"):
        cuda_backend.risk_and_grad(Layout([1, 3, 1]), np.ones((1, 10)), np.ones((4, 1)), np.ones(4), np.ones((4, 1)))


# ---- the target evaluated in the kernel (targets.h) --------------------------------------------------

TARGETS = {
    "affine": (lambda d, out: rf.targets.Affine(np.arange(1.0, 1.0 + out * d).reshape(out, d) / 7, np.linspace(-1, 1, out))),
    "piecewise_linear": (lambda d, out: rf.targets.PiecewiseLinear([0.0, 0.3, 0.7, 1.0], [0.0, 1.0, -0.5, 0.2])),
    "piecewise_polynomial": (lambda d, out: rf.targets.PiecewisePolynomial(
        [-0.5, 0.2, 1.5], np.array([[[1.0, -1.0], [2.0, 0.5], [0.0, 3.0]], [[0.5, 0.0], [-1.0, 1.0], [1.0, 1.0]]]))),
}
TARGET_CASES = [("affine", [2, 9, 2]), ("affine", [3, 5, 4, 1]), ("affine", [1, 6, 5]),
                ("piecewise_linear", [1, 11, 1]), ("piecewise_linear", [1, 4, 3, 1]),
                ("piecewise_polynomial", [1, 7, 2]), ("piecewise_polynomial", [1, 5, 5, 2])]


@pytest.mark.parametrize("kind,widths", TARGET_CASES, ids=[f"{k}-{w}" for k, w in TARGET_CASES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_target_in_the_kernel_equals_given_values(kind, widths, dtype):
    """y None and spec=: targets.h per node in the grid gives the bits of the values made by the cpu
    backend (the same header on the host), on both paths."""
    prob = rf.Problem(widths, TARGETS[kind](widths[0], widths[-1]), rf.dists.Uniform([-0.7] * widths[0], [1.3] * widths[0]))
    est = rf.MonteCarlo(3001, seed=7)
    nodes = cpu_backend.point_nodes(prob.spec, est)
    y = cpu_backend.target_values(prob.spec, nodes)
    theta = prob.init(3, seed=1).astype(dtype)
    for path in paths_for(widths):
        r, g = harness(widths, theta, nodes.x, nodes.w, y, True, path)
        r_t, g_t = harness(widths, theta, nodes.x, nodes.w, None, True, path, spec=prob.spec.native())
        assert r_t.tobytes() == r.tobytes() and g_t.tobytes() == g.tobytes(), path


@pytest.mark.parametrize("student,teacher", [([1, 9, 1], [1, 5, 1]), ([2, 6, 2], [2, 300, 2]),
                                             ([2, 5, 4, 2], [2, 7, 2])], ids=["1d", "2d-wide", "deep-student"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_shallow_teacher_in_the_kernel(student, teacher, dtype):
    """A shallow teacher evaluated per node by net.h (float64) in the grid: equal to the values of the
    cpu backend's realization (its SIMD kernel sums in another order: 1e-12, not bits)."""
    t_theta = np.random.default_rng(5).normal(size=Layout(teacher).num_params)
    prob = rf.Problem(student, rf.targets.Teacher(teacher, t_theta), rf.dists.Uniform([-1.0] * student[0], [1.0] * student[0]))
    nodes = cpu_backend.point_nodes(prob.spec, rf.QuasiMonteCarlo(2048, seed=3))
    y = cpu_backend.target_values(prob.spec, nodes)
    theta = prob.init(2, seed=6).astype(dtype)
    r0, g0 = harness(student, theta, nodes.x, nodes.w, y, True)
    r, g = harness(student, theta, nodes.x, nodes.w, None, True, spec=prob.spec.native())
    assert rel(r, r0) <= 1e-12 and rel(g, g0) <= 1e-12


def test_target_in_the_kernel_needs_a_kernel_target():
    widths = [1, 4, 1]
    lay, theta, x, w, y = make_data(widths, 1, 10, np.float64)
    with pytest.raises(ValueError, match="y: required"):
        harness(widths, theta, x, w, None)
    deep_teacher = rf.Problem(widths, rf.targets.Teacher([1, 3, 2, 1], np.linspace(-1.0, 1.0, 17)))
    with pytest.raises(ValueError, match="y: required unless the target is a shallow teacher"):
        harness(widths, theta, x, w, None, spec=deep_teacher.spec.native())
    assert not cuda_backend.kernel_target(deep_teacher.spec)
    assert cuda_backend.kernel_target(rf.Problem(widths, rf.targets.Teacher([1, 3, 1], np.ones(10))).spec)
    function = rf.Problem(widths, rf.targets.Function(np.sin))
    with pytest.raises(ValueError, match="target_kind"):
        harness(widths, theta, x, w, None, spec=function.spec.native())
    assert not cuda_backend.kernel_target(function.spec)


@pytest.mark.parametrize("teacher", [[2, 4, 1], [2, 3, 3, 1]], ids=["shallow-teacher", "deep-teacher"])
def test_cuda_backend_teacher_in_the_kernel_or_on_the_host(host_cuda, teacher):
    prob = rf.Problem([2, 9, 1], rf.targets.Teacher(teacher, np.linspace(-1.0, 1.0, Layout(teacher).num_params)))
    theta = prob.init(2, seed=1)
    est = rf.MonteCarlo(2000, seed=4)
    p = make_plan(prob.spec, est, "cuda", theta.dtype)
    in_kernel = host_cuda.kernel_targets
    r, g = backend_for(p).evaluate(p, prob.spec, theta, 0, True)
    assert (host_cuda.kernel_targets > in_kernel) == (len(teacher) == 3)
    r0, g0 = cpu_backend.evaluate(make_plan(prob.spec, est, "cpu", theta.dtype), prob.spec, theta, 0, True)
    assert rel(r, r0) <= 1e-12 and rel(g, g0) <= 1e-12
