"""The CUDA point sweep (cuda/src/sweep_points.cu) without a GPU: its grid run on the host
(``_core._harness_point_sweep``: the per-thread functions of reluflow/sweep_grid.h in the kernels' order,
std::stable_sort where CUB sorts) against the cpu point sweep (cpu/sweep_points.cpp, an independent walk)
and a dense evaluation in extended precision; and the cuda backend's point_sweep route through the planner
with that harness standing in for ``_cuda.point_sweep``. On a GPU, tests/test_cuda.py checks the kernels
bitwise against this harness."""
import numpy as np
import pytest

core = pytest.importorskip("reluflow._core")

import reluflow as rf  # noqa: E402
from reluflow.backends import cpu as cpu_backend  # noqa: E402
from reluflow.backends import cuda as cuda_backend  # noqa: E402
from reluflow.backends import get as backend_for  # noqa: E402
from reluflow.layout import Layout  # noqa: E402
from reluflow.plan import plan as make_plan  # noqa: E402
from test_cuda_harness import HarnessExtension, host_cuda  # noqa: E402, F401  (the fixture)


def dense_long_double(theta, out, x, w, y):
    """Risk and gradient of [1, H, out] nets by the dense formulas in long double, the activity decided
    in float64 as the kernels decide it (w x rounded, then + b, > 0)."""
    H = (theta.shape[1] - out) // (2 + out)
    L = np.longdouble
    risks, grads = [], []
    for t in theta:
        a, b = t[:H], t[H:2 * H]
        V, c = t[2 * H:2 * H + out * H].reshape(out, H).astype(L), t[2 * H + out * H:].astype(L)
        act = (np.multiply.outer(x, a) + b) > 0
        xl = x.astype(L)
        h = np.where(act, np.multiply.outer(xl, a.astype(L)) + b.astype(L), L(0))
        r = h @ V.T + c - y.astype(L)
        wr = w.astype(L)[:, None] * r
        back = 2 * (wr @ V) * act
        risks.append((wr * r).sum())
        grads.append(np.concatenate([(back * xl[:, None]).sum(0), back.sum(0), (2 * wr.T @ h).ravel(),
                                     2 * wr.sum(0)]))
    return np.array(risks), np.array(grads)


def scaled_err(a, b):
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300)) if a.size else 0.0


def sweep_case(seed, K, H, out, N, kinks_on_nodes=True, flat=False):
    """Random nets and nodes, with the hard spots: nodes exactly on kinks, repeated nodes, -0.0 and +0.0,
    neurons with w = 0 (active everywhere or nowhere)."""
    rng = np.random.default_rng(seed)
    P = H * (2 + out) + out
    theta = rng.normal(size=(K, P))
    x = rng.uniform(-1.0, 2.0, size=N)
    if N >= 8:
        x[N // 2:N // 2 + 3] = x[0]                      # ties
        x[3], x[4] = -0.0, 0.0
        if kinks_on_nodes:
            m = min(H, N // 4)
            x[5:5 + m] = -theta[0, H:H + m] / theta[0, :m]  # on network 0's kinks
    if flat and H >= 4:
        theta[:, 0], theta[:, H] = 0.0, 0.7                # w = 0, b > 0: active everywhere
        theta[:, 1], theta[:, H + 1] = 0.0, -0.2           # w = 0, b < 0: never active
        theta[:, 2], theta[:, H + 2] = 0.0, 0.0            # relu'(0) = 0
    x = x[np.isfinite(x)]
    N = x.size
    return theta, x, rng.uniform(0.1, 1.0, size=N), rng.normal(size=(N, out))


# (H, N): one chunk, several node chunks (N > 2048), several event chunks (2 H > 2048), tiny and empty
SIZES = [(5, 7), (40, 1000), (30, 5000), (1500, 3000), (3, 1), (4, 0), (1, 12)]


@pytest.mark.parametrize("out", [1, 2, 3])
@pytest.mark.parametrize("H,N", SIZES, ids=[f"H{h}-N{n}" for h, n in SIZES])
def test_point_sweep_grid_equals_cpu_sweep_and_extended_precision(H, N, out):
    theta, x, w, y = sweep_case(H * 131 + N + out, 3, H, out, N, flat=True)
    r, g = core._harness_point_sweep(theta, out, x, w, y)
    r0, g0 = core.shallow1d_points(theta, out, x, w, y)
    assert scaled_err(r, r0) <= 1e-12 and scaled_err(g, g0) <= 1e-12
    rl, gl = dense_long_double(theta, out, x, w, y)
    # double-double scans: what is left is the rounding of each node's residual (a few units)
    assert scaled_err(r, rl) <= 1e-14 and scaled_err(g, gl) <= 1e-14
    if N == 0:
        assert np.array_equal(r, np.zeros(3)) and np.array_equal(g, np.zeros_like(g))


def test_point_sweep_grid_bits_do_not_depend_on_the_batch_or_the_group():
    theta, x, w, y = sweep_case(7, 5, 300, 2, 4000)
    r, g = core._harness_point_sweep(theta, 2, x, w, y)
    for group in (1, 2, 3):
        rg, gg = core._harness_point_sweep(theta, 2, x, w, y, group=group)
        assert np.array_equal(rg, r) and np.array_equal(gg, g)
    for k in (0, 4):
        rk, gk = core._harness_point_sweep(theta[k:k + 1], 2, x, w, y)
        assert np.array_equal(rk, r[k:k + 1]) and np.array_equal(gk, g[k:k + 1])
    # the nodes' order in the input does not matter (the sort is stable and the ties hold equal nodes)
    perm = np.random.default_rng(1).permutation(x.size)
    rp, gp = core._harness_point_sweep(theta, 2, x[perm], w[perm], y[perm])
    assert scaled_err(rp, r) <= 1e-15 and scaled_err(gp, g) <= 1e-15


def test_point_sweep_grid_non_finite_network_is_nan_alone():
    theta, x, w, y = sweep_case(3, 3, 20, 1, 500)
    theta[1, 4] = np.nan
    theta[2, 0] = np.inf
    r, g = core._harness_point_sweep(theta, 1, x, w, y)
    assert np.isnan(r[1:]).all() and np.isnan(g[1:]).all()
    r0, g0 = core._harness_point_sweep(theta[:1], 1, x, w, y)
    assert np.array_equal(r[:1], r0) and np.array_equal(g[:1], g0)


def test_point_sweep_grid_refuses_bad_arguments():
    theta, x, w, y = sweep_case(0, 1, 4, 1, 10)
    with pytest.raises(ValueError, match="group"):
        core._harness_point_sweep(theta, 1, x, w, y, group=0)
    with pytest.raises(ValueError, match="x"):
        core._harness_point_sweep(theta, 1, np.where(np.arange(10) == 2, np.nan, x), w, y)
    with pytest.raises(ValueError, match="out_dim"):
        core._harness_point_sweep(np.zeros((1, 4 * 6 + 4)), 4, x, w, np.zeros((10, 4)))


# ---- the cuda backend's point_sweep route, the harness standing in for the device ---------------------

HAT = rf.targets.PiecewiseLinear([0.0, 0.5, 1.0], [0.0, 1.0, 0.0])


@pytest.mark.parametrize("estimator", [rf.MonteCarlo(3000, seed=1), rf.QuasiMonteCarlo(1024, seed=2),
                                       rf.MonteCarlo(500, seed=3, resample=True),
                                       rf.Points(np.linspace(0.0, 1.0, 77)[:, None])], ids=repr)
@pytest.mark.parametrize("out", [1, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_cuda_backend_point_sweep_route_like_cpu(host_cuda, estimator, out, dtype):
    target = HAT if out == 1 else rf.targets.Affine(np.arange(1.0, out + 1.0)[:, None], np.zeros(out))
    prob = rf.Problem([1, 40, out], target)
    theta = prob.init(3, seed=4).astype(dtype)
    p = make_plan(prob.spec, estimator, "cuda", theta.dtype, "sweep")
    assert p.route == "point_sweep" and backend_for(p) is cuda_backend
    assert "point sweep on the device" in p.explain()
    before = host_cuda.sweeps
    r, g = backend_for(p).evaluate(p, prob.spec, theta, 2, True)
    assert host_cuda.sweeps == before + 1
    pc = make_plan(prob.spec, estimator, "cpu", theta.dtype, "sweep")
    r0, g0 = cpu_backend.evaluate(pc, prob.spec, theta, 2, True)
    assert scaled_err(r, r0) <= 1e-12 and scaled_err(g, g0) <= 1e-12
    r1, none = backend_for(p).evaluate(p, prob.spec, theta, 2, False)
    assert none is None and np.array_equal(r1, r)


def test_cuda_planner_picks_the_point_sweep_by_n_and_h_only():
    prob = rf.Problem([1, 65536, 1], HAT)
    big = make_plan(prob.spec, rf.MonteCarlo(10 ** 6, seed=0), "cuda")
    assert big.route == "point_sweep"
    small = make_plan(rf.Problem([1, 100, 1], HAT).spec, rf.MonteCarlo(1024, seed=0), "cuda")
    assert small.route == "dense" and small.loop == "CUDA"
    with pytest.raises(ValueError, match="method: 'sweep'"):
        make_plan(rf.Problem([1, 8, 4], rf.targets.Affine(np.ones((4, 1)), np.zeros(4))).spec,
                  rf.MonteCarlo(100, seed=0), "cuda", np.float64, "sweep")
    with pytest.raises(ValueError, match="method: 'sweep'"):
        make_plan(rf.Problem([2, 8, 1], rf.targets.Affine(np.ones((1, 2)), np.zeros(1))).spec,
                  rf.MonteCarlo(100, seed=0), "cuda", np.float64, "sweep")


def test_cuda_point_sweep_checks_arguments(host_cuda):
    lay = Layout([1, 5, 1])
    theta, x, w, y = np.zeros((2, lay.num_params)), np.linspace(0, 1, 10), np.ones(10), np.zeros((10, 1))
    with pytest.raises(ValueError, match="theta"):
        cuda_backend.point_sweep(lay, theta[:, 1:], x, w, y)
    with pytest.raises(ValueError, match="x"):
        cuda_backend.point_sweep(lay, theta, np.zeros((10, 2)), w, y)
    with pytest.raises(ValueError, match="x: expected finite"):
        cuda_backend.point_sweep(lay, theta, np.where(x > 0.5, np.inf, x), w, y)
    with pytest.raises(ValueError, match="w"):
        cuda_backend.point_sweep(lay, theta, x, w[1:], y)
    with pytest.raises(ValueError, match="y"):
        cuda_backend.point_sweep(lay, theta, x, w, y[1:])
    with pytest.raises(ValueError, match="layout"):
        cuda_backend.point_sweep(Layout([2, 5, 1]), np.zeros((1, 21)), x, w, y)


# ---- the exact quadrature sweep's grid ---------------------------------------------------------------

def exact_case(seed, K, H, out, tdeg, ddeg, hard=True):
    """A piecewise-polynomial target (degree tdeg) and density (degree ddeg) on [-1, 2], random nets with
    the hard spots: kinks outside the support, on the grid's breaks, on each other, w = 0 neurons."""
    rng = np.random.default_rng(seed)
    tb = np.array([-1.0, -0.2, 0.5, 2.0])
    target = rf.targets.PiecewisePolynomial(tb, rng.normal(size=(3, tdeg + 1, out)))
    db = np.array([-1.0, 0.0, 1.3, 2.0])
    dc = np.abs(rng.normal(size=(3, ddeg + 1)))
    dc[:, 0] += 0.5
    dc[:, 1:] *= 0.1                                   # local powers >= 0: positive on its pieces
    prob = rf.Problem([1, H, out], target, rf.dists.PiecewisePolynomial(db, dc))
    theta = prob.init(K, seed=seed)
    if hard and H >= 8:
        w, b = theta[:, :H], theta[:, H:2 * H]
        b[:, 0] = -w[:, 0] * 5.0                       # kink right of the support
        b[:, 1] = w[:, 1] * 3.0                        # kink left of it
        b[:, 2] = -w[:, 2] * 0.5                       # kink on a target break
        b[:, 3] = -w[:, 3] * 0.0                       # kink on a density break (0.0)
        w[:, 4], b[:, 4] = w[:, 5], b[:, 5]            # two kinks on each other
        w[:, 6], b[:, 6] = 0.0, 0.3                    # w = 0, active everywhere
        w[:, 7], b[:, 7] = 0.0, -0.3                   # w = 0, never active
    return prob, theta


EXACT = [(1, 12, 1, 0), (2, 40, 2, 1), (3, 9, 0, 2), (1, 1500, 3, 2), (2, 3, 1, 0), (1, 1, 1, 1)]


@pytest.mark.parametrize("out,H,tdeg,ddeg", EXACT, ids=[f"out{o}-H{h}-t{t}-d{d}" for o, h, t, d in EXACT])
def test_exact_sweep_grid_equals_cpu_sweep_and_partition(out, H, tdeg, ddeg):
    prob, theta = exact_case(H + 7 * out + tdeg, 3, H, out, tdeg, ddeg)
    spec = prob.spec.native()
    r, g = core._harness_exact_sweep(theta, out, spec=spec)
    r0, g0 = core.shallow1d_exact(theta, out, spec=spec)
    assert scaled_err(r, r0) <= 1e-12 and scaled_err(g, g0) <= 1e-12
    # an independent path: Gauss–Legendre on each network's kink partition (kinks1d.h)
    r1, g1 = prob.risk_and_grad(theta, rf.Quadrature(method="partition"), backend="cpu")
    assert scaled_err(r, r1) <= 1e-12 and scaled_err(g, g1) <= 1e-12
    rg, gg = core._harness_exact_sweep(theta, out, spec=spec, group=2)
    assert np.array_equal(rg, r) and np.array_equal(gg, g)
    r2, g2 = core._harness_exact_sweep(theta[1:2], out, spec=spec)
    assert np.array_equal(r2, r[1:2]) and np.array_equal(g2, g[1:2])


def test_exact_sweep_grid_non_finite_network_and_bad_arguments():
    prob, theta = exact_case(5, 2, 10, 1, 1, 0)
    theta[1, 3] = np.nan
    r, g = core._harness_exact_sweep(theta, 1, spec=prob.spec.native())
    assert np.isnan(r[1]) and np.isnan(g[1]).all() and np.isfinite(r[0]) and np.isfinite(g[0]).all()
    with pytest.raises(ValueError, match="group"):
        core._harness_exact_sweep(theta, 1, spec=prob.spec.native(), group=0)
    with pytest.raises(ValueError, match="out_dim"):
        core._harness_exact_sweep(np.zeros((1, 4 * 6 + 4)), 4, spec=prob.spec.native())


@pytest.mark.parametrize("out", [1, 2, 4])
def test_cuda_backend_exact_sweep_route_like_cpu(host_cuda, out):
    """Quadrature() on the cuda backend plans the device's exact sweep for out <= 3 (the cpu sweep for
    more outputs with method='sweep'; the partition path by default there) and gives the cpu values."""
    prob, theta = exact_case(11 + out, 3, 30, out, 2, 1)
    theta32 = theta.astype(np.float32)
    auto = make_plan(prob.spec, rf.Quadrature(), "cuda", theta.dtype)
    assert auto.route == ("exact_sweep" if out <= 3 else "partition")
    p = make_plan(prob.spec, rf.Quadrature(method="sweep"), "cuda", theta.dtype)
    assert p.route == "exact_sweep" and backend_for(p) is cuda_backend
    sweeps = host_cuda.sweeps
    r, g = backend_for(p).evaluate(p, prob.spec, theta, 0, True)
    assert host_cuda.sweeps == sweeps + (out <= 3)
    r0, g0 = cpu_backend.evaluate(make_plan(prob.spec, rf.Quadrature(), "cpu", theta.dtype), prob.spec, theta, 0, True)
    assert scaled_err(r, r0) <= 1e-12 and scaled_err(g, g0) <= 1e-12
    r32, none = backend_for(p).evaluate(p, prob.spec, theta32, 0, False)   # float32 theta: widened
    assert none is None and scaled_err(r32, cpu_backend.evaluate(p, prob.spec, theta32, 0, False)[0]) <= 1e-12
    if out <= 3:
        assert "CUDA" in auto.explain()


def test_cuda_quadrature_keeps_the_partition_path_where_the_sweep_does_not_apply():
    """Quadrature() on cuda with a target the exact sweep does not take (a Function, a Teacher), more than
    3 outputs, or an inexact order: the partition path, planned without error."""
    fn = rf.Problem([1, 5, 1], rf.targets.Function(np.sin, out_dim=1))
    teacher = rf.Problem([1, 5, 1], rf.targets.Teacher([1, 3, 1], np.ones(10)))
    wide = rf.Problem([1, 5, 4], rf.targets.Affine(np.ones((4, 1)), np.zeros(4)))
    for prob in (fn, teacher, wide):
        assert make_plan(prob.spec, rf.Quadrature(), "cuda").route == "partition"
    low = make_plan(rf.Problem([1, 5, 1], HAT).spec, rf.Quadrature(order=1), "cuda")
    assert low.route == "partition" and "below the exact order" in low.explain()


def test_cuda_exact_sweep_checks_arguments(host_cuda):
    prob, theta = exact_case(2, 2, 6, 1, 1, 0)
    with pytest.raises(ValueError, match="theta: expected shape"):
        cuda_backend.exact_sweep(prob.spec, theta[:, 1:])
    with pytest.raises(ValueError, match="theta: expected shape"):
        cuda_backend.exact_sweep(prob.spec, np.zeros((2, 3, prob.num_params)))
    fn = rf.Problem([1, 6, 1], rf.targets.Function(np.sin, out_dim=1))
    with pytest.raises(ValueError, match="problem"):
        cuda_backend.exact_sweep(fn.spec, fn.init(1, seed=0))
    r, g = cuda_backend.exact_sweep(prob.spec, theta[0])   # one network as (P,)
    assert r.shape == (1,) and g.shape == (1, prob.num_params)
