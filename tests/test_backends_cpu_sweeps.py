"""Shallow 1-D sweeps (reluflow.backends.cpu.shallow1d_exact / shallow1d_points, _core.shallow1d_*).

The judges are the general paths: the Gauss–Legendre-on-the-kink-partition quadrature
(``reluflow.quadrature`` with the numpy backend) for the exact sweep, and the dense reference kernel
(``reluflow.backends.reference.risk_and_grad``) for the point sweep, plus a few closed forms.

Tolerances. Both sides compute the same float64 quantities in a different order:

* exact sweep vs partition: the partition path sums ``w_j |r_j|^2`` over Gauss–Legendre nodes with the
  network evaluated neuron by neuron; the sweep evaluates ``N = A (x - c0) + B`` from running
  (compensated) sums of the neurons' affine pieces, uses its own Gauss–Legendre nodes (Newton, vs
  numpy's eigenvalue method: both within an ulp or two), and gets each neuron's gradient from
  compensated prefix/suffix sums of the residual's moments over the pieces. The gradient of a neuron
  is a difference-free sum over its half-line, but ``dV`` and ``dw`` are formed as
  ``w S1 + z(c0) S0`` and ``S1 + c0 S0``, which can cancel by a factor (|x| + |kink|) / |x - kink|
  for kinks far outside a small domain. Observed: ~2e-15 on the random cases below; we test
  ``rel <= 1e-10`` (risk) and ``normwise <= 1e-9`` (gradient): a few digits of margin for that
  cancellation and for random cases with larger condition numbers, and still far below any error of
  the algorithm (a wrong piece, a misplaced kink, a missing moment are all O(1e-3) or larger).
* point sweep vs dense kernel: same terms, different summation order, no quadrature difference;
  the forward pass error is ~ eps * sum_i |V_i| |z_i| for both; observed ~3e-15; we test 1e-12
  (relative risk, normwise gradient) on well-conditioned random cases (residuals O(1)).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import reluflow as rf
from reluflow.backends import cpu as cpu_backend
from reluflow.backends import reference
from conftest import evaluate

core = pytest.importorskip("reluflow._core")
if not hasattr(core, "shallow1d_exact"):  # pragma: no cover
    pytest.skip("reluflow._core has no shallow1d sweeps", allow_module_level=True)

RTOL_EXACT_RISK = 1e-10
RTOL_EXACT_GRAD = 1e-9
RTOL_POINTS = 1e-12


# ---- helpers --------------------------------------------------------------------------------------

def make_target(kind, out, rng):
    if kind == "affine":
        return rf.targets.Affine(rng.normal(size=(out, 1)), rng.normal(size=out))
    if kind == "pwl":
        knots = np.sort(rng.uniform(-1.0, 2.0, 6))
        return rf.targets.PiecewiseLinear(knots, rng.normal(size=(6, out)))
    if kind == "cubic":
        breaks = np.sort(rng.uniform(-1.0, 2.0, 5))
        return rf.targets.PiecewisePolynomial(breaks, rng.normal(size=(4, 4, out)))
    raise AssertionError(kind)


def make_density(kind, rng):
    if kind == "uniform":
        a = rng.uniform(-1.5, 0.5)
        return rf.dists.Uniform(a, a + rng.uniform(0.5, 2.5))
    if kind == "quad3":  # 3-piece quadratic density
        return rf.dists.PiecewisePolynomial([-0.5, 0.2, 0.7, 1.5], np.abs(rng.normal(size=(3, 3))) + 0.1)
    raise AssertionError(kind)


def partition(prob, theta):
    """The general path: Gauss–Legendre on the kink partition, dense reference kernel per network."""
    return evaluate(prob, theta, rf.Quadrature(), backend="numpy")


def assert_exact_close(prob, theta, rtol_risk=RTOL_EXACT_RISK, rtol_grad=RTOL_EXACT_GRAD):
    r0, g0 = partition(prob, theta)
    r1, g1 = cpu_backend.shallow1d_exact(prob.spec, theta)
    assert r1.dtype == np.float64 and g1.dtype == np.float64
    assert r1.shape == r0.shape and g1.shape == g0.shape
    np.testing.assert_array_less(np.abs(r1 - r0), rtol_risk * np.abs(r0) + 1e-300)
    gscale = np.linalg.norm(g0, axis=1)
    np.testing.assert_array_less(np.linalg.norm(g1 - g0, axis=1), rtol_grad * gscale + 1e-300)
    return r1, g1


def assert_points_close(prob, theta, x, w, y, rtol=RTOL_POINTS):
    r0, g0 = reference.risk_and_grad(prob.layout, theta, np.asarray(x, dtype=np.float64).reshape(-1, 1), w, y)
    r1, g1 = cpu_backend.shallow1d_points(prob.layout, theta, x, w, y)
    np.testing.assert_array_less(np.abs(r1 - r0), rtol * np.abs(r0) + 1e-300)
    np.testing.assert_array_less(np.linalg.norm(g1 - g0, axis=1), rtol * np.linalg.norm(g0, axis=1) + 1e-300)
    return r1, g1


def split(theta, H, out):
    """(w, b, V, c) views of one flat shallow parameter vector."""
    return theta[:H], theta[H:2 * H], theta[2 * H:2 * H + out * H].reshape(out, H), theta[2 * H + out * H:]


# ---- exact sweep == partition path ------------------------------------------------------------------

@pytest.mark.parametrize("density", ["uniform", "quad3"])
@pytest.mark.parametrize("target", ["affine", "pwl", "cubic"])
@pytest.mark.parametrize("H", [1, 2, 7, 64, 300])
def test_exact_matches_partition(target, density, H):
    rng = np.random.default_rng([H, len(target), len(density)])
    for out in (1, 2, 3):
        prob = rf.Problem([1, H, out], make_target(target, out, rng), make_density(density, rng))
        theta = rng.normal(size=(3, prob.num_params))
        assert_exact_close(prob, theta)


def test_exact_closed_form():
    """One neuron relu(x - 1/2) on U[0, 1], target 0: risk ∫_{1/2}^1 (x - 1/2)^2 = 1/24."""
    prob = rf.Problem([1, 1, 1], rf.targets.Affine([0.0]), rf.dists.Uniform(0.0, 1.0))
    r, g = cpu_backend.shallow1d_exact(prob.spec, np.array([[1.0, -0.5, 1.0, 0.0]]))
    np.testing.assert_allclose(r, [1 / 24], rtol=1e-15)
    # dw = 2∫(x-1/2)x, db = 2∫(x-1/2), dV = 2∫(x-1/2)^2, dc = 2∫(x-1/2)  over [1/2, 1]
    np.testing.assert_allclose(g, [[5 / 24, 1 / 4, 1 / 12, 1 / 4]], rtol=1e-14)


def test_exact_constant_neurons():
    """w_i = 0: active everywhere iff b_i > 0; b_i <= 0 gives an exactly zero gradient (relu'(0) = 0)."""
    rng = np.random.default_rng(1)
    H, out = 6, 2
    prob = rf.Problem([1, H, out], make_target("pwl", out, rng), rf.dists.Uniform(-0.5, 1.5))
    theta = rng.normal(size=(2, prob.num_params))
    for th in theta:
        w, b, _, _ = split(th, H, out)
        w[:3] = 0.0
        b[0], b[1], b[2] = 0.7, -0.3, 0.0
    _, g = assert_exact_close(prob, theta)
    for gk in g:
        gw, gb, gV, _ = split(gk, H, out)
        assert gw[1] == 0 and gb[1] == 0 and np.all(gV[:, 1] == 0)
        assert gw[2] == 0 and gb[2] == 0 and np.all(gV[:, 2] == 0)
        assert np.all(gV[:, 0] != 0)


def test_exact_all_neurons_constant():
    rng = np.random.default_rng(2)
    H = 4
    prob = rf.Problem([1, H, 1], make_target("cubic", 1, rng), make_density("quad3", rng))
    theta = rng.normal(size=(1, prob.num_params))
    theta[0, :H] = 0.0
    assert_exact_close(prob, theta)


def test_exact_kinks_outside_support():
    rng = np.random.default_rng(3)
    H, out = 8, 1
    prob = rf.Problem([1, H, out], make_target("pwl", out, rng), rf.dists.Uniform(0.0, 1.0))
    theta = rng.normal(size=(1, prob.num_params))
    w, b, _, _ = split(theta[0], H, out)
    # kinks at -3, -1e-9 below lo, 1 + 1e-9 above hi, 5, with both signs of w
    w[:] = [1.0, -2.0, 1.5, -0.5, 3.0, -1.0, 2.0, -4.0]
    kinks = np.array([-3.0, -3.0, -1e-9, -1e-9, 1 + 1e-9, 1 + 1e-9, 5.0, 5.0])
    b[:] = -kinks * w
    r, g = assert_exact_close(prob, theta)
    gw, gb, gV, _ = split(g[0], H, out)
    # w > 0 with kink above hi, w < 0 with kink below lo: active nowhere, zero gradient
    for i in (1, 3, 4, 6):
        assert gw[i] == 0 and gb[i] == 0 and gV[0, i] == 0


def test_exact_kinks_at_support_ends_and_breaks():
    """Kinks exactly at lo, hi, a target break and a density break; coinciding kinks."""
    rng = np.random.default_rng(4)
    H, out = 10, 2
    tgt = rf.targets.PiecewiseLinear([0.0, 0.5, 1.0], rng.normal(size=(3, out)))
    dens = rf.dists.PiecewisePolynomial([0.0, 0.25, 1.0], [[1.0, 2.0], [1.5, -0.5]])
    prob = rf.Problem([1, H, out], tgt, dens)
    theta = rng.normal(size=(2, prob.num_params))
    for th in theta:
        w, b, _, _ = split(th, H, out)
        w[:] = [1.0, -1.0, 2.0, -2.0, 4.0, -4.0, 1.0, 1.0, -1.0, 0.5]
        kinks = np.array([0.0, 0.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25, 0.75])
        b[:] = -kinks * w
        assert np.all(-b / w == kinks)  # exactly representable
    assert_exact_close(prob, theta)


def test_exact_coinciding_random_kinks():
    rng = np.random.default_rng(5)
    H = 40
    prob = rf.Problem([1, H, 1], make_target("cubic", 1, rng), make_density("uniform", rng))
    theta = rng.normal(size=(2, prob.num_params))
    theta[:, H // 2:H] = theta[:, :H // 2]            # duplicated neurons: identical kinks
    theta[:, H + H // 2:2 * H] = theta[:, H:H + H // 2]
    assert_exact_close(prob, theta)


def test_exact_large_width():
    rng = np.random.default_rng(6)
    H = 2000
    prob = rf.Problem([1, H, 1], make_target("pwl", 1, rng), make_density("quad3", rng))
    theta = rng.normal(size=(1, prob.num_params)) / np.sqrt([1.0] * 2 * H + [H] * H + [1.0])
    assert_exact_close(prob, theta)


def test_exact_float32_theta():
    rng = np.random.default_rng(7)
    prob = rf.Problem([1, 50, 2], make_target("cubic", 2, rng), make_density("quad3", rng))
    th32 = rng.normal(size=(4, prob.num_params)).astype(np.float32)
    r32, g32 = cpu_backend.shallow1d_exact(prob.spec, th32)
    r64, g64 = cpu_backend.shallow1d_exact(prob.spec, th32.astype(np.float64))
    assert r32.dtype == np.float64 and g32.dtype == np.float64
    np.testing.assert_array_equal(r32, r64)
    np.testing.assert_array_equal(g32, g64)
    assert_exact_close(prob, th32)
    # through the dispatcher (backend "cpu") too
    r, g = evaluate(prob, th32, rf.Quadrature(), backend="cpu")
    np.testing.assert_array_equal(r, r64)
    np.testing.assert_array_equal(g, g64)


def test_exact_deterministic_across_batch():
    """Each network is computed by one thread: the batch result equals the one-by-one results bitwise."""
    rng = np.random.default_rng(8)
    prob = rf.Problem([1, 97, 2], make_target("pwl", 2, rng), make_density("quad3", rng))
    theta = rng.normal(size=(16, prob.num_params))
    r, g = cpu_backend.shallow1d_exact(prob.spec, theta)
    for k in (0, 5, 15):
        rk, gk = cpu_backend.shallow1d_exact(prob.spec, theta[k])
        assert rk[0] == r[k] and np.array_equal(gk[0], g[k])


def test_exact_nonfinite_network_is_nan_only_there():
    rng = np.random.default_rng(9)
    prob = rf.Problem([1, 5, 1], make_target("affine", 1, rng))
    theta = rng.normal(size=(3, prob.num_params))
    theta[1, 2] = np.nan
    r, g = cpu_backend.shallow1d_exact(prob.spec, theta)
    assert np.isnan(r[1]) and np.all(np.isnan(g[1]))
    r0, g0 = cpu_backend.shallow1d_exact(prob.spec, theta[[0, 2]])
    np.testing.assert_array_equal(r[[0, 2]], r0)
    np.testing.assert_array_equal(g[[0, 2]], g0)


# ---- dispatch -------------------------------------------------------------------------------------

def _quadrature(method=None, **kw):
    est = rf.Quadrature(**kw)
    if method is not None:
        est.method = method  # the attribute the lead adds to Quadrature; read with getattr
    return est


def test_dispatch_rule():
    rng = np.random.default_rng(10)
    prob = rf.Problem([1, 20, 1], make_target("pwl", 1, rng))
    assert prob.plan(_quadrature(), backend="cpu").route == "exact_sweep"
    assert prob.plan(_quadrature(), backend="numpy").route == "partition"
    assert prob.plan(_quadrature("partition"), backend="cpu").route == "partition"
    assert prob.plan(_quadrature("sweep"), backend="numpy").route == "exact_sweep"
    # an explicit order below the exact one asks for the (inexact) partition rule
    assert prob.plan(_quadrature(order=1), backend="cpu").route == "partition"
    assert prob.plan(_quadrature(order=2), backend="cpu").route == "exact_sweep"
    # not shallow / not supported: the partition path under auto
    deep = rf.Problem([1, 8, 8, 1], make_target("pwl", 1, rng))
    assert deep.plan(_quadrature(), backend="cpu").route == "partition"
    teacher = rf.Problem([1, 8, 1], rf.targets.Teacher([1, 3, 1], rng.normal(size=10)))
    assert teacher.plan(_quadrature(), backend="cpu").route == "partition"
    assert teacher.spec.exact_sweep_unsupported() and deep.spec.exact_sweep_unsupported()
    assert prob.spec.exact_sweep_unsupported() is None


def test_dispatch_results():
    rng = np.random.default_rng(11)
    prob = rf.Problem([1, 30, 2], make_target("cubic", 2, rng), make_density("quad3", rng))
    theta = rng.normal(size=(3, prob.num_params))
    r0, g0 = partition(prob, theta)
    r1, g1 = evaluate(prob, theta, _quadrature(), backend="cpu")
    r2, g2 = evaluate(prob, theta, _quadrature("sweep"), backend="numpy")
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_allclose(r1, r0, rtol=RTOL_EXACT_RISK)
    r3, g3 = evaluate(prob, theta, _quadrature(), backend="cpu", want_grad=False)
    assert g3 is None
    np.testing.assert_array_equal(r3, r1)
    # the numpy backend stays the reference: bitwise the partition path
    r4, g4 = evaluate(prob, theta, _quadrature(), backend="numpy")
    np.testing.assert_array_equal(r4, r0)
    np.testing.assert_array_equal(g4, g0)


def test_dispatch_refusals():
    rng = np.random.default_rng(12)
    deep = rf.Problem([1, 4, 4, 1], make_target("pwl", 1, rng))
    theta = deep.init(1)
    with pytest.raises(ValueError, match="estimator: method='sweep'.*shallow"):
        evaluate(deep, theta, _quadrature("sweep"), backend="cpu")
    teacher = rf.Problem([1, 4, 1], rf.targets.Teacher([1, 3, 1], rng.normal(size=10)))
    with pytest.raises(ValueError, match="estimator: method='sweep'.*Teacher"):
        evaluate(teacher, teacher.init(1), _quadrature("sweep"), backend="numpy")
    prob = rf.Problem([1, 4, 1], make_target("pwl", 1, rng))
    with pytest.raises(ValueError, match="estimator: method must be one of"):
        evaluate(prob, prob.init(1), _quadrature("fast"), backend="numpy")
    with pytest.raises(ValueError, match="problem:"):
        cpu_backend.shallow1d_exact(teacher.spec, teacher.init(1))
    with pytest.raises(ValueError, match="problem:"):
        cpu_backend.shallow1d_points(deep.layout, theta, np.zeros(3), np.ones(3), np.zeros((3, 1)))


def test_teacher_falls_back_and_matches():
    """A Teacher target under auto/cpu is not swept: it runs the partition path (in C++ on cpu), the
    numpy result to rounding."""
    rng = np.random.default_rng(13)
    prob = rf.Problem([1, 6, 1], rf.targets.Teacher([1, 3, 1], rng.normal(size=10)))
    theta = prob.init(2, seed=3)
    assert prob.plan(_quadrature(), backend="cpu").route == "partition"
    r0, g0 = partition(prob, theta)
    r1, g1 = evaluate(prob, theta, _quadrature(), backend="cpu")
    np.testing.assert_allclose(r1, r0, rtol=1e-12)
    np.testing.assert_allclose(g1, g0, rtol=1e-11, atol=1e-13 * np.abs(g0).max())


# ---- point sweep == dense reference -----------------------------------------------------------------

@pytest.mark.parametrize("H", [1, 3, 50, 300])
@pytest.mark.parametrize("out", [1, 2, 3])
def test_points_matches_dense(H, out):
    rng = np.random.default_rng([H, out, 77])
    prob = rf.Problem([1, H, out], rf.targets.Affine(np.ones((out, 1))))
    for N in (1, 2, 17, 1000):
        theta = rng.normal(size=(3, prob.num_params))
        x = rng.uniform(-2.0, 2.0, N)
        w = rng.uniform(0.0, 1.0, N)
        y = rng.normal(size=(N, out))
        assert_points_close(prob, theta, x, w, y)


def test_points_ties_and_nodes_on_kinks():
    """Dyadic nodes with many ties, dyadic kinks: many nodes lie exactly on a kink (inactive there)."""
    rng = np.random.default_rng(14)
    H, out, N = 64, 2, 3000
    prob = rf.Problem([1, H, out], rf.targets.Affine(np.ones((out, 1))))
    theta = rng.normal(size=(4, prob.num_params))
    for th in theta:
        w, b, _, _ = split(th, H, out)
        w[:] = rng.choice([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 4.0], size=H)
        kinks = np.round(rng.uniform(-2.0, 2.0, H) * 8) / 8
        b[:] = -kinks * w
    x = np.round(rng.uniform(-2.0, 2.0, N) * 8) / 8
    w_nodes = rng.uniform(0.0, 1.0, N)
    y = rng.normal(size=(N, out))
    assert_points_close(prob, theta, x, w_nodes, y)


def test_points_relu_prime_zero_at_kink():
    """w = 1, b = -0.5, node x = 0.5: the pre-activation is exactly 0, the neuron is inactive there."""
    prob = rf.Problem([1, 1, 1], rf.targets.Affine([0.0]))
    for th in ([1.0, -0.5, 1.0, 0.0], [-1.0, 0.5, 1.0, 0.0], [3.0, -1.0, 1.0, 0.0]):
        theta = np.array([th])
        x = np.array([0.5]) if th[0] != 3.0 else np.array([1.0 / 3.0])  # fl(3 * fl(1/3)) == 1
        assert th[0] * x[0] + th[1] == 0.0
        r, g = cpu_backend.shallow1d_points(prob.layout, theta, x, np.array([1.0]), np.array([[1.0]]))
        # N(x) = c = 0, r = -1: only dc = 2 r is nonzero
        np.testing.assert_array_equal(r, [1.0])
        np.testing.assert_array_equal(g, [[0.0, 0.0, 0.0, -2.0]])
        assert_points_close(prob, theta, x, np.array([1.0]), np.array([[1.0]]))


@pytest.mark.parametrize("H", [40, 4500])
def test_points_nodes_at_rounded_kinks(H):
    """Nodes at the computed kinks fl(-b/w) and their float neighbours, where the rounded
    pre-activation fl(fl(w x) + b) decides activity: the sweep must use the same comparison (also
    for H past the kink-ordered path)."""
    rng = np.random.default_rng(15)
    out = 1
    prob = rf.Problem([1, H, out], rf.targets.Affine([[1.0]]))
    theta = rng.normal(size=(3, prob.num_params))
    for th in theta:
        th[H + 5] = 0.0                                 # a kink at exactly 0
        th[:2] = [0.0, 0.0]                             # constant neurons, b then set below
        th[H:H + 2] = [0.3, -0.3]
    moving = theta[0, :H] != 0
    ks = -theta[0, H:2 * H][moving] / theta[0, :H][moving]
    x = np.concatenate([ks, np.nextafter(ks, np.inf), np.nextafter(ks, -np.inf)])
    w = rng.uniform(0.1, 1.0, x.size)
    y = rng.normal(size=(x.size, out))
    assert_points_close(prob, theta[:1], x, w, y)
    assert_points_close(prob, theta, x, w, y)


def test_points_constant_neurons():
    rng = np.random.default_rng(16)
    H, out = 5, 2
    prob = rf.Problem([1, H, out], rf.targets.Affine(np.ones((out, 1))))
    theta = rng.normal(size=(1, prob.num_params))
    w, b, _, _ = split(theta[0], H, out)
    w[:3] = 0.0
    b[:3] = [0.4, -0.4, 0.0]
    x = rng.uniform(-1, 1, 100)
    _, g = assert_points_close(prob, theta, x, np.full(100, 0.01), rng.normal(size=(100, out)))
    gw, gb, gV, _ = split(g[0], H, out)
    assert gw[1] == gb[1] == gw[2] == gb[2] == 0 and np.all(gV[:, 1:3] == 0)


@pytest.mark.parametrize("estimator", [rf.MonteCarlo(512, seed=3), rf.QuasiMonteCarlo(256, seed=1),
                                       rf.Points(np.linspace(-1, 2, 33))])
def test_points_with_estimator_nodes(estimator):
    rng = np.random.default_rng(17)
    prob = rf.Problem([1, 32, 2], make_target("pwl", 2, rng), make_density("quad3", rng))
    theta = prob.init(4, seed=1)
    nodes = estimator.nodes(prob, 0)
    y = prob.target_values(nodes)
    assert_points_close(prob, theta, nodes.x[:, 0], nodes.w, y)


def test_points_float32_and_shapes():
    rng = np.random.default_rng(18)
    prob = rf.Problem([1, 20, 1], rf.targets.Affine([[1.0]]))
    th32 = rng.normal(size=(2, prob.num_params)).astype(np.float32)
    x = rng.uniform(0, 1, 64)
    w = np.full(64, 1 / 64)
    y = rng.normal(size=64)
    r, g = cpu_backend.shallow1d_points(prob.layout, th32, x[:, None], w, y)     # x (N, 1), y (N,)
    r64, g64 = cpu_backend.shallow1d_points(prob.layout, th32.astype(np.float64), x, w, y[:, None])
    assert r.dtype == np.float64 and g.dtype == np.float64
    np.testing.assert_array_equal(r, r64)
    np.testing.assert_array_equal(g, g64)
    r0, g0 = core.shallow1d_points(th32.astype(np.float64), 1, x, w, y[:, None])
    np.testing.assert_array_equal(r0, r64)
    # K = 0 and N = 0 are fine
    r, g = core.shallow1d_points(np.zeros((0, prob.num_params)), 1, x, w, y)
    assert r.shape == (0,) and g.shape == (0, prob.num_params)
    r, g = core.shallow1d_points(th32.astype(np.float64), 1, np.zeros(0), np.zeros(0), np.zeros((0, 1)))
    np.testing.assert_array_equal(r, [0.0, 0.0])
    np.testing.assert_array_equal(g, np.zeros_like(g))


@pytest.mark.parametrize("H, N", [(50, 500), (4100, 3000)])
def test_points_deterministic_across_batch(H, N):
    """A network's bits do not depend on the networks beside it (small H: lanes; large H: kink order
    by the node locator's cells, which depend on N and H only)."""
    rng = np.random.default_rng(19)
    prob = rf.Problem([1, H, 1], rf.targets.Affine([[1.0]]))
    theta = rng.normal(size=(12, prob.num_params))
    x = np.round(rng.uniform(-1, 1, N) * 256) / 256   # ties, so that neurons share boundary nodes
    w = rng.uniform(0, 1, N)
    y = rng.normal(size=(N, 1))
    r, g = cpu_backend.shallow1d_points(prob.layout, theta, x, w, y)
    for k in (0, 7, 11):
        rk, gk = cpu_backend.shallow1d_points(prob.layout, theta[k:k + 1], x, w, y)
        assert rk[0] == r[k] and np.array_equal(gk[0], g[k])


@pytest.mark.parametrize("H", [1, 30, 300, 700])
def test_points_lanes_bitwise_equal_single_networks(H):
    """Out = 1, small H: networks go through the sweep 8 at a time (node passes vectorized across
    them); every network's result is bitwise its result alone, also in the tail group and next to
    a network with a NaN parameter (which falls back to one network at a time)."""
    rng = np.random.default_rng(H)
    prob = rf.Problem([1, H, 1], rf.targets.Affine([[1.0]]))
    theta = rng.normal(size=(19, prob.num_params))
    theta[10, 0] = np.nan
    x = rng.uniform(-1, 2, 700)
    w = rng.uniform(0, 1, 700)
    y = rng.normal(size=(700, 1))
    r, g = cpu_backend.shallow1d_points(prob.layout, theta, x, w, y)
    assert np.isnan(r[10]) and np.all(np.isnan(g[10]))
    for k in range(19):
        if k == 10:
            continue
        rk, gk = cpu_backend.shallow1d_points(prob.layout, theta[k:k + 1], x, w, y)
        assert rk[0] == r[k] and np.array_equal(gk[0], g[k]), k
    assert_points_close(prob, np.delete(theta, 10, axis=0), x, w, y)


# ---- bad input to the bindings ----------------------------------------------------------------------

def _exact_args():
    H, out = 3, 2
    return dict(theta=np.zeros((2, H * (2 + out) + out)), out_dim=out, lo=0.0, hi=1.0,
                target_breaks=np.array([0.0, 0.5, 1.0]), target_coeffs=np.zeros((2, 2, out)),
                density_breaks=np.array([0.0, 1.0]), density_coeffs=np.ones((1, 1)))


_SPEC_KEYS = ("lo", "hi", "target_breaks", "target_coeffs", "density_breaks", "density_coeffs")


@pytest.mark.parametrize("name, value", [
    ("theta", np.zeros(12)),
    ("theta", np.zeros((2, 13))),
    ("theta", [["a", "b"]]),
    ("out_dim", 0),
    ("out_dim", "two"),
    ("lo", 2.0),
    ("lo", "zero"),
    ("hi", np.inf),
    ("target_breaks", np.array([0.0, 0.5, 0.5])),
    ("target_breaks", np.array([0.0])),
    ("target_breaks", np.array([0.0, np.nan, 1.0])),
    ("target_coeffs", np.zeros((2, 2, 3))),
    ("target_coeffs", np.zeros((3, 2, 2))),
    ("target_coeffs", np.zeros((2, 2))),
    ("density_breaks", np.array([1.0, 0.0])),
    ("density_coeffs", np.ones((2, 1))),
    ("density_coeffs", np.ones(1)),
    ("density_coeffs", None),
])
def test_exact_binding_bad_input(name, value):
    args = _exact_args()
    args[name] = value
    expected = "lo, hi" if name in ("lo", "hi") and isinstance(value, float) else name
    if name in _SPEC_KEYS:  # the problem is one `spec` dict (ProblemSpec.native()); None is a missing key
        expected = f"spec: ({expected}|missing key '{expected}')"
    spec = {key: args.pop(key) for key in _SPEC_KEYS}
    with pytest.raises(ValueError, match=f"^{expected}"):
        core.shallow1d_exact(**args, spec=spec)


def _points_args():
    H, out, N = 3, 2, 5
    return dict(theta=np.zeros((2, H * (2 + out) + out)), out_dim=out, x=np.linspace(0, 1, N),
                w=np.ones(N), y=np.zeros((N, out)))


@pytest.mark.parametrize("name, value", [
    ("theta", np.zeros((2, 5))),
    ("theta", None),
    ("out_dim", -1),
    ("x", np.zeros((5, 2))),
    ("x", np.array([0.0, 1.0, np.nan, 2.0, 3.0])),
    ("x", "abc"),
    ("w", np.ones(4)),
    ("y", np.zeros((5, 3))),
    ("y", np.zeros(5)),
])
def test_points_binding_bad_input(name, value):
    args = _points_args()
    args[name] = value
    with pytest.raises(ValueError, match=f"^{name}"):
        core.shallow1d_points(**args)


# ---- the point sweep's sort (cpu/radix_sort.cpp): bucket sort, radix fallback, threads -------------

def _sort_cases():
    rng = np.random.default_rng(21)
    n = 200_000
    yield "uniform", rng.uniform(-1.0, 1.0, n)
    yield "small", rng.uniform(-1.0, 1.0, 1000)                       # std::sort path
    yield "ties", np.round(rng.uniform(-2.0, 2.0, 70_000) * 8) / 8     # few distinct values
    signed_zeros = rng.uniform(-1.0, 1.0, 9000)
    signed_zeros[::3], signed_zeros[1::7] = 0.0, -0.0
    yield "signed zeros", signed_zeros
    yield "outlier", np.concatenate([rng.uniform(0.0, 1.0, 50_000), [1e9]])   # clustered: radix fallback
    yield "cauchy", rng.standard_cauchy(80_000)
    yield "gaussian", rng.normal(size=100_000)
    yield "constant", np.full(5000, 0.25)
    yield "huge", np.concatenate([rng.uniform(-1, 1, 5000) * 1e308, [-1.7e308, 1.7e308]])


@pytest.mark.parametrize("case", [c for c, _ in _sort_cases()])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_stable_order_is_numpy_stable_argsort(case, threads):
    x = dict(_sort_cases())[case]
    core = rf.registry.core()[0]
    order, xs = core.stable_order(x, threads)
    key = np.where(x == 0.0, 0.0, x)                 # -0.0 sorts with +0.0
    np.testing.assert_array_equal(order, np.argsort(key, kind="stable"))
    np.testing.assert_array_equal(xs, key[order])


@pytest.mark.parametrize("N", [300, 9000, 100_000])
@pytest.mark.parametrize("nodes", ["smooth", "ties", "clustered"])
@pytest.mark.parametrize("out", [1, 3])
def test_points_sorted_with_payload(nodes, out, N):
    """N past the bucket sort's threshold (256): the nodes' weights and values travel with them
    through the sort (smooth nodes: bucket sort, small cells sorted by one insertion pass per thread;
    tied nodes: cells of more than 32 sorted one by one; clustered: the radix order or std::sort, and
    a gather), any out; N = 1e5: the sort's team of threads."""
    rng = np.random.default_rng([out, 31])
    H = 20
    x = {"smooth": rng.normal(size=N), "ties": np.round(rng.uniform(-1, 1, N) * 16) / 16,
         "clustered": np.concatenate([np.full(N - 50, 0.25), rng.uniform(-1e6, 1e6, 50)])}[nodes]
    x[:3] = [-0.0, 0.0, -0.0]
    prob = rf.Problem([1, H, out], rf.targets.Affine(np.ones((out, 1))))
    theta = rng.normal(size=(2, prob.num_params))
    assert_points_close(prob, theta, x, rng.uniform(0.0, 1.0, N), rng.normal(size=(N, out)))


@pytest.mark.parametrize("H", [1, 3, 200])
def test_points_few_kinks_many_nodes(H):
    """Few kinks over many nodes (the locator's cells hold hundreds of nodes each; a binary search
    inside the cell), kinks inside, outside and at the ends of the node range, dyadic ties."""
    rng = np.random.default_rng([H, 23])
    prob = rf.Problem([1, H, 1], rf.targets.Affine([[1.0]]))
    N = 40_000
    x = np.round(rng.uniform(-1.0, 1.0, N) * 4096) / 4096
    theta = rng.normal(size=(3, prob.num_params))
    w, b, _, _ = split(theta[0], H, 1)
    b[:] = -w * rng.choice(np.concatenate([x[:5], [x.min(), x.max(), -3.0, 3.0]]), size=H)
    assert_points_close(prob, theta, x, rng.uniform(0.0, 1.0, N), rng.normal(size=(N, 1)))


def test_points_large_n_and_h_threads_bitwise():
    """N and H past the sort's thresholds (bucket sort of the nodes, of the kinks): the point sweep
    equals the dense reference, and its bits do not depend on the thread count."""
    rng = np.random.default_rng(22)
    H, N = 5000, 70_000
    prob = rf.Problem([1, H, 1], rf.targets.Affine([[1.0]]))
    theta = rng.normal(size=(2, prob.num_params))
    x = np.round(rng.uniform(-2.0, 2.0, N) * 1024) / 1024          # ties too
    w = rng.uniform(0.0, 1.0, N)
    y = rng.normal(size=(N, 1))
    assert_points_close(prob, theta, x, w, y)
    code = ("import numpy as np, sys; from reluflow.backends import cpu; from reluflow.layout import Layout; "
            "d = np.load(sys.argv[1]); r, g = cpu.shallow1d_points(Layout([1, %d, 1]), d['t'], "
            "d['x'], d['w'], d['y']); r1, g1 = cpu.shallow1d_points(Layout([1, %d, 1]), d['t'][:1], "
            "d['x'], d['w'], d['y']); sys.stdout.buffer.write(r.tobytes() + g.tobytes() + r1.tobytes() + "
            "g1.tobytes())" % (H, H))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "in.npz")
        np.savez(path, t=theta, x=x, w=w, y=y)
        outs = [subprocess.run([sys.executable, "-c", code, path], capture_output=True, check=True,
                               env={**os.environ, "OMP_NUM_THREADS": str(t)}).stdout for t in (1, 2)]
    assert outs[0] == outs[1]
    # K = 2: a network per thread; K = 1: the whole team on one network (searches and gradients split)
    P = prob.num_params
    v = np.frombuffer(outs[1], dtype=np.float64)
    r, g, r1, g1 = v[:2], v[2:2 + 2 * P].reshape(2, P), v[2 + 2 * P:3 + 2 * P], v[3 + 2 * P:].reshape(1, P)
    assert r1[0] == r[0] and np.array_equal(g1[0], g[0])


def test_stable_order_refuses_bad_input():
    core = rf.registry.core()[0]
    with pytest.raises(ValueError, match="x: expected no NaN"):
        core.stable_order(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="x: expected a 1-D array"):
        core.stable_order(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="threads: expected threads >= 1"):
        core.stable_order(np.zeros(3), 0)
