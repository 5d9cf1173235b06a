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

    ragged = 0

    @classmethod
    def risk_and_grad_ragged(cls, widths, theta, x, w, y, offset, zero=None, *, risk, grad, stream):
        """_cuda.risk_and_grad_ragged's contract, by the host run of its grid (_core._harness_risk_grad_ragged)."""
        cls.ragged += 1
        for name, a in (("theta", theta), ("x", x), ("w", w), ("y", y), ("zero", zero)):
            assert a is None or a.flags.c_contiguous, name
        assert isinstance(offset, np.ndarray) and offset.dtype == np.int64 and offset.shape == (theta.shape[0] + 1,)
        r, g = core._harness_risk_grad_ragged(widths, theta, x, w, y, offset, zero, grad is not None)
        risk[...] = r
        if grad is not None:
            grad[...] = g

    sweeps = 0

    @classmethod
    def point_sweep(cls, widths, theta, x, w, y, *, risk, grad, stream):
        """_cuda.point_sweep's contract, by the host run of its grid (_core._harness_point_sweep)."""
        cls.sweeps += 1
        for name, a in (("theta", theta), ("x", x), ("w", w), ("y", y)):
            assert a.dtype == np.float64 and a.flags.c_contiguous, name
        assert x.ndim == 1 and y.shape == (x.shape[0], widths[2])
        r, g = core._harness_point_sweep(theta, widths[2], x, w, y)
        risk[...] = r
        if grad is not None:
            grad[...] = g

    @classmethod
    def exact_sweep(cls, widths, theta, *, risk, grad, spec, stream):
        """_cuda.exact_sweep's contract, by the host run of its grid (_core._harness_exact_sweep)."""
        cls.sweeps += 1
        assert theta.dtype == np.float64 and theta.flags.c_contiguous and widths[2] <= 3
        r, g = core._harness_exact_sweep(theta, widths[2], spec=spec)
        risk[...] = r
        if grad is not None:
            grad[...] = g


class NumpyAsCupy(types.SimpleNamespace):
    """numpy under CuPy's name, with a current stream: enough of CuPy for backends/cuda.py."""

    asnumpy = staticmethod(np.asarray)

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
    """Every plan of the cuda backend (dense, tensor_grid, the ragged partition kernel, the exact sweep)
    gives the cpu backend's values."""
    if isinstance(estimator, rf.Points) and widths[0] != 1:
        estimator = rf.Points(np.random.default_rng(0).uniform(size=(77, widths[0])))
    target = HAT if widths[0] == 1 else rf.targets.Affine(np.ones((widths[-1], widths[0])), np.zeros(widths[-1]))
    prob = rf.Problem(widths, target)
    theta = prob.init(3, seed=4)
    p = make_plan(prob.spec, estimator, "cuda", theta.dtype)
    assert backend_for(p) is cuda_backend
    assert p.native and "CUDA" in p.explain()
    before, in_kernel, sweeps, ragged = host_cuda.calls, host_cuda.kernel_targets, host_cuda.sweeps, host_cuda.ragged
    r, g = backend_for(p).evaluate(p, prob.spec, theta, 2, True)
    assert host_cuda.calls + host_cuda.sweeps + host_cuda.ragged > before + sweeps + ragged
    assert (host_cuda.sweeps > sweeps) == (p.route == "exact_sweep")
    assert (host_cuda.ragged > ragged) == (p.route == "partition")
    # native targets in the kernel on the dense routes; the partition path gives its y
    assert (host_cuda.kernel_targets > in_kernel) == (p.route in ("dense", "tensor_grid"))
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


# ---- gradient descent with the whole loop on the device (cuda/src/gd_loop.cu, issue 13) --------------
# _core._harness_gd_step runs the update kernel's grid (one block per network, reluflow/gd_step.h) on
# the host; judged against an independent numpy step written from SPEC §4 and flows.py's watch.

from reluflow import _native_sampling  # noqa: E402
from reluflow import flows  # noqa: E402

gd_step = core._harness_gd_step
RUNNING, GREW, RISK_NAN, GRAD_NAN, OVER, PARAMS_NAN = range(6)
STAGES = {"gd": 1, "euler": 1, "heun": 2, "rk4": 4}


def fresh_state(K):
    return {"active": np.ones(K, np.uint8), "reason": np.zeros(K, np.uint8), "growth": np.zeros(K),
            "risk0": np.full(K, np.nan), "last_risk": np.full(K, np.nan), "last_gn": np.full(K, np.nan),
            "energy": np.zeros(K), "stop_iter": np.full(K, -1, np.int64)}


def numpy_gd_step(theta, risk, grad, state, i, update, h, max_abs, max_growth, frozen=None):
    """One GD step of every network in plain numpy, network by network (SPEC §4; the watch of
    flows._Watch: the risk test, then the gradient's, then the new parameters')."""
    dt = theta.dtype
    th, st = theta.copy(), {k: v.copy() for k, v in state.items()}
    g = grad.astype(dt)
    if frozen is not None:
        g[:, frozen] = 0
    r = risk.astype(dt).astype(np.float64)
    rec_theta = theta.copy()
    for k in range(theta.shape[0]):
        if not st["active"][k]:
            continue
        if i == 0:
            st["risk0"][k] = r[k]
        if not np.isfinite(r[k]):
            why = RISK_NAN
        elif st["risk0"][k] > 0 and r[k] > max_growth * st["risk0"][k]:
            why = GREW
        else:
            why = RUNNING
        if why != RISK_NAN and not np.all(np.isfinite(g[k])):
            why = GRAD_NAN
        if why in (RUNNING, GREW):
            st["last_risk"][k] = r[k]
            with np.errstate(over="ignore"):
                st["last_gn"][k] = np.sqrt(np.sum(g[k].astype(np.float64) ** 2))
        if why != RUNNING:
            st["active"][k], st["reason"][k], st["stop_iter"][k] = 0, why, i
            if why == GREW:
                st["growth"][k] = r[k] / st["risk0"][k]
            continue
        if not update:
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            new = th[k] - dt.type(h) * g[k]
        if not np.all(np.isfinite(new)):
            why = PARAMS_NAN
        elif np.any(np.abs(new) > max_abs):
            why = OVER
        if why == RUNNING:
            th[k] = new
            st["energy"][k] += h * st["last_gn"][k] ** 2
        else:
            st["active"][k], st["reason"][k], st["stop_iter"][k] = 0, why, i + 1
    return th, st, rec_theta


def gd_case(dtype, P=300, K=9):
    """K networks of P parameters (P > one block of threads: strided), one per watch outcome."""
    rng = np.random.default_rng(5)
    theta = rng.normal(size=(K, P)).astype(dtype)
    grad = rng.normal(size=(K, P))
    risk = rng.uniform(1.0, 2.0, size=K)
    risk[1] = np.nan                 # risk not finite
    grad[2, 17] = np.inf             # gradient not finite
    grad[3, 250] = 1e9               # the new parameter beyond max_abs
    grad[4, 3] = 1e308 if dtype == np.float64 else 1e38   # h * G overflows: the new parameter not finite
    risk[5] = 0.0                    # a zero start: only finiteness is checked later
    theta[6, 100] = 1e4              # |theta| large but within max_abs
    return theta, risk, grad


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_gd_step_harness_equals_numpy(dtype):
    theta, risk, grad = gd_case(dtype)
    K, P = theta.shape
    frozen = np.zeros(P, bool)
    frozen[[0, 129, 299]] = True
    h, max_abs, max_growth = 10.0, 1e6, 50.0
    for fz in (None, frozen):
        for record in (False, True):
            state = fresh_state(K)
            got = gd_step(theta, risk, grad, state=state, i=0, update=True, h=h, max_abs=max_abs,
                          max_growth=max_growth, frozen=fz, record=record)
            th, st, rec_theta = numpy_gd_step(theta, risk, grad, state, 0, True, h, max_abs, max_growth, fz)
            assert got["theta"].dtype == dtype and got["theta"].tobytes() == th.tobytes()
            for key in ("active", "reason", "growth", "risk0", "last_risk", "stop_iter"):
                np.testing.assert_array_equal(got[key], st[key], err_msg=key)
            # |G| (and the energy h |G|^2): a block tree instead of numpy's pairwise sum: equal to rounding
            for key in ("last_gn", "energy"):
                np.testing.assert_allclose(got[key], st[key], rtol=1e-14, equal_nan=True, err_msg=key)
            assert list(got["reason"]) == [RUNNING, RISK_NAN, GRAD_NAN, OVER, PARAMS_NAN, RUNNING, RUNNING,
                                           RUNNING, RUNNING]
            assert list(got["stop_iter"]) == [-1, 0, 0, 1, 1, -1, -1, -1, -1]
            if fz is not None:   # frozen parameters keep their values
                np.testing.assert_array_equal(got["theta"][:, frozen], theta[:, frozen])
            if record:   # the records: theta_i, and the watch's values before the update's energy
                assert got["rec_theta"].tobytes() == rec_theta.tobytes()
                np.testing.assert_array_equal(got["rec_risk"], st["last_risk"])
                np.testing.assert_array_equal(got["rec_energy"], state["energy"])
            else:
                assert got["rec_risk"] is None and got["rec_theta"] is None


def test_gd_step_harness_growth_later_steps_and_last_step():
    """risk0 is set at i == 0 only; a later risk above max_growth x risk0 freezes (growth recorded);
    a frozen network is left alone; update=False (the last state) evaluates and records only."""
    rng = np.random.default_rng(2)
    theta, grad = rng.normal(size=(4, 40)), rng.normal(size=(4, 40))
    risk = np.array([1.0, 2.0, 3.0, 0.0])
    state = fresh_state(4)
    s0 = gd_step(theta, risk, grad, state=state, i=0, update=True, h=1e-3, max_abs=1e8, max_growth=10.0)
    s0.pop("theta")
    state1 = {k: s0[k] for k in state}
    risk1 = np.array([5.0, 25.0, 3.0, 1e300])
    th1, st1, _ = numpy_gd_step(theta, risk1, grad, state1, 7, False, 1e-3, 1e8, 10.0)
    got = gd_step(theta, risk1, grad, state=state1, i=7, update=False, h=1e-3, max_abs=1e8, max_growth=10.0,
                  record=True)
    assert got["theta"].tobytes() == theta.tobytes() == th1.tobytes()   # the last state is not updated
    np.testing.assert_array_equal(got["reason"], st1["reason"])
    assert got["reason"][1] == GREW and got["growth"][1] == 12.5 and got["stop_iter"][1] == 7
    assert got["reason"][3] == RUNNING   # started at risk 0: only finiteness is checked
    np.testing.assert_array_equal(got["risk0"], [1.0, 2.0, 3.0, 0.0])
    np.testing.assert_array_equal(got["rec_risk"], [5.0, 25.0, 3.0, 1e300])
    # a frozen network: nothing changes, its records repeat its last values
    again = gd_step(theta, np.full(4, np.nan), grad * np.nan, state={k: got[k] for k in state}, i=8, update=True,
                    h=1e-3, max_abs=1e8, max_growth=10.0, record=True)
    assert again["rec_risk"][1] == 25.0 and again["reason"][1] == GREW and again["stop_iter"][1] == 7
    assert list(again["reason"]) == [RISK_NAN, GREW, RISK_NAN, RISK_NAN]


def test_gd_step_harness_checks_arguments():
    rng = np.random.default_rng(3)
    theta, risk, grad = rng.normal(size=(2, 10)), np.ones(2), rng.normal(size=(2, 10))
    kw = dict(i=0, update=True, h=0.1, max_abs=1e8, max_growth=1e6)
    with pytest.raises(ValueError, match="grad"):
        gd_step(theta, risk, grad[:, 1:], state=fresh_state(2), **kw)
    with pytest.raises(ValueError, match="risk"):
        gd_step(theta, risk[1:], grad, state=fresh_state(2), **kw)
    with pytest.raises(ValueError, match="energy"):
        gd_step(theta, risk, grad, state={k: v for k, v in fresh_state(2).items() if k != "energy"}, **kw)
    with pytest.raises(ValueError, match="frozen"):
        gd_step(theta, risk, grad, state=fresh_state(2), frozen=np.zeros(3, bool), **kw)


@pytest.mark.parametrize("steps,record_every,slots", [(10, 3, 2), (10, 1, 4), (0, 1, 2), (100, 7, 5), (9, 3, 3)])
def test_gd_block_planning(steps, record_every, slots):
    """The device loop's blocks cover 0..steps without gaps, hold at most `slots` records each, and
    their record counts add up to the run's (flow_num_records)."""
    total = len(flows._record_indices(steps, record_every))
    for want in (1, 2, 5, 1000):
        i, seen = 0, 0
        while i <= steps:
            end, n = core._harness_gd_block_end(i, want, steps, record_every, slots)
            assert i < end <= steps + 1 and n <= slots
            assert n == sum(1 for j in range(i, end) if j % record_every == 0 or j == steps)
            seen, i = seen + n, end
        assert seen == total


# ---- the whole device loop emulated on the host: the flows/plan/backend plumbing of loop "CUDA" ------

class RunningSet:
    """The device loops' evaluation of the running networks only (cuda/src/loop_common.cuh RunningSet) on
    the host: every network until, at a block boundary, at most 3/4 of the evaluated ones still run
    (rows::compact_now); from then on only those rows are gathered (_core._harness_rows), evaluated and
    scattered back. The rows of the others are NaN here, so that a loop reading them would show it."""

    def __init__(self, K):
        self.K, self.list, self.compactions = K, None, 0

    def update(self, running):
        n = self.K if self.list is None else len(self.list)
        if running.any() and 4 * int(running.sum()) <= 3 * n:
            self.list = np.flatnonzero(running).astype(np.int64)
            self.compactions += 1

    def evaluate(self, dense, theta):
        """dense(theta rows) -> (risk, grad), for the listed rows only once compacted."""
        if self.list is None:
            return dense(theta)
        r, g = dense(core._harness_rows("gather", self.list, theta))
        P = theta.shape[1]
        return (core._harness_rows("scatter", self.list, r, np.full(self.K, np.nan)),
                core._harness_rows("scatter", self.list, g, np.full((self.K, P), np.nan)))


class HarnessLoop(HarnessExtension):
    """_cuda.gd_loop's signature and contract, run on the host: the step of gd_loop.cu (nodes of the
    step, the dense grid of _harness_risk_grad, the update grid of _harness_gd_step; for Heun / RK4 the
    watch of _harness_gd_step without update, then per stage _harness_rk_stage and the dense grid at
    the stage points, then _harness_rk_update) in blocks planned by _harness_gd_block_end with few
    record slots (so that a run takes several blocks), records per block, progress (and a stop) at
    block boundaries, the early end once every network is frozen."""

    loops = 0
    WANT, SLOTS = 4, 3

    @classmethod
    def gd_loop(cls, widths, theta, *, x=None, w=None, y=None, resample=False, seed=0, n=0, spec=None, steps,
                start_step=0, record_every=1, h=None, h_fn=None, max_abs=1e8, max_growth=1e6, frozen=None,
                record_theta=False, progress=None, path="auto", stream=0, method="gd", rise_tol=-1.0,
                normalized=False, target_fn=None):
        assert method in cuda_backend.LOOP_METHODS
        cls.loops += 1
        K, P = theta.shape
        stages = STAGES[method]
        total = len(flows._record_indices(steps, record_every))
        state = fresh_state(K)
        state["rose"] = np.zeros(K, np.uint8)
        rec = {"risk": [], "grad_norm": [], "energy": [], "thetas": []}
        fz = None if frozen is None else np.asarray(frozen, bool)
        running = RunningSet(K)
        evaluations, blocks, i, interrupted, done = 0, 0, 0, False, steps
        while i <= steps:
            end, _ = core._harness_gd_block_end(i, cls.WANT, steps, record_every, cls.SLOTS)
            hb = None if h_fn is None else h_fn(i, min(end, steps) - i)
            for it in range(i, end):
                if resample:
                    x = core.mc_nodes(seed, start_step + it, n, spec=spec)
                    w = np.full(n, 1.0 / n)
                # the target: in the kernel, or (resampling a Function / deep teacher) the callback per step
                kernel_spec = spec if ((resample and target_fn is None) or (not resample and y is None)) else None
                yy = (None if target_fn is None else target_fn(x)) if resample else y
                dense = lambda th: harness(widths, th, x, w, yy, True, path, spec=kernel_spec)  # noqa: E731
                risk, grad = running.evaluate(dense, theta)
                if normalized:   # the projection kernel after every dense evaluation
                    grad = core._harness_project(widths, theta, grad)
                lr = 0.0 if it == steps else (hb[it - i] if hb is not None else h[0] if len(h) == 1 else h[it])
                record = it % record_every == 0 or it == steps
                out = gd_step(theta, risk, grad, state=state, i=it, update=it < steps and stages == 1 and not normalized, h=lr,
                              max_abs=max_abs, max_growth=max_growth, frozen=fz, record=record, rise_tol=rise_tol)
                theta[...] = out["theta"]
                state = {k: out[k] for k in state}
                if (stages > 1 or normalized) and it < steps:
                    ks = [grad]
                    for st in range(1, stages):
                        stage = core._harness_rk_stage(theta, ks, stage=st, h=lr, method=method, frozen=fz)
                        k = running.evaluate(dense, stage)[1]
                        ks.append(core._harness_project(widths, stage, k) if normalized else k)
                    if normalized:   # the retracting update (gradient descent: Euler's update)
                        up = core._harness_nm_update(widths, theta, ks, state=state, i=it, h=lr,
                                                     method="euler" if method == "gd" else method,
                                                     max_abs=max_abs, frozen=fz)
                    else:
                        up = core._harness_rk_update(theta, ks, state=state, i=it, h=lr, method=method,
                                                     max_abs=max_abs, frozen=fz)
                    theta[...] = up["theta"]
                    state = {k: up[k] for k in state}
                if record:
                    rec["risk"].append(out["rec_risk"])
                    rec["grad_norm"].append(out["rec_gn"])
                    rec["energy"].append(out["rec_energy"])
                    rec["thetas"].append(out["rec_theta"])
            evaluations += sum(stages if it < steps else 1 for it in range(i, end))
            blocks, i = blocks + 1, end
            if not state["active"].any() or i > steps:
                break
            if progress is not None and progress(i):
                interrupted, done = True, i
                break
            running.update(state["active"] != 0)
        all_frozen = not state["active"].any()
        if all_frozen and not interrupted:
            evaluations = stages * min(steps, int(state["stop_iter"].max(initial=0))) + 1
            while len(rec["risk"]) < total:
                rec["risk"].append(state["last_risk"].copy())
                rec["grad_norm"].append(state["last_gn"].copy())
                rec["energy"].append(state["energy"].copy())
                rec["thetas"].append(theta.copy())
        res = {k: np.array(v).reshape(len(v), K, *([P] if k == "thetas" else [])) for k, v in rec.items()}
        if not record_theta:
            res["thetas"] = None
        res.update(active=state["active"], reason=state["reason"], growth=state["growth"],
                   stop_iter=state["stop_iter"], risk_rose=state["rose"], evaluations=evaluations, interrupted=interrupted,
                   steps_done=done, records=len(rec["risk"]), blocks=blocks, compactions=running.compactions)
        return res


@pytest.fixture
def host_cuda_loop(monkeypatch):
    """The cuda backend with the host harnesses for a device, theta on numpy (backend='cuda' resolved
    as such)."""
    import reluflow.problem as problem_mod

    fake_cp = NumpyAsCupy(cuda=types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(ptr=0)))
    monkeypatch.setattr(cuda_backend, "_modules", lambda: (HarnessLoop, fake_cp))
    orig = problem_mod.resolve
    monkeypatch.setattr(problem_mod, "resolve", lambda name, theta: "cuda" if name == "cuda" else orig(name, theta))
    return HarnessLoop


def gd_problem(widths):
    target = rf.targets.PiecewisePolynomial([-1.0, 0.0, 1.0], [[0.0, 1.0, 2.0], [0.0, 1.0, -2.0]]) \
        if widths[0] == 1 else rf.targets.Affine(np.ones((widths[-1], widths[0])), np.zeros(widths[-1]))
    return rf.Problem(widths, target, rf.dists.Uniform([-1.0] * widths[0], [1.0] * widths[0]))


GD_CASES = [([1, 16, 1], "points"), ([1, 16, 1], "sgd"), ([2, 8, 8, 1], "points"), ([2, 8, 8, 1], "sgd")]


def gd_estimator(kind, d):
    if kind == "sgd":
        return rf.MonteCarlo(200, seed=3, resample=True)
    return rf.Points(np.random.default_rng(1).uniform(-1, 1, size=(150, d)))


def assert_runs_match(a, b, tol=1e-12):
    assert rel(a.theta, b.theta) <= tol
    assert a.risk.shape == b.risk.shape and rel(a.risk, b.risk) <= tol
    assert rel(a.grad_norm, b.grad_norm) <= tol and rel(a.energy, b.energy) <= tol
    np.testing.assert_array_equal(a.t, b.t)
    np.testing.assert_array_equal(a.diverged, b.diverged)
    np.testing.assert_array_equal(a.reason, b.reason)
    assert a.next_step == b.next_step and a.info["evaluations"] == b.info["evaluations"]


@pytest.mark.parametrize("widths,kind", GD_CASES, ids=[f"{w}-{k}" for w, k in GD_CASES])
@pytest.mark.parametrize("lr", ["constant", "callable", "array"])
def test_device_gd_loop_emulated_equals_cpu_loop(host_cuda_loop, widths, kind, lr):
    """gradient_descent on the cuda backend takes the device loop (plan loop "CUDA") and, with the
    host harnesses for the device, gives the cpu C++ loop's run: theta and records to 1e-12 relative
    (different kernels' summation orders), the same record times, statuses and evaluation count."""
    prob = gd_problem(widths)
    est = gd_estimator(kind, widths[0])
    plan = prob.plan(est, "cuda")
    assert plan.loop == "CUDA" and "the whole loop on the device" in plan.explain()
    lr_arg = {"constant": 0.05, "callable": lambda n: 0.05 * (n + 1) ** -0.1,
              "array": 0.05 / np.sqrt(np.arange(1, 40))}[lr]
    theta = prob.init(3, seed=2)
    before = host_cuda_loop.loops
    a = rf.gradient_descent(prob, theta, lr_arg, 23, est, record_every=5, backend="cuda", start_step=2)
    assert host_cuda_loop.loops == before + 1 and a.info["loop"] == "CUDA" and a.info["blocks"] > 1
    b = rf.gradient_descent(prob, theta, lr_arg, 23, est, record_every=5, backend="cpu", start_step=2)
    assert b.info["loop"] == "C++"
    assert_runs_match(a, b)
    assert not a.diverged.any() and a.risk[-1].max() < a.risk[0].max()


def test_device_gd_loop_emulated_divergence_frozen_and_records(host_cuda_loop):
    """Networks blown up by a large step are frozen for the same reasons at the same steps as on the
    cpu loop (stop_step in info); frozen parameters keep their values; theta records; every network
    frozen ends the loop early with the records filled (the cpu loop's evaluation count)."""
    prob = gd_problem([1, 16, 1])
    est = gd_estimator("points", 1)
    theta = prob.init(4, seed=5)
    theta[1] *= 40.0
    theta[2, 0] = 1e7
    mask = prob.mask(layers=[2], biases=False)   # the output weights
    kw = dict(record_every=3, record_theta=True, max_abs=2e7, max_growth=100.0, frozen=mask)
    with pytest.warns(RuntimeWarning, match="diverged"):
        a = rf.gradient_descent(prob, theta, 0.9, 20, est, backend="cuda", **kw)
    with pytest.warns(RuntimeWarning, match="diverged"):
        b = rf.gradient_descent(prob, theta, 0.9, 20, est, backend="cpu", **kw)
    assert_runs_match(a, b)
    assert a.diverged.any() and rel(a.thetas, b.thetas) <= 1e-12
    stop = a.info["stop_step"]
    assert all((stop[k] >= 0) == a.diverged[k] for k in range(4))
    assert mask.sum() == 16
    np.testing.assert_array_equal(a.theta[:, mask], theta[:, mask])
    with pytest.warns(RuntimeWarning, match="diverged"):
        c = rf.gradient_descent(prob, theta * 1e3, 5.0, 40, est, backend="cuda", record_every=4, max_growth=10.0)
    with pytest.warns(RuntimeWarning, match="diverged"):
        d = rf.gradient_descent(prob, theta * 1e3, 5.0, 40, est, backend="cpu", record_every=4, max_growth=10.0)
    assert c.diverged.all() and c.info["evaluations"] < 41
    assert_runs_match(c, d)


@pytest.mark.parametrize("method", ["gd", "heun"])
def test_device_gd_loop_emulated_evaluates_only_the_active_networks(host_cuda_loop, method):
    """Once at most 3/4 of the networks are active at a block boundary, only those are evaluated (rows
    gathered, results scattered back; the frozen ones' rows are NaN in the emulation): the cpu loop's run
    all the same, stages included."""
    prob = gd_problem([1, 16, 1])
    est = gd_estimator("points", 1)
    theta = prob.init(8, seed=5)
    theta[:4] *= 40.0                  # blown up by the step: frozen early
    kw = dict(record_every=3, record_theta=True, max_abs=2e7, max_growth=100.0)
    if method == "gd":
        with pytest.warns(RuntimeWarning, match="diverged"):
            a = rf.gradient_descent(prob, theta, 0.05, 30, est, backend="cuda", **kw)
        with pytest.warns(RuntimeWarning, match="diverged"):
            b = rf.gradient_descent(prob, theta, 0.05, 30, est, backend="cpu", **kw)
    else:
        kw = dict(kw, method="heun", dt=0.05, estimator=est)
        with pytest.warns(RuntimeWarning, match="diverged"):
            a = rf.gradient_flow(prob, theta, 1.5, backend="cuda", **kw)
        with pytest.warns(RuntimeWarning, match="diverged"):
            b = rf.gradient_flow(prob, theta, 1.5, backend="cpu", **kw)
    assert a.info["compactions"] >= 1 and a.diverged[:4].all() and not a.diverged[4:].any()
    assert_runs_match(a, b)


def test_device_gd_loop_emulated_resume_and_stop_are_bitwise(host_cuda_loop, monkeypatch):
    """Resuming with start_step=run.next_step continues bitwise (SGD samples and lr follow the global
    step); a stop asked at a block boundary (Ctrl-C) returns a resumable partial run."""
    prob = gd_problem([1, 16, 1])
    est = gd_estimator("sgd", 1)
    theta = prob.init(3, seed=7)
    lr = lambda n: 0.05 * (n + 1) ** -0.1  # noqa: E731
    whole = rf.gradient_descent(prob, theta, lr, 30, est, backend="cuda", record_every=3)
    first = rf.gradient_descent(prob, theta, lr, 13, est, backend="cuda", record_every=3)
    rest = rf.gradient_descent(prob, first.theta, lr, 17, est, backend="cuda", start_step=first.next_step)
    assert rest.theta.tobytes() == whole.theta.tobytes()
    monkeypatch.setattr(flows, "_progress_hook", lambda bar: (lambda done: done >= 10))
    with pytest.warns(RuntimeWarning, match="interrupted"):
        part = rf.gradient_descent(prob, theta, lr, 30, est, backend="cuda", record_every=3)
    assert part.interrupted and 10 <= part.next_step < 30 and part.next_step % HarnessLoop.WANT == 0
    assert part.risk.shape[0] == len([i for i in range(part.next_step) if i % 3 == 0])
    monkeypatch.undo()
    monkeypatch.setattr(cuda_backend, "_modules", lambda: (HarnessLoop, NumpyAsCupy(
        cuda=types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(ptr=0)))))
    import reluflow.problem as problem_mod
    orig = problem_mod.resolve
    monkeypatch.setattr(problem_mod, "resolve", lambda name, t: "cuda" if name == "cuda" else orig(name, t))
    end = rf.gradient_descent(prob, part.theta, lr, 30 - part.next_step, est, backend="cuda",
                              start_step=part.next_step)
    assert end.theta.tobytes() == whole.theta.tobytes()


def test_device_loop_only_where_it_applies(host_cuda_loop):
    """Plan loop "CUDA" only on the cuda backend's dense route, SGD too (a Function target by a callback per
    step); normalized runs take it too
    (tests/test_cuda_normalized_harness.py)."""
    prob = gd_problem([1, 6, 1])
    assert prob.plan(rf.MonteCarlo(64, seed=1, resample=True), "cuda").loop == "CUDA"
    assert prob.plan(rf.MonteCarlo(64, seed=1, resample=True), "cpu").loop == "C++"
    assert prob.plan(rf.Quadrature(), "cuda").loop == "Python"
    fprob = rf.Problem([1, 6, 1], rf.targets.Function(np.sin, out_dim=1))
    sgd = fprob.plan(rf.MonteCarlo(64, seed=1, resample=True), "cuda")   # the target by a callback per step
    assert sgd.loop == "CUDA" and "callback per step" in sgd.explain()
    assert fprob.plan(rf.MonteCarlo(64, seed=1, resample=False), "cuda").loop == "CUDA"   # fixed nodes: y made once on the host
    before = host_cuda_loop.loops
    run = rf.gradient_descent(prob, prob.init(2, seed=1), 0.01, 3, rf.MonteCarlo(64, seed=1), backend="cuda",
                              normalized=True)
    assert host_cuda_loop.loops == before + 1 and run.info["loop"] == "CUDA"


@pytest.mark.parametrize("kind", ["function-fixed", "teacher-sgd", "function-sgd", "deep-teacher-sgd"])
def test_device_gd_loop_emulated_other_targets(host_cuda_loop, kind):
    """A Function target on fixed nodes (its values made once on the host and given as y), a shallow
    Teacher with SGD (evaluated in the kernel), and a Function or a deep Teacher with SGD (their values
    by the loop's callback on each step's nodes) run the device loop and give the cpu loop's run."""
    if kind in ("function-fixed", "function-sgd"):
        prob = rf.Problem([1, 8, 2], rf.targets.Function(lambda x: np.concatenate([np.sin(3 * x), x * x], axis=1),
                                                         out_dim=2))
        est = rf.MonteCarlo(120, seed=4, resample=kind == "function-sgd")
    elif kind == "deep-teacher-sgd":
        teacher = rf.targets.Teacher([2, 4, 3, 1], np.random.default_rng(1).normal(size=Layout([2, 4, 3, 1]).num_params))
        prob = rf.Problem([2, 6, 1], teacher)
        est = rf.MonteCarlo(100, seed=4, resample=True)
    else:
        teacher = rf.targets.Teacher([2, 5, 1], np.random.default_rng(0).normal(size=Layout([2, 5, 1]).num_params))
        prob = rf.Problem([2, 6, 1], teacher)
        est = rf.MonteCarlo(100, seed=4, resample=True)
    assert prob.plan(est, "cuda").loop == "CUDA"
    theta = prob.init(2, seed=3)
    before = host_cuda_loop.loops
    a = rf.gradient_descent(prob, theta, 0.02, 12, est, backend="cuda", record_every=4)
    b = rf.gradient_descent(prob, theta, 0.02, 12, est, backend="cpu", record_every=4)
    assert host_cuda_loop.loops == before + 1
    assert_runs_match(a, b)


def test_device_target_fn_on_device_arrays_and_host_fallback():
    """The SGD callback of the device loop: an array-generic fn gets the device array itself; a
    numpy-only one (the TypeError of CuPy's implicit conversion) is called on a host copy from then on;
    its first values are checked (shape, finite)."""
    class DeviceArray(np.ndarray):
        """A stand-in for a CuPy array: numpy refuses to convert it implicitly."""

    calls = []

    def generic(x):
        calls.append(type(x))
        return 2.0 * x[:, :1]

    def numpy_only(x):
        if isinstance(x, DeviceArray):
            raise TypeError("Implicit conversion to a NumPy array is not allowed")
        return np.sin(x[:, 0])

    fake = NumpyAsCupy(asnumpy=lambda a: np.asarray(a).view(np.ndarray))
    x = np.linspace(-1.0, 1.0, 6).reshape(3, 2).view(DeviceArray)
    fn = cuda_backend.device_target_fn(fake, rf.Problem([2, 4, 1], rf.targets.Function(generic, out_dim=1)).spec)
    calls.clear()
    np.testing.assert_array_equal(fn(x), 2.0 * np.asarray(x)[:, :1])
    assert calls == [DeviceArray]
    fn = cuda_backend.device_target_fn(fake, rf.Problem([2, 4, 1], rf.targets.Function(numpy_only, out_dim=1)).spec)
    np.testing.assert_array_equal(fn(x), np.sin(np.asarray(x)[:, :1]))
    np.testing.assert_array_equal(fn(x), np.sin(np.asarray(x)[:, :1]))   # the host from then on
    broken = {"nan": False, "cols": 1}   # (a well-behaved fn while the Function and the Problem are made)

    def changing(x):
        return np.full((x.shape[0], broken["cols"]), np.nan if broken["nan"] else 1.0)

    spec = rf.Problem([2, 4, 1], rf.targets.Function(changing, out_dim=1)).spec
    broken["nan"] = True
    with pytest.raises(ValueError, match="NaN or inf"):
        cuda_backend.device_target_fn(fake, spec)(x)
    broken.update(nan=False, cols=3)
    with pytest.raises(ValueError, match="shape"):
        cuda_backend.device_target_fn(fake, spec)(x)
