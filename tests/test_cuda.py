"""The CUDA extension (built where nvcc is found): it imports on a machine without a GPU, and on a GPU
its kernels draw the CPU's samples bitwise (the same RF_HD headers; --fmad=false)."""
import numpy as np
import pytest
from conftest import make_data

import reluflow as rf
from reluflow import _native_sampling

cuda = pytest.importorskip("reluflow._cuda",
                           reason="the CUDA extension is not built here (no nvcc, or RELUFLOW_CUDA=OFF)")
needs_gpu = pytest.mark.skipif(cuda.device_count() == 0, reason="no CUDA device on this machine")


def test_extension_loads_without_a_gpu():
    assert cuda.device_count() >= 0
    assert callable(cuda.mc_nodes) and callable(cuda.philox_uniforms)


def test_bad_input_is_refused_before_any_device_call():
    with pytest.raises(ValueError, match="kind"):
        cuda.mc_nodes(0, 0, 4, spec={"density_kind": "normal"})
    with pytest.raises(ValueError, match="chol"):
        cuda.mc_nodes(0, 0, 4, spec={"density_kind": "gaussian", "mean": np.zeros(2), "chol": np.eye(3)})
    with pytest.raises(ValueError, match="low"):
        cuda.mc_nodes(0, 0, 4, spec={"density_kind": "uniform", "low": np.zeros(2), "high": np.ones(3)})


@needs_gpu
def test_philox_uniforms_equal_numpy():
    from reluflow import _philox

    u = cuda.philox_uniforms(7, 2, 3, 0, 1000, 3)
    np.testing.assert_array_equal(u, _philox.uniforms(7, 2, 3, 0, 1000, 3))


@needs_gpu
@pytest.mark.parametrize("dist", [rf.dists.Uniform([-1.0, 0.0, 2.0], [1.0, 3.0, 2.5]),
                                  rf.dists.PiecewisePolynomial([0.0, 0.3, 1.0], [[1.0, 2.0], [3.0, -1.0]]),
                                  rf.dists.Gaussian([0.5, -1.0, 2.0], [[2.0, 0.3, -0.4], [0.3, 1.0, 0.2],
                                                                      [-0.4, 0.2, 0.7]]),
                                  rf.dists.Gaussian(1.0, [0.5, 2.0])])
def test_mc_nodes_equal_cpu_bitwise(dist):
    args = _native_sampling.native_dist_args(dist)
    x_gpu = cuda.mc_nodes(11, 5, 4096, spec=args)
    x_cpu = _native_sampling.mc_nodes(dist, 11, 5, 4096)
    assert x_gpu.tobytes() == x_cpu.tobytes()


# ---- the dense risk and gradient kernels (cuda/src/risk_grad.cu) ---------------------------------

from reluflow.backends import reference as ref  # noqa: E402
from reluflow.layout import Layout  # noqa: E402

core = pytest.importorskip("reluflow._core")


class FakeDeviceArray:
    """Something with a __cuda_array_interface__ at address 0: only for argument checks that must
    refuse (or, with K = 0, accept) before any device call."""

    def __init__(self, shape, typestr="<f8", strides=None, readonly=False):
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr, "data": (0, readonly),
                                         "strides": strides, "version": 3}


def fake_args(widths, K, N, **over):
    lay = Layout(widths)
    args = {"theta": FakeDeviceArray((K, lay.num_params)), "x": FakeDeviceArray((N, widths[0])),
            "w": FakeDeviceArray((N,)), "y": FakeDeviceArray((N, widths[-1])), "risk": FakeDeviceArray((K,)),
            "grad": FakeDeviceArray((K, lay.num_params))}
    args.update(over)
    return args


def call(widths, a, path="auto"):
    return cuda.risk_and_grad(widths, a["theta"], a["x"], a["w"], a["y"], risk=a["risk"], grad=a["grad"], path=path)


def test_dense_arguments_are_checked_before_any_device_call():
    widths = [2, 5, 1]
    call(widths, fake_args(widths, 0, 10))  # K = 0: nothing to do, no device touched
    with pytest.raises(TypeError, match="theta: expected a device array"):
        call(widths, fake_args(widths, 0, 10, theta=np.zeros((0, 21))))
    with pytest.raises(TypeError, match="theta: expected dtype float32 or float64"):
        call(widths, fake_args(widths, 0, 10, theta=FakeDeviceArray((0, 21), "<i4")))
    with pytest.raises(ValueError, match=r"theta: expected shape \(K, P\)"):
        call(widths, fake_args(widths, 0, 10, theta=FakeDeviceArray((0, 20))))
    with pytest.raises(ValueError, match="x: expected shape"):
        call(widths, fake_args(widths, 0, 10, x=FakeDeviceArray((10, 3))))
    with pytest.raises(TypeError, match="x: expected dtype float64"):
        call(widths, fake_args(widths, 0, 10, x=FakeDeviceArray((10, 2), "<f4")))
    with pytest.raises(ValueError, match="w: expected shape"):
        call(widths, fake_args(widths, 0, 10, w=FakeDeviceArray((9,))))
    with pytest.raises(ValueError, match="y: expected shape"):
        call(widths, fake_args(widths, 0, 10, y=FakeDeviceArray((10, 2))))
    with pytest.raises(ValueError, match="C-contiguous"):
        call(widths, fake_args(widths, 0, 10, x=FakeDeviceArray((10, 2), strides=(8, 80))))
    with pytest.raises(ValueError, match="risk: the output array is read-only"):
        call(widths, fake_args(widths, 0, 10, risk=FakeDeviceArray((0,), readonly=True)))
    with pytest.raises(ValueError, match="y: required unless spec"):
        call(widths, fake_args(widths, 0, 10, y=None))
    with pytest.raises(ValueError, match="path"):
        call(widths, fake_args(widths, 0, 10), path="fast")
    with pytest.raises(ValueError, match="path: 'shallow'"):
        call([2, 3, 4, 1], fake_args([2, 3, 4, 1], 0, 10), path="shallow")


needs_cupy_gpu = pytest.mark.skipif(cuda.device_count() == 0 or rf.backends()["cupy"].available is False,
                                    reason="no CUDA device (or no CuPy) on this machine")

DENSE_SHAPES = [([1, 7, 1], 1, 1), ([1, 200, 1], 3, 1000), ([2, 130, 2], 3, 5000), ([1, 5, 2], 3, 9001),
                ([8, 4, 3], 3, 300), ([1, 6, 5, 1], 1, 300), ([2, 7, 6, 2], 3, 1000), ([1, 4, 9], 3, 200),
                ([1, 3, 1], 1, 128 * 1024 + 3 * 128 + 5)]


def run_gpu(cp, widths, theta, x, w, y, want_grad=True, path="auto"):
    """The kernel on device copies, outputs poisoned with NaN first (every entry must be written)."""
    lay = Layout(widths)
    K = theta.shape[0]
    risk = cp.full(K, np.nan)
    grad = cp.full((K, lay.num_params), np.nan) if want_grad else None
    cuda.risk_and_grad(widths, cp.asarray(theta), cp.asarray(x), cp.asarray(w), cp.asarray(y), risk=risk, grad=grad,
                       path=path, stream=cp.cuda.get_current_stream().ptr)
    cp.cuda.get_current_stream().synchronize()
    return risk.get(), (grad.get() if want_grad else None)


def rel(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


@needs_cupy_gpu
@pytest.mark.parametrize("widths,K,N", DENSE_SHAPES, ids=[f"{w}-K{K}-N{N}" for w, K, N in DENSE_SHAPES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_dense_kernel_equals_cpu_reference_and_host_harness(widths, K, N, dtype):
    import cupy as cp

    lay, theta, x, w, y = make_data(widths, K, N, dtype, seed=N + 1)
    r_ref, g_ref = ref.risk_and_grad(lay, theta.astype(np.float64), x, w, y)
    r_cpu, g_cpu = core.risk_and_grad(widths, theta, x, w, y, True)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    shallow = len(widths) == 3 and widths[0] <= 8 and widths[-1] <= 3
    for path in (["shallow", "deep"] if shallow else ["deep"]):
        r, g = run_gpu(cp, widths, theta, x, w, y, path=path)
        assert np.all(np.isfinite(r)) and np.all(np.isfinite(g)), path   # every entry written
        assert rel(r, r_ref) <= tol and rel(g, g_ref) <= tol, path
        assert rel(r, r_cpu) <= 2 * tol and rel(g, g_cpu) <= 2 * tol, path
        # the same functions in the same order on the host (--fmad=false, -ffp-contract=off): same bits
        r_h, g_h = core._harness_risk_grad(widths, theta, x, w, y, True, path)
        assert r.tobytes() == r_h.tobytes() and g.tobytes() == g_h.tobytes(), f"{path}: GPU != host harness"
        r_only, _ = run_gpu(cp, widths, theta, x, w, y, want_grad=False, path=path)
        assert r_only.tobytes() == r.tobytes(), path


@needs_cupy_gpu
@pytest.mark.parametrize("widths", [[2, 130, 2], [2, 7, 6, 2]], ids=["shallow", "deep"])
def test_dense_kernel_deterministic_and_batch_independent(widths):
    import cupy as cp

    lay, theta, x, w, y = make_data(widths, 5, 20000, np.float32, seed=9)
    r, g = run_gpu(cp, widths, theta, x, w, y)
    for _ in range(3):
        r2, g2 = run_gpu(cp, widths, theta, x, w, y)
        assert r.tobytes() == r2.tobytes() and g.tobytes() == g2.tobytes()
    for k in (0, 4):
        rk, gk = run_gpu(cp, widths, theta[k:k + 1], x, w, y)
        assert rk.tobytes() == r[k:k + 1].tobytes() and gk.tobytes() == g[k:k + 1].tobytes()


@needs_cupy_gpu
@pytest.mark.parametrize("estimator", [rf.MonteCarlo(3000, seed=1), rf.QuasiMonteCarlo(1024, seed=2),
                                       rf.MonteCarlo(500, seed=3, resample=True), rf.Quadrature()], ids=repr)
@pytest.mark.parametrize("widths", [[1, 12, 1], [2, 9, 2], [1, 5, 4, 1]])
def test_problem_on_cupy_runs_the_cuda_backend(widths, estimator):
    import cupy as cp

    target = (rf.targets.PiecewiseLinear([0.0, 0.5, 1.0], [0.0, 1.0, 0.0]) if widths[0] == 1
              else rf.targets.Affine(np.ones((widths[-1], widths[0])), np.zeros(widths[-1])))
    prob = rf.Problem(widths, target)
    theta = prob.init(3, seed=4)
    p = prob.plan(estimator, "auto", cp.asarray(theta))
    assert p.backend == "cuda"
    assert "cuda" in p.explain().lower()
    r, g = prob.risk_and_grad(cp.asarray(theta), estimator, step=2)
    assert isinstance(r, cp.ndarray) and isinstance(g, cp.ndarray)
    r0, g0 = prob.risk_and_grad(theta, estimator, backend="cpu", step=2, method="dense")
    assert rel(r.get(), r0) <= 1e-12 and rel(g.get(), g0) <= 1e-12


@needs_cupy_gpu
@pytest.mark.parametrize("widths", [[2, 9, 2], [2, 6, 5, 1]], ids=["shallow", "deep"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("kind", ["affine", "teacher"])
def test_target_in_the_kernel_equals_host_harness_and_cpu(widths, dtype, kind):
    import cupy as cp
    from reluflow.backends import cpu as cpu_backend

    out = widths[-1]
    target = (rf.targets.Affine(np.arange(1.0, 1.0 + 2 * out).reshape(out, 2) / 5, np.linspace(-1, 1, out))
              if kind == "affine" else
              rf.targets.Teacher([2, 40, out], np.random.default_rng(1).normal(size=Layout([2, 40, out]).num_params)))
    prob = rf.Problem(widths, target)
    nodes = cpu_backend.point_nodes(prob.spec, rf.MonteCarlo(5000, seed=3))
    theta = prob.init(3, seed=2).astype(dtype)
    lay = Layout(widths)
    risk, grad = cp.full(3, np.nan), cp.full((3, lay.num_params), np.nan)
    cuda.risk_and_grad(widths, cp.asarray(theta), cp.asarray(nodes.x), cp.asarray(nodes.w), None, risk=risk,
                       grad=grad, spec=prob.spec.native())
    r_h, g_h = core._harness_risk_grad(widths, theta, nodes.x, nodes.w, None, True, spec=prob.spec.native())
    assert risk.get().tobytes() == r_h.tobytes() and grad.get().tobytes() == g_h.tobytes()
    y = cpu_backend.target_values(prob.spec, nodes)
    r0, g0 = core.risk_and_grad(widths, theta, nodes.x, nodes.w, y, True)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert rel(risk.get(), r0) <= 2 * tol and rel(grad.get(), g0) <= 2 * tol


# ---- gradient descent / SGD with the whole loop on the device (cuda/src/gd_loop.cu, issue 13) --------
# Expected: the device run is BITWISE the host emulation of the same loop (tests/test_cuda_harness.py's
# HarnessLoop: the dense grid and the update grid on the host with the same RF_HD functions; the MC
# nodes from the CPU sampler, bitwise the GPU's), and equals the cpu backend's C++ loop to 1e-12
# relative (its kernels sum in another order) with the same statuses, reasons, record times and
# evaluation count.

GD_LOOP_CASES = [([1, 16, 1], "points"), ([1, 16, 1], "sgd"), ([2, 8, 8, 1], "points"), ([2, 8, 8, 1], "sgd")]


def _gd_problem(widths):
    target = (rf.targets.PiecewisePolynomial([-1.0, 0.0, 1.0], [[0.0, 1.0, 2.0], [0.0, 1.0, -2.0]])
              if widths[0] == 1 else rf.targets.Affine(np.ones((widths[-1], widths[0])), np.zeros(widths[-1])))
    return rf.Problem(widths, target, rf.dists.Uniform([-1.0] * widths[0], [1.0] * widths[0]))


def _gd_estimator(kind, d):
    if kind == "sgd":
        return rf.MonteCarlo(256, seed=3, resample=True)
    return rf.Points(np.random.default_rng(1).uniform(-1, 1, size=(300, d)))


def _emulated(monkeypatch, fn):
    """fn() with the cuda backend's loop emulated on the host (HarnessLoop)."""
    import types

    import reluflow.problem as problem_mod
    from reluflow.backends import cuda as cuda_backend
    from test_cuda_harness import HarnessLoop, NumpyAsCupy

    with monkeypatch.context() as m:
        fake_cp = NumpyAsCupy(cuda=types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(ptr=0)))
        m.setattr(cuda_backend, "_modules", lambda: (HarnessLoop, fake_cp))
        orig = problem_mod.resolve
        m.setattr(problem_mod, "resolve", lambda name, t: "cuda" if name == "cuda" else orig(name, t))
        return fn()


@needs_cupy_gpu
@pytest.mark.parametrize("widths,kind", GD_LOOP_CASES, ids=[f"{w}-{k}" for w, k in GD_LOOP_CASES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_gd_loop_on_device_equals_host_emulation_and_cpu(widths, kind, dtype, monkeypatch):
    import cupy as cp

    prob = _gd_problem(widths)
    est = _gd_estimator(kind, widths[0])
    theta = prob.init(4, seed=2).astype(dtype)
    lr = lambda n: 0.05 * (n + 1) ** -0.1  # noqa: E731
    kw = dict(record_every=10, start_step=3)
    assert prob.plan(est, "auto", cp.asarray(theta)).loop == "CUDA"
    g = rf.gradient_descent(prob, cp.asarray(theta), lr, 100, est, **kw)
    assert isinstance(g.theta, cp.ndarray) and g.info["loop"] == "CUDA"
    e = _emulated(monkeypatch, lambda: rf.gradient_descent(prob, theta, lr, 100, est, backend="cuda", **kw))
    c = rf.gradient_descent(prob, theta, lr, 100, est, backend="cpu", **kw)
    gt = g.theta.get()
    assert gt.tobytes() == e.theta.tobytes(), "device loop != its host emulation"
    for key in ("risk", "grad_norm", "energy"):
        assert getattr(g, key).tobytes() == getattr(e, key).tobytes(), key
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert rel(gt, c.theta) <= tol and rel(g.risk, c.risk) <= tol and rel(g.grad_norm, c.grad_norm) <= tol
    np.testing.assert_array_equal(g.t, c.t)
    assert g.next_step == c.next_step == 103 and g.info["evaluations"] == c.info["evaluations"] == 101
    assert not g.diverged.any() and g.risk[-1].max() < g.risk[0].max()


@needs_cupy_gpu
@pytest.mark.parametrize("fn", ["array-api", "numpy-only"])
def test_sgd_with_a_function_target_on_device_like_cpu(fn, monkeypatch):
    """SGD with a Function target: the loop on the device, its values by one callback per step on the
    step's CuPy nodes (an array-generic fn on the device; a numpy-only one on a host copy): equal to the
    emulation and the cpu loop to 1e-12 (CuPy's sin may differ from numpy's in the last bit)."""
    import cupy as cp

    if fn == "array-api":
        f = rf.targets.Function(lambda x: (x[:, :1] * x[:, :1] + 0.5 * x[:, :1]), out_dim=1)
    else:
        f = rf.targets.Function(lambda x: np.asarray(x)[:, :1] ** 2 + 0.5 * np.asarray(x)[:, :1], out_dim=1)
    prob = rf.Problem([1, 12, 1], f, rf.dists.Uniform([-1.0], [1.0]))
    est = rf.MonteCarlo(256, seed=3, resample=True)
    theta = prob.init(3, seed=2)
    assert prob.plan(est, "auto", cp.asarray(theta)).loop == "CUDA"
    g = rf.gradient_descent(prob, cp.asarray(theta), 0.05, 60, est, record_every=10)
    assert g.info["loop"] == "CUDA"
    e = _emulated(monkeypatch, lambda: rf.gradient_descent(prob, theta, 0.05, 60, est, backend="cuda",
                                                           record_every=10))
    c = rf.gradient_descent(prob, theta, 0.05, 60, est, backend="cpu", record_every=10)
    assert rel(g.theta.get(), e.theta) <= 1e-12 and rel(g.theta.get(), c.theta) <= 1e-12
    assert rel(g.risk, c.risk) <= 1e-12 and g.info["evaluations"] == c.info["evaluations"]


@needs_cupy_gpu
def test_gd_loop_on_device_divergence_frozen_records_like_cpu(monkeypatch):
    import cupy as cp

    prob = _gd_problem([1, 16, 1])
    est = _gd_estimator("points", 1)
    theta = prob.init(5, seed=5)
    theta[1] *= 40.0
    theta[2, 0] = 1e7
    mask = prob.mask(layers=[2], biases=False)
    kw = dict(record_every=3, record_theta=True, max_abs=2e7, max_growth=100.0, frozen=mask)
    with pytest.warns(RuntimeWarning, match="diverged"):
        g = rf.gradient_descent(prob, cp.asarray(theta), 0.9, 30, est, **kw)
    with pytest.warns(RuntimeWarning, match="diverged"):
        c = rf.gradient_descent(prob, theta, 0.9, 30, est, backend="cpu", **kw)
    with pytest.warns(RuntimeWarning, match="diverged"):
        e = _emulated(monkeypatch, lambda: rf.gradient_descent(prob, theta, 0.9, 30, est, backend="cuda", **kw))
    assert g.diverged.any()
    np.testing.assert_array_equal(g.diverged, c.diverged)
    np.testing.assert_array_equal(g.reason, c.reason)
    np.testing.assert_array_equal(g.info["stop_step"], e.info["stop_step"])
    assert g.thetas.get().tobytes() == e.thetas.tobytes() and rel(g.thetas.get(), c.thetas) <= 1e-12
    np.testing.assert_array_equal(g.theta.get()[:, mask], theta[:, mask])
    # every network frozen: the loop ends early, the cpu loop's evaluation count and filled records
    with pytest.warns(RuntimeWarning, match="diverged"):
        ga = rf.gradient_descent(prob, cp.asarray(theta * 1e3), 5.0, 200, est, record_every=4, max_growth=10.0)
    with pytest.warns(RuntimeWarning, match="diverged"):
        ca = rf.gradient_descent(prob, theta * 1e3, 5.0, 200, est, backend="cpu", record_every=4, max_growth=10.0)
    assert ga.diverged.all() and ga.info["evaluations"] == ca.info["evaluations"] < 201
    assert ga.risk.shape == ca.risk.shape and rel(ga.risk, ca.risk) <= 1e-12


@needs_cupy_gpu
@pytest.mark.parametrize("method", ["gd", "heun"])
def test_gd_loop_on_device_evaluates_only_the_active_networks(method, monkeypatch):
    """Half the networks frozen at the first step: from the next block boundary only the active ones
    are evaluated (loop_common.cuh RunningSet: gather_rows_kernel, the dense kernels on the compact rows,
    scatter_rows_kernel); bitwise the emulation, the cpu loop to 1e-12."""
    import cupy as cp

    prob = _gd_problem([1, 16, 1])
    est = _gd_estimator("points", 1)
    theta = prob.init(8, seed=5)
    theta[:4] *= 40.0
    kw = dict(record_every=3, record_theta=True, max_abs=2e7, max_growth=100.0)
    if method == "gd":
        run = lambda th, **o: rf.gradient_descent(prob, th, 0.05, 300, est, **kw, **o)  # noqa: E731
    else:
        run = lambda th, **o: rf.gradient_flow(prob, th, 15.0, method="heun", dt=0.05, estimator=est, **kw, **o)  # noqa: E731
    with pytest.warns(RuntimeWarning, match="diverged"):
        g = run(cp.asarray(theta))
    with pytest.warns(RuntimeWarning, match="diverged"):
        c = run(theta, backend="cpu")
    with pytest.warns(RuntimeWarning, match="diverged"):
        e = _emulated(monkeypatch, lambda: run(theta, backend="cuda"))
    assert g.info["compactions"] >= 1 and g.diverged[:4].all() and not g.diverged[4:].any()
    assert g.thetas.get().tobytes() == e.thetas.tobytes() and g.risk.tobytes() == e.risk.tobytes()
    assert rel(g.thetas.get(), c.thetas) <= 1e-12 and rel(g.risk, c.risk) <= 1e-12


@needs_cupy_gpu
@pytest.mark.parametrize("kind", ["points", "sgd"])
def test_gd_loop_on_device_resume_is_bitwise(kind):
    import cupy as cp

    prob = _gd_problem([2, 8, 8, 1])
    est = _gd_estimator(kind, 2)
    theta = cp.asarray(prob.init(3, seed=7))
    lr = 0.001 * (np.arange(1, 101) ** -0.1)
    whole = rf.gradient_descent(prob, theta, lr, 100, est, record_every=7)
    first = rf.gradient_descent(prob, theta, lr, 37, est, record_every=7)
    rest = rf.gradient_descent(prob, first.theta, lr, 63, est, start_step=first.next_step)
    assert rest.theta.get().tobytes() == whole.theta.get().tobytes()
    again = rf.gradient_descent(prob, theta, lr, 100, est, record_every=7)   # deterministic
    assert again.theta.get().tobytes() == whole.theta.get().tobytes()
    assert again.risk.tobytes() == whole.risk.tobytes()
    # a network's bits do not depend on its batch
    one = rf.gradient_descent(prob, theta[1:2], lr, 100, est, record_every=7)
    assert one.theta.get().tobytes() == whole.theta.get()[1:2].tobytes()


def test_gd_loop_arguments_checked_before_any_device_call():
    """_cuda.gd_loop refuses bad arguments naming them, before any device call (fake arrays at address
    0: runs without a GPU)."""
    lay = Layout([1, 4, 1])
    th = FakeDeviceArray((2, lay.num_params))
    x, w, y = FakeDeviceArray((5, 1)), FakeDeviceArray((5,)), FakeDeviceArray((5, 1))
    with pytest.raises(ValueError, match="h"):
        cuda.gd_loop([1, 4, 1], th, x=x, w=w, y=y, steps=3)
    with pytest.raises(ValueError, match="spec"):
        cuda.gd_loop([1, 4, 1], th, x=x, w=w, steps=3, h=np.ones(1))
    with pytest.raises(ValueError, match="spec"):
        cuda.gd_loop([1, 4, 1], th, resample=True, n=10, steps=3, h=np.ones(1))
    with pytest.raises(ValueError, match="frozen"):
        cuda.gd_loop([1, 4, 1], th, x=x, w=w, y=y, steps=3, h=np.ones(1), frozen=np.zeros(3))
    with pytest.raises(ValueError, match="x"):
        cuda.gd_loop([1, 4, 1], th, x=FakeDeviceArray((5, 2)), w=w, y=y, steps=3, h=np.ones(1))
    with pytest.raises(ValueError, match="theta"):
        cuda.gd_loop([1, 4, 1], FakeDeviceArray((2, 3)), x=x, w=w, y=y, steps=3, h=np.ones(1))
    with pytest.raises(ValueError, match="read-only"):
        cuda.gd_loop([1, 4, 1], FakeDeviceArray((2, lay.num_params), readonly=True), x=x, w=w, y=y, steps=3,
                     h=np.ones(1))
    with pytest.raises(ValueError, match="h"):
        cuda.gd_loop([1, 4, 1], th, x=x, w=w, y=y, steps=3, h=np.ones(2))
    with pytest.raises(ValueError, match="max_growth"):
        cuda.gd_loop([1, 4, 1], th, x=x, w=w, y=y, steps=3, h=np.ones(1), max_growth=1.0)
    with pytest.raises(ValueError, match="start_step"):
        cuda.gd_loop([1, 4, 1], th, x=x, w=w, y=y, steps=3, h=np.ones(1), start_step=2**32 - 2)


# ---- the fixed-step gradient flows (euler, heun, rk4) with the whole loop on the device ------------------
# The same expectations as gradient descent's above: BITWISE the host emulation (HarnessLoop with the
# stage and update harnesses of reluflow/rk_step.h), the cpu loop to 1e-12 (float64; 1e-5 float32:
# on the host emulation the two differ by <= 2e-7 after 100 steps) with the same statuses, risk_rose
# and evaluation count (stages included).

FLOW_METHODS = ("euler", "heun", "rk4")


@needs_cupy_gpu
@pytest.mark.parametrize("method", FLOW_METHODS)
@pytest.mark.parametrize("widths,kind", [([1, 16, 1], "points"), ([2, 8, 8, 1], "points"), ([2, 8, 8, 1], "sgd")],
                         ids=["1-16-1-points", "2-8-8-1-points", "2-8-8-1-sgd"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_flow_loop_on_device_equals_host_emulation_and_cpu(widths, kind, method, dtype, monkeypatch):
    import cupy as cp

    prob = _gd_problem(widths)
    est = _gd_estimator(kind, widths[0])
    theta = prob.init(4, seed=2).astype(dtype)
    kw = dict(t_end=1.0, method=method, dt=0.01, estimator=est, record_every=0.1)
    g = rf.gradient_flow(prob, cp.asarray(theta), **kw)
    assert isinstance(g.theta, cp.ndarray) and g.info["loop"] == "CUDA"
    e = _emulated(monkeypatch, lambda: rf.gradient_flow(prob, theta, backend="cuda", **kw))
    c = rf.gradient_flow(prob, theta, backend="cpu", **kw)
    gt = g.theta.get()
    assert gt.tobytes() == e.theta.tobytes(), "device loop != its host emulation"
    for key in ("risk", "grad_norm", "energy", "risk_rose"):
        assert getattr(g, key).tobytes() == getattr(e, key).tobytes(), key
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert rel(gt, c.theta) <= tol and rel(g.risk, c.risk) <= tol and rel(g.energy, c.energy) <= tol
    np.testing.assert_array_equal(g.t, c.t)
    np.testing.assert_array_equal(g.risk_rose, c.risk_rose)
    stages = {"euler": 1, "heun": 2, "rk4": 4}[method]
    assert g.info["evaluations"] == c.info["evaluations"] == 100 * stages + 1
    assert not g.diverged.any() and g.risk[-1].max() < g.risk[0].max()


@needs_cupy_gpu
@pytest.mark.parametrize("method", FLOW_METHODS)
def test_flow_loop_on_device_divergence_frozen_records_like_cpu(method, monkeypatch):
    import cupy as cp

    prob = _gd_problem([1, 16, 1])
    est = _gd_estimator("points", 1)
    theta = prob.init(5, seed=5)
    theta[1] *= 40.0
    theta[2, 0] = 1e7
    mask = prob.mask(layers=[2], biases=False)
    kw = dict(t_end=30 * 0.9, method=method, dt=0.9, estimator=est, record_every=2.7, record_theta=True,
              max_abs=2e7, max_growth=100.0, frozen=mask)
    with pytest.warns(RuntimeWarning, match="diverged"):
        g = rf.gradient_flow(prob, cp.asarray(theta), **kw)
    with pytest.warns(RuntimeWarning, match="diverged"):
        c = rf.gradient_flow(prob, theta, backend="cpu", **kw)
    with pytest.warns(RuntimeWarning, match="diverged"):
        e = _emulated(monkeypatch, lambda: rf.gradient_flow(prob, theta, backend="cuda", **kw))
    assert g.diverged.any()
    np.testing.assert_array_equal(g.diverged, c.diverged)
    np.testing.assert_array_equal(g.reason, c.reason)
    np.testing.assert_array_equal(g.risk_rose, c.risk_rose)
    np.testing.assert_array_equal(g.info["stop_step"], e.info["stop_step"])
    assert g.thetas.get().tobytes() == e.thetas.tobytes() and rel(g.thetas.get(), c.thetas) <= 1e-12
    np.testing.assert_array_equal(g.theta.get()[:, mask], theta[:, mask])
    with pytest.warns(RuntimeWarning, match="diverged"):
        ga = rf.gradient_flow(prob, cp.asarray(theta * 1e3), 200 * 5.0, method=method, dt=5.0, estimator=est,
                              record_every=20.0, max_growth=10.0)
    with pytest.warns(RuntimeWarning, match="diverged"):
        ca = rf.gradient_flow(prob, theta * 1e3, 200 * 5.0, method=method, dt=5.0, estimator=est, backend="cpu",
                              record_every=20.0, max_growth=10.0)
    assert ga.diverged.all() and ga.info["evaluations"] == ca.info["evaluations"] < 200 * {"euler": 1, "heun": 2, "rk4": 4}[method] + 1
    assert ga.risk.shape == ca.risk.shape and rel(ga.risk, ca.risk) <= 1e-12


@needs_cupy_gpu
@pytest.mark.parametrize("method", FLOW_METHODS)
def test_flow_loop_on_device_resume_is_bitwise(method):
    import cupy as cp

    prob = _gd_problem([2, 8, 8, 1])
    est = _gd_estimator("points", 2)
    theta = cp.asarray(prob.init(3, seed=7))
    dt = 1 / 64   # a power of two: every piece takes the same dt
    whole = rf.gradient_flow(prob, theta, 100 * dt, method=method, dt=dt, estimator=est)
    first = rf.gradient_flow(prob, theta, 37 * dt, method=method, dt=dt, estimator=est)
    rest = rf.gradient_flow(prob, first.theta, 63 * dt, method=method, dt=dt, estimator=est)
    assert rest.theta.get().tobytes() == whole.theta.get().tobytes()
    again = rf.gradient_flow(prob, theta, 100 * dt, method=method, dt=dt, estimator=est)   # deterministic
    assert again.theta.get().tobytes() == whole.theta.get().tobytes() and again.risk.tobytes() == whole.risk.tobytes()
    one = rf.gradient_flow(prob, theta[1:2], 100 * dt, method=method, dt=dt, estimator=est)   # batch-independent
    assert one.theta.get().tobytes() == whole.theta.get()[1:2].tobytes()


def test_flow_loop_arguments_checked_before_any_device_call():
    """_cuda.gd_loop's method and rise_tol are checked before any device call (fake arrays at address
    0: runs without a GPU)."""
    lay = Layout([1, 4, 1])
    th = FakeDeviceArray((2, lay.num_params))
    x, w, y = FakeDeviceArray((5, 1)), FakeDeviceArray((5,)), FakeDeviceArray((5, 1))
    with pytest.raises(ValueError, match="method"):
        cuda.gd_loop([1, 4, 1], th, x=x, w=w, y=y, steps=3, h=np.ones(1), method="dopri5")
    with pytest.raises(ValueError, match="rise_tol"):
        cuda.gd_loop([1, 4, 1], th, x=x, w=w, y=y, steps=3, h=np.ones(1), method="rk4", rise_tol=np.inf)


# ---- dopri5 with the whole adaptive loop on the device (cuda/src/dopri5_loop.cu) -----------------------

def test_dopri5_loop_arguments_checked_before_any_device_call():
    """_cuda.dopri5_loop refuses bad arguments naming them, before any device call (fake arrays at
    address 0: runs without a GPU)."""
    lay = Layout([1, 4, 1])
    th = FakeDeviceArray((2, lay.num_params))
    x, w, y = FakeDeviceArray((5, 1)), FakeDeviceArray((5,)), FakeDeviceArray((5, 1))
    grid = np.array([0.0, 0.5, 1.0])
    ok = dict(x=x, w=w, y=y, grid=grid, t_end=1.0)
    with pytest.raises(ValueError, match="grid"):
        cuda.dopri5_loop([1, 4, 1], th, **dict(ok, grid=np.array([0.0, 2.0])))
    with pytest.raises(ValueError, match="grid"):
        cuda.dopri5_loop([1, 4, 1], th, **dict(ok, grid=np.array([0.5, 0.5])))
    with pytest.raises(ValueError, match="t_end"):
        cuda.dopri5_loop([1, 4, 1], th, **dict(ok, t_end=-1.0))
    with pytest.raises(ValueError, match="rtol"):
        cuda.dopri5_loop([1, 4, 1], th, rtol=0.0, atol=0.0, **ok)
    with pytest.raises(ValueError, match="max_steps"):
        cuda.dopri5_loop([1, 4, 1], th, max_steps=0, **ok)
    with pytest.raises(ValueError, match="frozen"):
        cuda.dopri5_loop([1, 4, 1], th, frozen=np.zeros(3), **ok)
    with pytest.raises(ValueError, match="spec"):
        cuda.dopri5_loop([1, 4, 1], th, **dict(ok, y=None))
    with pytest.raises(ValueError, match="x"):
        cuda.dopri5_loop([1, 4, 1], th, **dict(ok, x=FakeDeviceArray((5, 2))))
    with pytest.raises(ValueError, match="theta"):
        cuda.dopri5_loop([1, 4, 1], FakeDeviceArray((2, 3)), **ok)
    with pytest.raises(ValueError, match="frozen"):
        cuda.dopri5_loop([1, 4, 1], th, frozen=np.zeros(lay.num_params), normalized=True, **ok)


def _emulated_dp(monkeypatch, fn):
    """fn() with the cuda backend's dopri5 loop emulated on the host (HarnessDopri5)."""
    import types

    import reluflow.problem as problem_mod
    from reluflow.backends import cuda as cuda_backend
    from test_cuda_dopri5_harness import HarnessDopri5
    from test_cuda_harness import NumpyAsCupy

    with monkeypatch.context() as m:
        fake_cp = NumpyAsCupy(cuda=types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(ptr=0)))
        m.setattr(cuda_backend, "_modules", lambda: (HarnessDopri5, fake_cp))
        orig = problem_mod.resolve
        m.setattr(problem_mod, "resolve", lambda name, t: "cuda" if name == "cuda" else orig(name, t))
        return fn()


DP_CASES = [([1, 16, 1], np.float64, "points", 4), ([2, 8, 8, 1], np.float64, "qmc", 3),
            ([1, 16, 1], np.float32, "points", 4), ([2, 8, 8, 1], np.float32, "qmc", 3)]


def _dp_estimator(kind, d):
    if kind == "qmc":
        return rf.QuasiMonteCarlo(256, seed=1)
    return rf.Points(np.random.default_rng(1).uniform(-1, 1, size=(150, d)))


def _assert_same_run(g, e):
    """Device run g bitwise its host emulation e."""
    assert g.theta.get().tobytes() == e.theta.tobytes(), "device loop != its host emulation"
    for key in ("risk", "grad_norm", "energy", "accepted", "rejected", "status", "reason"):
        assert np.asarray(getattr(g, key)).tobytes() == np.asarray(getattr(e, key)).tobytes(), key
    assert g.info["t_reached"].tobytes() == e.info["t_reached"].tobytes()
    assert g.info["evaluations"] == e.info["evaluations"]
    if e.thetas is not None:
        assert g.thetas.get().tobytes() == e.thetas.tobytes()


@needs_cupy_gpu
@pytest.mark.parametrize("widths,dtype,kind,seed", DP_CASES,
                         ids=[f"{w}-{np.dtype(d).name}-{k}" for w, d, k, _ in DP_CASES])
def test_dopri5_loop_on_device_equals_host_emulation_and_cpu(widths, dtype, kind, seed, monkeypatch):
    """First check of the device dopri5: BITWISE its host emulation (the same per-thread functions and
    the same dense grid), then the cpu loop: float64 the same step counts and 1e-12; float32 5e-4
    (decisions near err = 1 may differ from the cpu's float32 field)."""
    prob = _gd_problem(widths)
    est = _dp_estimator(kind, widths[0])
    theta = prob.init(3, seed=seed).astype(dtype)
    kw = dict(t_end=2.0, method="dopri5", estimator=est, record_every=0.3, rtol=1e-5, atol=1e-8, record_theta=True)
    g = _dp_on_device_like_emulation_and_cpu(prob, theta, kw, monkeypatch)
    assert (g.status == "ok").all() and (g.risk[-1] < g.risk[0]).all()


def _dp_on_device_like_emulation_and_cpu(prob, theta, kw, monkeypatch):
    """gradient_flow(**kw) on the device: bitwise its host emulation, then the cpu loop (float64: the
    same step counts and evaluation count, 1e-12; float32 5e-4). Returns the device run."""
    import cupy as cp

    g = rf.gradient_flow(prob, cp.asarray(theta), **kw)
    assert isinstance(g.theta, cp.ndarray) and g.info["loop"] == "CUDA"
    e = _emulated_dp(monkeypatch, lambda: rf.gradient_flow(prob, theta, backend="cuda", **kw))
    _assert_same_run(g, e)
    c = rf.gradient_flow(prob, theta, backend="cpu", **kw)
    np.testing.assert_array_equal(g.status, c.status)
    np.testing.assert_array_equal(g.t, c.t)
    if theta.dtype == np.float64:
        np.testing.assert_array_equal(g.accepted, c.accepted)
        np.testing.assert_array_equal(g.rejected, c.rejected)
        assert g.info["evaluations"] == c.info["evaluations"]
    tol = 1e-12 if theta.dtype == np.float64 else 5e-4
    assert rel(g.theta.get(), c.theta) <= tol and rel(g.risk, c.risk) <= tol and rel(g.energy, c.energy) <= tol
    return g


@needs_cupy_gpu
def test_dopri5_loop_on_device_evaluates_only_the_running_networks(monkeypatch):
    """Once at most 3/4 of the networks run, only those are evaluated (gather_rows_kernel, the dense
    kernels on the compact rows, scatter_rows_kernel): bitwise the emulation (whose blocks, and so its
    compactions, fall elsewhere: the results do not depend on them), the cpu loop's step counts and
    values."""
    prob = _gd_problem([1, 16, 1])
    theta = prob.init(8, seed=4)
    theta[6:] *= 2.0                  # stiffer networks: more steps
    kw = dict(t_end=2.0, method="dopri5", estimator=_dp_estimator("points", 1), record_every=0.3, rtol=1e-5,
              atol=1e-8, record_theta=True)
    g = _dp_on_device_like_emulation_and_cpu(prob, theta, kw, monkeypatch)
    assert g.info["compactions"] >= 1 and (g.status == "ok").all()


@needs_cupy_gpu
def test_dopri5_loop_on_device_statuses_frozen_max_steps(monkeypatch):
    """Networks that end early (min_step, max_steps) are left alone while others run; frozen parameters
    keep their values; bitwise the emulation, and the cpu loop's statuses and counts."""
    import cupy as cp

    prob = _gd_problem([1, 16, 1])
    est = _dp_estimator("points", 1)
    theta = prob.init(4, seed=5)
    theta[1] *= 3.0
    mask = prob.mask(layers=[2], biases=False)
    for kw in (dict(record_every=0.25, max_growth=1e3, max_abs=1e6, frozen=mask, record_theta=True),
               dict(record_every=0.25, min_step=1e-3, max_rejections=3, rtol=1e-3, atol=1e-6),
               dict(record_every=0.2, max_steps=7)):
        kw.update(t_end=1.0, method="dopri5", estimator=est)
        g = rf.gradient_flow(prob, cp.asarray(theta), **kw)
        e = _emulated_dp(monkeypatch, lambda: rf.gradient_flow(prob, theta, backend="cuda", **kw))
        _assert_same_run(g, e)
        c = rf.gradient_flow(prob, theta, backend="cpu", **kw)
        np.testing.assert_array_equal(g.status, c.status)
        np.testing.assert_array_equal(g.accepted, c.accepted)
        assert rel(g.theta.get(), c.theta) <= 1e-12
        if "frozen" in kw:
            np.testing.assert_array_equal(g.theta.get()[:, mask], theta[:, mask])


NM_DP_CASES = [([1, 12, 1], np.float64, "points", 2), ([2, 8, 8, 1], np.float64, "qmc", 3),
               ([1, 12, 1], np.float32, "points", 2)]


@needs_cupy_gpu
@pytest.mark.parametrize("widths,dtype,kind,seed", NM_DP_CASES,
                         ids=[f"{w}-{np.dtype(d).name}-{k}" for w, d, k, _ in NM_DP_CASES])
def test_dopri5_loop_normalized_on_device_equals_host_emulation_and_cpu(widths, dtype, kind, seed, monkeypatch):
    """normalized dopri5 on the device (after the plain dopri5 tests: a mismatch only here points at the
    retraction in dp_finish_kernel, the extra evaluation and dp_conclude_kernel, or the projection
    kernel): BITWISE its host emulation, then the cpu loop (float64: the same counts and evaluation count,
    1e-12; float32 5e-4)."""
    prob = _gd_problem(widths)
    est = _dp_estimator(kind, widths[0])
    theta = prob.init(3, seed=seed).astype(dtype)
    kw = dict(t_end=1.5, method="dopri5", estimator=est, record_every=0.25, rtol=1e-5, atol=1e-8, record_theta=True,
              normalized=True)
    _dp_on_device_like_emulation_and_cpu(prob, theta, kw, monkeypatch)


# ---- the normalized flow in the device GD / fixed-step loop (reluflow/normalized_step.h) -------------

NM_CASES = [("gd", [1, 16, 1], "points"), ("gd", [2, 8, 8, 1], "sgd"), ("euler", [2, 8, 8, 1], "points"),
            ("heun", [1, 16, 1], "points"), ("rk4", [2, 8, 8, 1], "points")]


@needs_cupy_gpu
@pytest.mark.parametrize("method,widths,kind", NM_CASES, ids=[f"{m}-{w}-{k}" for m, w, k in NM_CASES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_normalized_loop_on_device_equals_host_emulation_and_cpu(method, widths, kind, dtype, monkeypatch):
    """normalized=True on the device: BITWISE the host emulation (the projection kernel and the
    retracting update: a mismatch only here, not in the plain GD / flow tests, points at
    nm_project_kernel's (network, neuron) indexing or nm_update_kernel's barriers), then the cpu loop
    (1e-12 / 1e-5)."""
    import cupy as cp

    prob = _gd_problem(widths)
    est = _gd_estimator(kind, widths[0])
    theta = prob.init(3, seed=2).astype(dtype)
    if method == "gd":
        def run(th, **b):
            return rf.gradient_descent(prob, th, 0.05, 40, est, record_every=10, normalized=True, **b)
    else:
        def run(th, **b):
            return rf.gradient_flow(prob, th, 0.4, method=method, dt=0.01, estimator=est, record_every=0.1,
                                    normalized=True, **b)
    g = run(cp.asarray(theta))
    assert g.info["loop"] == "CUDA"
    e = _emulated(monkeypatch, lambda: run(theta, backend="cuda"))
    c = run(theta, backend="cpu")
    assert g.theta.get().tobytes() == e.theta.tobytes(), "device loop != its host emulation"
    for key in ("risk", "grad_norm", "energy"):
        assert getattr(g, key).tobytes() == getattr(e, key).tobytes(), key
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert rel(g.theta.get(), c.theta) <= tol and rel(g.risk, c.risk) <= tol and rel(g.energy, c.energy) <= tol
    assert g.info["evaluations"] == c.info["evaluations"]


# ---- the point sweep of shallow 1-D nets (sweep_points.cu) ---------------------------------------------

def call_sweep(widths, a):
    return cuda.point_sweep(widths, a["theta"], a["x"], a["w"], a["y"], risk=a["risk"], grad=a["grad"])


def sweep_args(widths, K, N, **over):
    args = fake_args(widths, K, N, x=FakeDeviceArray((N,)))
    args.update(over)
    return args


def test_point_sweep_arguments_checked_before_any_device_call():
    widths = [1, 5, 2]
    call_sweep(widths, sweep_args(widths, 0, 10))  # K = 0: nothing to do, no device touched
    with pytest.raises(ValueError, match=r"widths: the point sweep needs a shallow 1-D net"):
        call_sweep([2, 5, 2], sweep_args([2, 5, 2], 0, 10))
    with pytest.raises(ValueError, match=r"widths: the point sweep needs a shallow 1-D net"):
        call_sweep([1, 5, 4], sweep_args([1, 5, 4], 0, 10))
    with pytest.raises(TypeError, match="theta: expected dtype float64"):
        call_sweep(widths, sweep_args(widths, 0, 10, theta=FakeDeviceArray((0, 22), "<f4")))
    with pytest.raises(ValueError, match=r"theta: expected shape \(K, P\)"):
        call_sweep(widths, sweep_args(widths, 0, 10, theta=FakeDeviceArray((0, 21))))
    with pytest.raises(ValueError, match=r"x: expected shape \(N,\)"):
        call_sweep(widths, sweep_args(widths, 0, 10, x=FakeDeviceArray((10, 1))))
    with pytest.raises(ValueError, match="w: expected shape"):
        call_sweep(widths, sweep_args(widths, 0, 10, w=FakeDeviceArray((9,))))
    with pytest.raises(ValueError, match="y: expected shape"):
        call_sweep(widths, sweep_args(widths, 0, 10, y=FakeDeviceArray((10, 1))))
    with pytest.raises(ValueError, match="risk: the output array is read-only"):
        call_sweep(widths, sweep_args(widths, 0, 10, risk=FakeDeviceArray((0,), readonly=True)))


SWEEP_SHAPES = [(5, 7, 1), (40, 1000, 2), (30, 5000, 3), (1500, 3000, 1), (3, 1, 1), (4, 0, 2),
                (20000, 300000, 1)]


@needs_cupy_gpu
@pytest.mark.parametrize("H,N,out", SWEEP_SHAPES, ids=[f"H{h}-N{n}-out{o}" for h, n, o in SWEEP_SHAPES])
def test_point_sweep_on_device_equals_host_harness_bitwise_and_cpu(H, N, out):
    """Bitwise the harness (a mismatch points at the kernels' indexing, the CUB sorts' order or FMA);
    the cpu sweep to 1e-12; every entry written (outputs poisoned with NaN); batch independent."""
    import cupy as cp
    from test_cuda_sweep_harness import scaled_err, sweep_case

    theta, x, w, y = sweep_case(H + N + out, 4, H, out, N, flat=True)
    K, P = theta.shape

    def device(th):
        risk, grad = cp.full(th.shape[0], np.nan), cp.full(th.shape, np.nan)
        cuda.point_sweep([1, H, out], cp.asarray(th), cp.asarray(x), cp.asarray(w), cp.asarray(y), risk=risk,
                         grad=grad, stream=cp.cuda.get_current_stream().ptr)
        cp.cuda.get_current_stream().synchronize()
        return risk.get(), grad.get()

    r, g = device(theta)
    rh, gh = core._harness_point_sweep(theta, out, x, w, y)
    np.testing.assert_array_equal(r, rh)
    np.testing.assert_array_equal(g, gh)
    r0, g0 = core.shallow1d_points(theta, out, x, w, y)
    assert scaled_err(r, r0) <= 1e-12 and scaled_err(g, g0) <= 1e-12
    r1, g1 = device(theta[2:3])
    assert np.array_equal(r1, r[2:3]) and np.array_equal(g1, g[2:3])


def test_exact_sweep_arguments_checked_before_any_device_call():
    from test_cuda_sweep_harness import exact_case

    prob, _ = exact_case(0, 1, 5, 2, 1, 0)
    spec = prob.spec.native()
    a = sweep_args([1, 5, 2], 0, 10)
    cuda.exact_sweep([1, 5, 2], a["theta"], risk=a["risk"], grad=a["grad"], spec=spec)   # K = 0: no device call
    with pytest.raises(ValueError, match="widths: the exact sweep needs"):
        cuda.exact_sweep([1, 5, 4], a["theta"], risk=a["risk"], grad=a["grad"], spec=spec)
    with pytest.raises(ValueError, match=r"theta: expected shape \(K, P\)"):
        cuda.exact_sweep([1, 5, 2], FakeDeviceArray((0, 21)), risk=a["risk"], grad=a["grad"], spec=spec)
    with pytest.raises(ValueError, match="risk: the output array is read-only"):
        cuda.exact_sweep([1, 5, 2], a["theta"], risk=FakeDeviceArray((0,), readonly=True), grad=a["grad"], spec=spec)


EXACT_SHAPES = [(1, 12, 1, 0), (2, 40, 2, 1), (3, 9, 0, 2), (1, 1500, 3, 2), (1, 1, 1, 1), (1, 20000, 1, 0)]


@needs_cupy_gpu
@pytest.mark.parametrize("out,H,tdeg,ddeg", EXACT_SHAPES, ids=[f"out{o}-H{h}-t{t}-d{d}" for o, h, t, d in EXACT_SHAPES])
def test_exact_sweep_on_device_equals_host_harness_bitwise_and_cpu(out, H, tdeg, ddeg):
    """Bitwise the harness (a mismatch: the segmented sort's order, the merge's ranks, or FMA in the
    Gauss–Legendre moments); the cpu sweep to 1e-12; every entry written; batch independent."""
    import cupy as cp
    from test_cuda_sweep_harness import exact_case, scaled_err

    prob, theta = exact_case(H + out, 4, H, out, tdeg, ddeg)
    spec = prob.spec.native()

    def device(th):
        risk, grad = cp.full(th.shape[0], np.nan), cp.full(th.shape, np.nan)
        cuda.exact_sweep([1, H, out], cp.asarray(th), risk=risk, grad=grad, spec=spec,
                         stream=cp.cuda.get_current_stream().ptr)
        cp.cuda.get_current_stream().synchronize()
        return risk.get(), grad.get()

    r, g = device(theta)
    rh, gh = core._harness_exact_sweep(theta, out, spec=spec)
    np.testing.assert_array_equal(r, rh)
    np.testing.assert_array_equal(g, gh)
    r0, g0 = core.shallow1d_exact(theta, out, spec=spec)
    assert scaled_err(r, r0) <= 1e-12 and scaled_err(g, g0) <= 1e-12
    r1, g1 = device(theta[1:2])
    assert np.array_equal(r1, r[1:2]) and np.array_equal(g1, g[1:2])


# ---- the ragged deep kernel: the exact 1-D quadrature's per-network nodes (risk_and_grad_ragged) ----

def call_ragged(widths, a, offset, zero=None):
    cuda.risk_and_grad_ragged(widths, a["theta"], a["x"], a["w"], a["y"], offset, zero, risk=a["risk"],
                              grad=a["grad"])


def test_ragged_arguments_checked_before_any_device_call():
    widths = [1, 4, 3, 1]
    call_ragged(widths, fake_args(widths, 0, 0), np.array([0]))  # K = 0: nothing to do, no device touched
    with pytest.raises(ValueError, match=r"offset: expected \(K \+ 1,\)"):
        call_ragged(widths, fake_args(widths, 2, 10), np.array([0, 10]))
    with pytest.raises(ValueError, match="offset: expected non-decreasing node offsets from 0 to N = 10"):
        call_ragged(widths, fake_args(widths, 2, 10), np.array([0, 6, 5]))
    with pytest.raises(ValueError, match=r"zero: expected shape \(N, hidden\)"):
        call_ragged(widths, fake_args(widths, 2, 10), np.array([0, 5, 10]), FakeDeviceArray((10, 6), "|u1"))
    with pytest.raises(TypeError, match="zero: expected dtype uint8"):
        call_ragged(widths, fake_args(widths, 2, 10), np.array([0, 5, 10]), FakeDeviceArray((10, 7), "<f8"))
    with pytest.raises(ValueError, match=r"y: expected shape \(N, out\)"):
        call_ragged(widths, fake_args(widths, 2, 10, y=FakeDeviceArray((9, 1))), np.array([0, 5, 10]))
    with pytest.raises(TypeError, match="theta: expected a device array"):
        call_ragged(widths, fake_args(widths, 2, 10, theta=np.zeros((2, 27))), np.array([0, 5, 10]))


RAGGED_CASES = [([1, 5, 4, 1], 6, "init"), ([1, 16, 16, 2], 4, "init"), ([1, 8, 6, 5, 1], 3, "init"),
                ([1, 3, 3, 1], 60, "half-integer"), ([1, 128, 128, 1], 8, "init")]


@needs_cupy_gpu
@pytest.mark.parametrize("widths,K,kind", RAGGED_CASES, ids=[f"{w}-{k}" for w, _, k in RAGGED_CASES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_partition_on_device_equals_host_harness_bitwise_and_cpu(widths, K, kind, dtype):
    """The exact 1-D quadrature of deep nets on the device: bitwise the ragged grid's host run (a mismatch:
    the item -> network search, the offsets' copies, or FMA), the cpu partition path to 1e-12 (float64),
    every entry written (outputs poisoned with NaN), a network's bits independent of the batch."""
    import cupy as cp
    from test_cuda_partition_harness import batch, problem

    prob = problem(widths)
    theta = prob.init(K, seed=3) if kind == "init" else \
        np.random.default_rng(0).integers(-4, 5, size=(K, prob.num_params)) / 2.0
    theta = theta.astype(dtype)
    offset, x, w, y, zero = batch(prob, theta)

    def device(th, off, xs, ws, ys, zs):
        risk, grad = cp.full(th.shape[0], np.nan), cp.full(th.shape, np.nan)
        cuda.risk_and_grad_ragged(widths, cp.asarray(th), cp.asarray(xs[:, None]), cp.asarray(ws), cp.asarray(ys),
                                  off, None if zs is None else cp.asarray(zs), risk=risk, grad=grad,
                                  stream=cp.cuda.get_current_stream().ptr)
        cp.cuda.get_current_stream().synchronize()
        return risk.get(), grad.get()

    r, g = device(theta, offset, x, w, y, zero)
    rh, gh = core._harness_risk_grad_ragged(widths, theta, x[:, None], w, y, offset, zero)
    np.testing.assert_array_equal(r, rh)
    np.testing.assert_array_equal(g, gh)
    r0, g0 = prob.risk_and_grad(theta, rf.Quadrature(), backend="cpu")
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert rel(r, r0) <= tol and rel(g, g0) <= tol
    sl = slice(offset[1], offset[2])
    r1, g1 = device(theta[1:2], np.array([0, offset[2] - offset[1]]), x[sl], w[sl], y[sl],
                    None if zero is None else zero[sl])
    assert np.array_equal(r1, r[1:2]) and np.array_equal(g1, g[1:2])
    # the whole route through the public API on CuPy arrays
    rp, gp = prob.risk_and_grad(cp.asarray(theta), rf.Quadrature(), backend="cuda")
    assert np.array_equal(cp.asnumpy(rp), r) and np.array_equal(cp.asnumpy(gp), g)
