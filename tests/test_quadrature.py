"""``rf.Quadrature`` (reluflow.quadrature) against closed forms and independent integration.

The references here do not use ``kink_partition``: kinks are found by dense evaluation and bisection
of a forward pass written in this file, the integrals by ``scipy.integrate.quad`` / ``quad_vec`` on
the pieces between them (polynomial integrands there), or in closed form with mpmath.
"""
import warnings
import zlib

import mpmath
import numpy as np
import pytest
from scipy import integrate

import reluflow as rf
from conftest import forward_1d, python_driver
from reluflow.quadrature import DEFAULT_CELLS, kink_partition, quadrature_nodes

# ---- independent helpers -----------------------------------------------------------------------


def unpack(widths, theta):
    """[(W_k, b_k)] of one flat parameter vector (SPEC §1), written independently of Layout."""
    theta = np.asarray(theta, dtype=np.float64)
    out, off = [], 0
    for k in range(1, len(widths)):
        W = theta[off:off + widths[k] * widths[k - 1]].reshape(widths[k], widths[k - 1])
        off += widths[k] * widths[k - 1]
        b = theta[off:off + widths[k]]
        off += widths[k]
        out.append((W, b))
    assert off == theta.size
    return out


def forward(widths, theta, x):
    """1-D points x (n,) -> (hidden pre-activations [(n, l_k)], activations [a_0..a_{L-1}], output (n, out))."""
    return forward_1d(unpack(widths, theta), x)


def pointwise_loss_grad(widths, theta, x, y):
    """|N(x) - y|^2 and its generalized gradient (relu'(0) = 0) at each point: (n,), (n, P)."""
    params = unpack(widths, theta)
    zs, acts, out = forward(widths, theta, x)
    r = out - y
    delta = 2.0 * r                                     # (n, l_L)
    pieces = []
    for k in range(len(params) - 1, -1, -1):
        gW = delta[:, :, None] * acts[k][:, None, :]    # (n, l_k, l_{k-1})
        pieces.append((gW.reshape(len(x), -1), delta))
        if k > 0:
            delta = (delta @ params[k][0]) * (zs[k - 1] > 0)
    grad = np.concatenate([np.concatenate([gW, gb], axis=1) for gW, gb in reversed(pieces)], axis=1)
    return np.sum(r * r, axis=1), grad


def brute_force_kinks(widths, theta, lo, hi, n=20001):
    """Kinks of every hidden neuron in (lo, hi): sign changes on a dense grid, refined by bisection."""
    xs = np.linspace(lo, hi, n)
    zs, _, _ = forward(widths, theta, xs)
    kinks = []
    for layer, z in enumerate(zs):
        for j in range(z.shape[1]):
            s = z[:, j]
            nz = np.flatnonzero(s != 0)
            for i0, i1 in zip(nz[:-1], nz[1:]):
                if s[i0] * s[i1] > 0:
                    continue
                a, b, sa = xs[i0], xs[i1], s[i0]
                for _ in range(200):
                    m = 0.5 * (a + b)
                    if not a < m < b:
                        break
                    sm = forward(widths, theta, np.array([m]))[0][layer][0, j]
                    if sm == 0:
                        a = b = m
                        break
                    if (sm > 0) == (sa > 0):
                        a = m
                    else:
                        b = m
                kinks.append(0.5 * (a + b))
    return np.array(sorted(kinks))


class Density:
    """Reference density: uniform, or a piecewise polynomial normalized here (not by reluflow)."""

    def __init__(self, breaks, coeffs=None):
        self.breaks = np.asarray(breaks, dtype=np.float64)
        self.coeffs = None if coeffs is None else np.asarray(coeffs, dtype=np.float64)
        if self.coeffs is None:
            self.scale = 1.0 / (self.breaks[-1] - self.breaks[0])
        else:
            mass = sum(quad(lambda t, i=i: self._raw(i, t), self.breaks[i], self.breaks[i + 1])
                       for i in range(len(self.coeffs)))
            self.scale = 1.0 / mass

    def _raw(self, i, t):
        return np.polynomial.polynomial.polyval(t - self.breaks[i], self.coeffs[i])

    def __call__(self, t):
        if self.coeffs is None:
            return self.scale
        i = min(max(np.searchsorted(self.breaks, t, side="right") - 1, 0), len(self.coeffs) - 1)
        return self.scale * self._raw(i, t)

    def dist(self):
        if self.coeffs is None:
            return rf.dists.Uniform(self.breaks[0], self.breaks[-1])
        return rf.dists.PiecewisePolynomial(self.breaks, self.coeffs)


def quad(f, a, b):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        return integrate.quad(f, a, b, epsabs=0.0, epsrel=1e-13, limit=200)[0]


def quad_vec(f, a, b):
    return integrate.quad_vec(f, a, b, epsabs=0.0, epsrel=1e-13, limit=200)[0]


def reference_risk_grad(widths, theta, target_fn, target_breaks, density, with_grad=True):
    """Risk and gradient by scipy quad on the pieces between brute-force kinks and all breaks."""
    lo, hi = density.breaks[0], density.breaks[-1]
    pts = np.concatenate([[lo, hi], brute_force_kinks(widths, theta, lo, hi), target_breaks,
                          density.breaks])
    pts = np.unique(pts[(pts >= lo) & (pts <= hi)])
    risk, grad = 0.0, np.zeros(len(theta))
    for a, b in zip(pts[:-1], pts[1:]):
        if not b > a:
            continue

        def loss(t):
            return pointwise_loss_grad(widths, theta, np.array([t]), target_fn(np.array([t])))[0][0] * density(t)

        risk += quad(loss, a, b)
        if with_grad:
            def dloss(t):
                return pointwise_loss_grad(widths, theta, np.array([t]), target_fn(np.array([t])))[1][0] * density(t)

            grad += quad_vec(dloss, a, b)
    return risk, grad


def pl_fn(knots, values):
    return lambda t: np.interp(t, knots, values)[:, None]


def teacher_fn(widths, theta):
    return lambda t: forward(widths, theta, t)[2]


# ---- kink_partition ------------------------------------------------------------------------------


def test_kink_partition_shallow():
    layout = rf.Layout([1, 5, 1])
    w = np.array([2.0, -1.0, 0.0, 4.0, 0.5])
    b = np.array([-1.0, 0.25, 3.0, -2.0, -5.0])   # kinks 0.5, 0.25, none, 0.5 (coincides), 10 (outside)
    theta = np.concatenate([w, b, np.ones(5), [0.0]])
    np.testing.assert_array_equal(kink_partition(layout, theta, 0.0, 1.0), [0.0, 0.25, 0.5, 1.0])
    np.testing.assert_array_equal(kink_partition(layout, theta, 0.25, 0.5), [0.25, 0.5])
    np.testing.assert_array_equal(kink_partition(layout, theta, -np.inf, np.inf),
                                  [-np.inf, 0.25, 0.5, 10.0, np.inf])
    with pytest.raises(ValueError, match="lo"):
        kink_partition(layout, theta, 1.0, 0.0)


@pytest.mark.parametrize("widths", [[1, 3, 1], [1, 4, 3, 1], [1, 3, 3, 2, 1], [1, 6, 5, 4, 2]])
@pytest.mark.parametrize("seed", range(4))
def test_kink_partition_deep_matches_brute_force(widths, seed):
    rng = np.random.default_rng(seed)
    P = rf.Layout(widths).num_params
    theta = rng.normal(size=P)
    lo, hi = -2.0, 2.0
    part = kink_partition(rf.Layout(widths), theta, lo, hi)
    assert part[0] == lo and part[-1] == hi and np.all(np.diff(part) > 0)
    brute = brute_force_kinks(widths, theta, lo, hi)
    # every brute-force kink is in the partition
    for k in brute:
        assert np.min(np.abs(part - k)) <= 1e-12 * max(1.0, abs(k)), (k, part)
    # the network is affine on every piece: check at interior points against the end values
    a, b = part[:-1], part[1:]
    for s in (0.1, 0.5, 0.77):
        x = a + s * (b - a)
        _, _, na = forward(widths, theta, a)
        _, _, nb = forward(widths, theta, b)
        _, _, nx = forward(widths, theta, x)
        scale = 1.0 + np.abs(na) + np.abs(nb)
        np.testing.assert_array_less(np.abs(nx - ((1 - s) * na + s * nb)), 1e-11 * scale)


def test_kink_partition_infinite_domain_deep():
    rng = np.random.default_rng(7)
    widths = [1, 4, 4, 3, 1]
    layout = rf.Layout(widths)
    for _ in range(5):
        theta = rng.normal(size=layout.num_params)
        inf_part = kink_partition(layout, theta, -np.inf, np.inf)
        assert inf_part[0] == -np.inf and inf_part[-1] == np.inf
        interior = inf_part[1:-1]
        assert np.all(np.diff(interior) > 1e-9)   # no near-duplicate kinks
        R = 2.0 * (np.max(np.abs(interior)) + 1.0) if interior.size else 10.0
        fin = kink_partition(layout, theta, -R, R)[1:-1]
        np.testing.assert_allclose(interior, fin, rtol=1e-12, atol=1e-12)
        brute = brute_force_kinks(widths, theta, -R, R, n=40001)
        for k in brute:
            assert np.min(np.abs(interior - k)) <= 1e-10 * max(1.0, abs(k))
        # and the Teacher reports the same interior kinks, restricted on request
        t = rf.targets.Teacher(widths, theta)
        np.testing.assert_array_equal(t.breaks(), interior)
        np.testing.assert_allclose(t.breaks(-1.0, 1.0), interior[(interior > -1) & (interior < 1)], rtol=1e-14)


@pytest.mark.parametrize("where", [-1000.0, -0.5, -1.0, -1e-3])
def test_kink_partition_deep_kink_in_unbounded_piece(where):
    # layer-1 kinks at 0 and 1; a layer-2 neuron crossing zero left of them, far or near
    widths = [1, 2, 1, 1]
    theta = np.concatenate([[1.0, -1.0], [0.0, 1.0],        # relu(x), relu(1 - x)
                            [0.0, 1.0], [where - 1.0],      # z2 = relu(1 - x) - (1 - where): zero at where
                            [1.0], [0.0]])
    part = kink_partition(rf.Layout(widths), theta, -np.inf, np.inf)
    np.testing.assert_allclose(part[1:-1], [where, 0.0, 1.0], rtol=1e-13, atol=1e-15)
    expected = [-10.0, where, 0.0, 1.0, 10.0] if where > -10 else [-10.0, 0.0, 1.0, 10.0]
    np.testing.assert_allclose(kink_partition(rf.Layout(widths), theta, -10.0, 10.0), expected, rtol=1e-13, atol=1e-15)
    # mirrored: the unbounded right piece
    mirrored = theta.copy()
    mirrored[:2] *= -1.0                                   # relu(-x), relu(1 + x): kinks at 0 and -1
    part = kink_partition(rf.Layout(widths), mirrored, -np.inf, np.inf)
    np.testing.assert_allclose(part[1:-1], [-1.0, 0.0, -where], rtol=1e-13, atol=1e-15)


def test_kink_partition_dead_and_constant():
    widths = [1, 3, 2, 1]
    layout = rf.Layout(widths)
    # all first-layer weights zero: constant network, no kinks anywhere
    theta = np.concatenate([np.zeros(3), [1.0, -1.0, 0.0], np.ones(6), [0.5, -10.0], [1.0, 1.0], [0.0]])
    np.testing.assert_array_equal(kink_partition(layout, theta, -np.inf, np.inf), [-np.inf, np.inf])
    np.testing.assert_array_equal(kink_partition(layout, theta, 0.0, 1.0), [0.0, 1.0])
    # dead second layer: its pre-activations are negative everywhere on [0, 1]
    theta = np.concatenate([[1.0, -1.0, 2.0], [-0.5, 0.5, -1.0], -np.ones(6), [-0.1, -0.2], [1.0, 1.0], [0.0]])
    np.testing.assert_array_equal(kink_partition(layout, theta, 0.0, 1.0), [0.0, 0.5, 1.0])


# ---- closed form: shallow net, affine target, uniform input --------------------------------------


def shallow_closed_form(w, b, v, c, A, B, lo, hi):
    """Risk and gradient of [1, H, 1] against f = A x + B on U[lo, hi], in mpmath, piece by piece."""
    mpmath.mp.dps = 40
    f = mpmath.mpf
    w, b, v = ([f(float(t)) for t in arr] for arr in (w, b, v))
    c, A, B, lo, hi = (f(float(t)) for t in (c, A, B, lo, hi))
    H = len(w)
    kinks = sorted(-b[i] / w[i] for i in range(H) if w[i] != 0 and lo < -b[i] / w[i] < hi)
    pts = [lo] + kinks + [hi]
    R = f(0)
    dw, db, dv, dc = [f(0)] * H, [f(0)] * H, [f(0)] * H, f(0)
    for pa, pb in zip(pts[:-1], pts[1:]):
        if not pb > pa:
            continue
        m = (pa + pb) / 2
        act = [w[i] * m + b[i] > 0 for i in range(H)]   # w_i = 0: active iff b_i > 0
        beta = sum((v[i] * w[i] for i in range(H) if act[i]), f(0)) - A
        alpha = c + sum((v[i] * b[i] for i in range(H) if act[i]), f(0)) - B
        M0, M1, M2 = ((pb ** (p + 1) - pa ** (p + 1)) / (p + 1) / (hi - lo) for p in range(3))
        R += beta * beta * M2 + 2 * alpha * beta * M1 + alpha * alpha * M0   # ∫ e^2, e = beta x + alpha
        Ie, Iex = beta * M1 + alpha * M0, beta * M2 + alpha * M1             # ∫ e, ∫ e x
        for i in range(H):
            if act[i]:
                dv[i] += 2 * (w[i] * Iex + b[i] * Ie)
                dw[i] += 2 * v[i] * Iex
                db[i] += 2 * v[i] * Ie
        dc += 2 * Ie
    return float(R), np.array([float(t) for t in dw + db + dv + [dc]])


@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (-1.5, 2.0)])
def test_shallow_closed_form(lo, hi, backend):
    rng = np.random.default_rng(3)
    H = 7
    w, b, v = rng.normal(size=H), rng.normal(size=H), rng.normal(size=H)
    w[2], b[2] = 0.0, 0.7       # constant active neuron
    w[3], b[3] = 0.0, -0.4      # constant dead neuron
    w[4], b[4] = 0.1, 3.0       # kink at -30, outside
    w[5], b[5] = -0.2, 5.0      # kink at 25, outside
    w[6], b[6] = 1.0, -lo       # kink exactly at lo
    c, A, B = 0.3, 1.7, -0.6
    theta = np.concatenate([w, b, v, [c]])
    prob = rf.Problem([1, H, 1], rf.targets.Affine([[A]], [B]), rf.dists.Uniform(lo, hi))
    risk, grad = prob.risk_and_grad(theta[None], rf.Quadrature(), backend=backend)
    R, G = shallow_closed_form(w, b, v, c, A, B, lo, hi)
    np.testing.assert_allclose(risk[0], R, rtol=1e-13)
    np.testing.assert_allclose(grad[0], G, rtol=1e-12, atol=1e-13 * np.abs(G).max())
    assert grad[0, 3] == 0 and grad[0, H + 3] == 0 and grad[0, 2 * H + 3] == 0   # dead neuron


def test_shallow_closed_form_batch(backend):
    # several networks at once: each has its own partition
    rng = np.random.default_rng(11)
    H, K = 9, 6
    prob = rf.Problem([1, H, 1], rf.targets.Affine([[-0.8]], [0.2]), rf.dists.Uniform(-1.0, 1.0))
    theta = rng.normal(size=(K, prob.num_params))
    risk, grad = prob.risk_and_grad(theta, rf.Quadrature(), backend=backend)
    assert risk.shape == (K,) and grad.shape == (K, prob.num_params)
    for k in range(K):
        R, G = shallow_closed_form(theta[k, :H], theta[k, H:2 * H], theta[k, 2 * H:3 * H], theta[k, -1],
                                   -0.8, 0.2, -1.0, 1.0)
        np.testing.assert_allclose(risk[k], R, rtol=1e-12)
        np.testing.assert_allclose(grad[k], G, rtol=1e-11, atol=1e-12 * np.abs(G).max())
    r_only = prob.risk(theta, rf.Quadrature(), backend=backend)
    np.testing.assert_array_equal(r_only, risk)


# ---- deep nets against independent high-precision integration --------------------------------------

DENSITIES = {
    "uniform": Density([-1.0, 1.5]),
    "linear": Density([0.0, 1.0], [[0.0, 2.0]]),
    "quadratic3": Density([-1.0, 0.0, 0.5, 2.0], [[1.0, 0.0, 1.0], [0.2, 1.0, -1.0], [1.0, -0.5, 0.3]]),
}


def make_target(kind, rng):
    if kind == "affine":
        A, B = rng.normal(), rng.normal()
        return rf.targets.Affine([[A]], [B]), (lambda t: A * t[:, None] + B), np.empty(0)
    if kind == "pwl":
        knots, values = np.array([-0.6, 0.1, 0.5, 1.2]), rng.normal(size=4)
        return rf.targets.PiecewiseLinear(knots, values), pl_fn(knots, values), knots
    tw = [1, 4, 2, 1]
    tt = rng.normal(size=rf.Layout(tw).num_params)
    kinks = brute_force_kinks(tw, tt, -5.0, 5.0)
    return rf.targets.Teacher(tw, tt), teacher_fn(tw, tt), kinks


@pytest.mark.parametrize("widths", [[1, 3, 1], [1, 4, 3, 1], [1, 3, 3, 2, 1]])
@pytest.mark.parametrize("target_kind", ["affine", "pwl", "teacher"])
@pytest.mark.parametrize("density", list(DENSITIES))
def test_deep_against_scipy(widths, target_kind, density, backend):
    rng = np.random.default_rng(zlib.crc32(repr((widths, target_kind, density)).encode()))
    dens = DENSITIES[density]
    target, fn, tbreaks = make_target(target_kind, rng)
    prob = rf.Problem(widths, target, dens.dist())
    theta = rng.normal(size=(2, prob.num_params))
    risk, grad = prob.risk_and_grad(theta, rf.Quadrature(), backend=backend)
    for k in range(theta.shape[0]):
        R, G = reference_risk_grad(widths, theta[k], fn, tbreaks, dens)
        np.testing.assert_allclose(risk[k], R, rtol=1e-10)
        np.testing.assert_allclose(grad[k], G, rtol=1e-9, atol=1e-10 * np.abs(G).max())


@pytest.mark.parametrize("widths", [[1, 3, 1], [1, 4, 3, 1], [1, 3, 3, 2, 1]])
def test_gradient_finite_differences(widths, backend):
    rng = np.random.default_rng(5)
    prob = rf.Problem(widths, rf.targets.PiecewiseLinear([0.0, 0.4, 1.0], [0.0, 1.0, -0.5]),
                      DENSITIES["quadratic3"].dist())
    theta = rng.normal(size=(3, prob.num_params))
    est = rf.Quadrature()
    _, grad = prob.risk_and_grad(theta, est, backend=backend)
    h = 1e-5
    for k in range(theta.shape[0]):
        for p in range(prob.num_params):
            tp, tm = theta[k:k + 1].copy(), theta[k:k + 1].copy()
            tp[0, p] += h
            tm[0, p] -= h
            fd = (prob.risk(tp, est, backend=backend)[0] - prob.risk(tm, est, backend=backend)[0]) / (2 * h)
            assert abs(fd - grad[k, p]) <= 1e-6 * max(1.0, abs(grad[k, p])), (k, p, fd, grad[k, p])


def test_multi_output_and_polynomial_target(backend):
    # cubic two-output target on a quadratic density: degree 2*3 + 2 = 8 integrand
    rng = np.random.default_rng(9)
    breaks = np.array([-1.0, 0.3, 2.0])
    coeffs = rng.normal(size=(2, 4, 2))
    target = rf.targets.PiecewisePolynomial(breaks, coeffs)

    def fn(t):
        i = np.clip(np.searchsorted(breaks, t, side="right") - 1, 0, 1)
        s = t - breaks[i]
        return np.stack([sum(coeffs[i, p, o] * s ** p for p in range(4)) for o in range(2)], axis=1)

    dens = DENSITIES["quadratic3"]
    widths = [1, 4, 3, 2]
    prob = rf.Problem(widths, target, dens.dist())
    theta = rng.normal(size=(2, prob.num_params))
    risk, grad = prob.risk_and_grad(theta, rf.Quadrature(), backend=backend)
    for k in range(2):
        R, G = reference_risk_grad(widths, theta[k], fn, breaks, dens)
        np.testing.assert_allclose(risk[k], R, rtol=1e-10)
        np.testing.assert_allclose(grad[k], G, rtol=1e-9, atol=1e-10 * np.abs(G).max())


def test_nodes_integrate_density_exactly():
    dens = DENSITIES["quadratic3"]
    prob = rf.Problem([1, 5, 1], rf.targets.Affine([[1.0]]), dens.dist())
    theta = np.random.default_rng(0).normal(size=prob.num_params)
    nodes = quadrature_nodes(prob, theta, rf.Quadrature())
    assert nodes.x.shape == (nodes.w.size, 1)
    assert np.all((nodes.x >= -1.0) & (nodes.x <= 2.0))
    for p in range(4):   # moments of the density (exact to degree 2 * 3 - 1), against scipy
        ref = sum(quad(lambda t: t ** p * dens(t), a, b) for a, b in zip(dens.breaks[:-1], dens.breaks[1:]))
        np.testing.assert_allclose(np.sum(nodes.w * nodes.x[:, 0] ** p), ref, rtol=1e-13, atol=1e-15)
    # order given: that many points per piece
    n_pieces = nodes.w.size // 3   # default order for degree 2*1 + 2: 3 points
    assert quadrature_nodes(prob, theta, rf.Quadrature(order=5)).w.size == 5 * n_pieces


def test_teacher_equals_student_risk_zero(backend):
    rng = np.random.default_rng(2)
    widths = [1, 4, 3, 1]
    tt = rng.normal(size=rf.Layout(widths).num_params)
    prob = rf.Problem(widths, rf.targets.Teacher(widths, tt), rf.dists.Uniform(-2.0, 2.0))
    risk, grad = prob.risk_and_grad(tt[None], rf.Quadrature(), backend=backend)
    assert risk[0] < 1e-28 and np.abs(grad).max() < 1e-13


# ---- Monte-Carlo agreement -------------------------------------------------------------------------


@pytest.mark.parametrize("widths", [[1, 8, 1], [1, 5, 4, 1]])
def test_monte_carlo_agrees(widths, backend):
    knots, values = [0.0, 0.3, 0.6, 1.0], [0.0, 1.0, -0.5, 0.2]
    dens = DENSITIES["linear"]
    prob = rf.Problem(widths, rf.targets.PiecewiseLinear(knots, values), dens.dist())
    theta = prob.init(3, seed=1)
    rq, gq = prob.risk_and_grad(theta, rf.Quadrature(), backend=backend)
    mc = rf.MonteCarlo(1 << 16, seed=4)
    rm, gm = prob.risk_and_grad(theta, mc, backend=backend)
    x = mc.nodes(prob).x[:, 0]
    for k in range(theta.shape[0]):
        loss, g = pointwise_loss_grad(widths, theta[k], x, pl_fn(knots, values)(x))
        se = loss.std() / np.sqrt(x.size)
        assert abs(rm[k] - rq[k]) <= 5 * se, (k, rm[k], rq[k], se)
        gse = g.std(axis=0) / np.sqrt(x.size)
        assert np.all(np.abs(gm[k] - gq[k]) <= 5 * gse + 1e-12), k


# ---- degenerate cases ------------------------------------------------------------------------------


def test_all_neurons_dead(backend):
    H = 4
    w = np.array([1.0, -1.0, 0.0, 2.0])
    b = np.array([-3.0, -1.5, -0.1, -5.0])   # pre-activations < 0 on [0, 1]
    v, c = np.array([1.0, 2.0, 3.0, 4.0]), 0.25
    theta = np.concatenate([w, b, v, [c]])[None]
    prob = rf.Problem([1, H, 1], rf.targets.Affine([[1.0]], [0.0]), rf.dists.Uniform(0.0, 1.0))
    risk, grad = prob.risk_and_grad(theta, rf.Quadrature(), backend=backend)
    np.testing.assert_allclose(risk[0], 1 / 3 - 2 * c / 2 + c * c, rtol=1e-14)   # ∫ (c - x)^2
    np.testing.assert_array_equal(grad[0, :3 * H], 0.0)
    np.testing.assert_allclose(grad[0, -1], 2 * (c - 0.5), rtol=1e-14)


def test_dead_second_layer(backend):
    widths = [1, 3, 2, 1]
    theta = np.concatenate([[1.0, -1.0, 2.0], [-0.5, 0.5, -1.0],       # layer 1, kinks at 0.5
                            -np.ones(6), [-0.1, -0.2],                  # layer 2: always < 0
                            [1.0, 1.0], [0.3]])[None]
    prob = rf.Problem(widths, rf.targets.PiecewiseLinear([0.0, 0.5, 1.0], [0.0, 1.0, 0.0]),
                      rf.dists.Uniform(0.0, 1.0))
    risk, grad = prob.risk_and_grad(theta, rf.Quadrature(), backend=backend)
    # N = 0.3 constant; ∫ (0.3 - hat)^2 = 0.09 - 0.3 + 1/3
    np.testing.assert_allclose(risk[0], 0.09 - 0.3 + 1 / 3, rtol=1e-14)
    np.testing.assert_array_equal(grad[0, :-3], 0.0)      # layers 1 and 2, and W_3 (a_2 = 0)
    np.testing.assert_array_equal(grad[0, -3:-1], 0.0)
    np.testing.assert_allclose(grad[0, -1], 2 * (0.3 - 0.5), rtol=1e-14)


def _vanishing_net(scale, shift):
    """[1, 3, 1, 1] whose second-layer pre-activation z = relu(3x+1.5) - 3 relu(x+0.5) + relu(x - c),
    times ``scale``, with c = 0.25 + shift: identically zero on (-inf, c], equal to scale (x - c)
    beyond; rounding makes it +-1 ulp at points left of c (3 fl(x+0.5) != fl(3x+1.5))."""
    c = 0.25 + shift
    W1, b1 = np.array([3.0, 1.0, 1.0]), np.array([1.5, 0.5, -c])
    W2, b2 = scale * np.array([1.0, -3.0, 1.0]), np.array([0.0])
    v, d = 1.3, -0.2
    return np.concatenate([W1, b1, W2, b2, [v], [d]]), c


def _vanishing_net_exact(theta, c, lo, hi, slope, icpt):
    """Risk and gradient of _vanishing_net on Uniform(lo, hi) with target slope x + icpt, derived by
    hand: relu'(z) = 0 wherever z vanishes identically (x <= c), so only (c, hi) feeds the hidden
    layers; integrated by 40-point Gauss-Legendre on the pieces where every factor is polynomial."""
    W1, b1, W2 = theta[0:3], theta[3:6], theta[6:9]
    v, d = theta[10], theta[11]
    t, gw = np.polynomial.legendre.leggauss(40)
    risk, grad = 0.0, np.zeros(12)
    for a, b in [(lo, -0.5), (-0.5, c), (c, hi)]:
        a, b = max(a, lo), min(b, hi)
        if b <= a:
            continue
        x = 0.5 * (a + b) + 0.5 * (b - a) * t
        wq = 0.5 * (b - a) * gw / (hi - lo)
        beyond = (a >= c)                                   # the hidden layers are active only here
        n = np.maximum(np.outer(x, W1) + b1, 0.0)            # layer-1 activations (q, 3)
        z = n @ W2 if beyond else np.zeros_like(x)           # exact: 0 on the vanishing piece
        r = v * np.maximum(z, 0.0) + d - (slope * x + icpt)
        risk += np.sum(wq * r * r)
        g = 2 * wq * r
        grad[11] += g.sum()
        grad[10] += np.sum(g * np.maximum(z, 0.0))
        if beyond:
            dz = g * v                                       # relu'(z) = 1 on (c, hi)
            grad[6:9] += dz @ n
            grad[9] += dz.sum()
            dn = np.outer(dz, W2) * (n > 0)
            grad[0:3] += x @ dn
            grad[3:6] += dn.sum(axis=0)
    return risk, grad


@pytest.mark.parametrize("scale,shift", [(1.0, 0.0), (0.7, np.sqrt(2) * 1e-3), (3.0, -0.1 / 3)])
def test_vanishing_preactivation_gradient_exact(scale, shift, backend):
    """Issue 15.10: a hidden pre-activation identically zero on a piece is inactive there (relu'(0) = 0),
    not the sign of a rounding error: the gradient equals the hand-derived one to rounding."""
    theta, c = _vanishing_net(scale, shift)
    lo, hi = -1.0, 1.0
    prob = rf.Problem([1, 3, 1, 1], rf.targets.Affine([[0.4]], [0.1]), rf.dists.Uniform(lo, hi))
    risk, grad = prob.risk_and_grad(theta[None], rf.Quadrature(), backend=backend)
    r_ref, g_ref = _vanishing_net_exact(theta, c, lo, hi, 0.4, 0.1)
    np.testing.assert_allclose(risk[0], r_ref, rtol=1e-13)
    np.testing.assert_allclose(grad[0], g_ref, rtol=1e-12, atol=1e-14)


def test_vanishing_preactivation_flags():
    """vanishing_on_pieces flags exactly the second-layer neuron, exactly on the pieces left of c."""
    from reluflow.geometry import vanishing_on_pieces
    from reluflow.layout import Layout

    theta, c = _vanishing_net(0.7, np.sqrt(2) * 1e-3)
    lay = Layout([1, 3, 1, 1])
    grid = kink_partition(lay, theta, -1.0, 1.0)
    # -1, -0.5, c, 1 and maybe a spurious break within rounding of c (z crosses +-ulp there: harmless)
    assert set(np.round(grid, 12)) == {-1.0, -0.5, round(c, 12), 1.0}
    flags = vanishing_on_pieces(lay, theta, grid)
    a, b = grid[:-1], grid[1:]
    assert not flags[:, :3].any()                          # layer 1 is never flagged
    # (-1, -0.5): every layer-1 neuron is off, so z is exactly b_2 = 0 (not flagged: no rounding);
    # (-0.5, c): flagged; beyond c (where z = 0.7 (x - c) > 0): not
    np.testing.assert_array_equal(flags[:, 3], (a >= -0.5) & (b <= c + 1e-12))
    assert flags[1, 3] and not flags[0, 3] and not flags[-1, 3]
    # a generic network: nothing flagged; a neuron whose terms are all exactly zero: not flagged
    rng = np.random.default_rng(3)
    generic = rng.normal(size=lay.num_params)
    assert not vanishing_on_pieces(lay, generic, kink_partition(lay, generic, -1.0, 1.0)).any()
    zeroed = theta.copy()
    zeroed[6:10] = 0.0
    assert not vanishing_on_pieces(lay, zeroed, kink_partition(lay, zeroed, -1.0, 1.0)).any()
    # infinite ends use probes, as kink_partition does
    inf_grid = kink_partition(lay, theta, -np.inf, np.inf)
    inf_flags = vanishing_on_pieces(lay, theta, inf_grid)[:, 3]
    assert not inf_flags[0] and inf_flags[1] and not inf_flags[-1]


def test_vanishing_preactivation_in_the_flow(backend):
    """The integrator loops (the C++ loop on cpu) take the same flags: one GD step on the degenerate
    net is theta - lr * (the hand-derived gradient)."""
    theta, c = _vanishing_net(0.7, np.sqrt(2) * 1e-3)
    prob = rf.Problem([1, 3, 1, 1], rf.targets.Affine([[0.4]], [0.1]), rf.dists.Uniform(-1.0, 1.0))
    run = rf.gradient_descent(prob, theta[None], 0.05, 1, rf.Quadrature(), backend=backend)
    _, g_ref = _vanishing_net_exact(theta, c, -1.0, 1.0, 0.4, 0.1)
    np.testing.assert_allclose(run.theta[0], theta - 0.05 * g_ref, rtol=1e-13, atol=1e-15)


def test_vanishing_preactivation_fuzz_cpu_equals_numpy():
    """Half-integer deep nets (where pre-activations often vanish on whole pieces): the C++ partition
    path and the numpy reference decide alike and agree to rounding (before the fix: up to 0.6)."""
    if "cpu" not in rf.backends() or not rf.backends()["cpu"].available:
        pytest.skip("the C++ extension is not built")
    rng = np.random.default_rng(0)
    prob = rf.Problem([1, 3, 3, 1], rf.targets.Affine([[0.4]], [0.1]), rf.dists.Uniform(-2.0, 2.0))
    theta = rng.integers(-4, 5, size=(400, prob.num_params)) / 2.0
    r_cpu, g_cpu = prob.risk_and_grad(theta, rf.Quadrature(), backend="cpu")
    r_np, g_np = prob.risk_and_grad(theta, rf.Quadrature(), backend="numpy")
    np.testing.assert_allclose(r_cpu, r_np, rtol=1e-12, atol=1e-14)
    scale = 1.0 + np.abs(g_np).max(axis=1, keepdims=True)
    np.testing.assert_allclose(g_cpu / scale, g_np / scale, rtol=0, atol=1e-13)


@pytest.mark.parametrize("case", ["coinciding", "on_target_knot", "outside", "zero_weight", "on_density_break"])
def test_degenerate_kinks_against_scipy(case, backend):
    knots, values = np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 0.2])
    dens = DENSITIES["quadratic3"] if case == "on_density_break" else Density([0.0, 1.0])
    widths = [1, 4, 3, 1]
    layout = rf.Layout(widths)
    theta = np.random.default_rng(1).normal(size=layout.num_params)
    (W1, b1), (W2, b2), _ = [(W[0], b[0]) for W, b in layout.unpack(theta[None])]
    if case == "coinciding":
        W1[:, 0] = [1.0, 2.0, -4.0, 1.0]
        b1[:] = [-0.3, -0.6, 1.2, -0.7]          # three kinks at 0.3
    elif case == "on_target_knot":
        W1[:2, 0], b1[:2] = [2.0, -1.0], [-1.0, 0.5]   # kinks at the knot 0.5
    elif case == "outside":
        W1[:, 0], b1[:] = [1.0, -1.0, 0.5, 2.0], [1.0, 3.0, -2.0, 0.5]  # kinks -1, 3, 4, -0.25
    elif case == "zero_weight":
        W1[:, 0], b1[:] = [0.0, 0.0, 0.0, 1.5], [1.0, -1.0, 0.0, -0.75]
    else:
        W1[:, 0], b1[:] = [1.0, -2.0, 1.0, 3.0], [0.0, 1.0, -2.0, 0.0]  # kinks at density breaks 0, .5, 2
    prob = rf.Problem(widths, rf.targets.PiecewiseLinear(knots, values), dens.dist())
    risk, grad = prob.risk_and_grad(theta[None], rf.Quadrature(), backend=backend)
    R, G = reference_risk_grad(widths, theta, pl_fn(knots, values), knots, dens)
    np.testing.assert_allclose(risk[0], R, rtol=1e-10)
    np.testing.assert_allclose(grad[0], G, rtol=1e-9, atol=1e-10 * np.abs(G).max())
    if case == "zero_weight":
        # neurons 1, 2 are dead (b <= 0): no gradient into their incoming weights or from them
        assert np.all(grad[0, [1, 2, 5, 6]] == 0)


# ---- d >= 2, refusals, dtypes ---------------------------------------------------------------------------


def reference_2d(theta, H, A, B, box):
    """∫ over the box of (N - f)^2 / vol for [2, H, 1], by quad in x1 of the exact inner x2 integral."""
    (l1, l2), (h1, h2) = box
    W = theta[:2 * H].reshape(H, 2)
    b, v, c = theta[2 * H:3 * H], theta[3 * H:4 * H], theta[-1]
    t, gw = np.polynomial.legendre.leggauss(3)

    def inner(x1):
        k = -(W[:, 0] * x1 + b) / W[:, 1]
        pts = np.unique(np.concatenate([[l2, h2], k[(k > l2) & (k < h2)]]))
        tot = 0.0
        for a, e in zip(pts[:-1], pts[1:]):
            x2 = 0.5 * (a + e) + 0.5 * (e - a) * t
            z = np.maximum(W[:, 0:1] * x1 + W[:, 1:2] * x2[None] + b[:, None], 0.0)
            r = v @ z + c - (A[0] * x1 + A[1] * x2 + B)
            tot += 0.5 * (e - a) * np.sum(gw * r * r)
        return tot

    # events in x1: kink lines meeting the box edges x2 = l2, h2, and crossing each other
    ev = [-(b + W[:, 1] * l2) / W[:, 0], -(b + W[:, 1] * h2) / W[:, 0]]
    for i in range(H):
        for j in range(i + 1, H):
            M = np.array([W[i], W[j]])
            if abs(np.linalg.det(M)) > 1e-12:
                ev.append(np.linalg.solve(M, -np.array([b[i], b[j]]))[:1])
    ev = np.concatenate(ev)
    pts = np.unique(np.concatenate([[l1, h1], ev[(ev > l1) & (ev < h1)]]))
    return sum(quad(inner, a, e) for a, e in zip(pts[:-1], pts[1:])) / ((h1 - l1) * (h2 - l2))


def test_two_d_converges(backend):
    rng = np.random.default_rng(4)
    H = 5
    A, B = np.array([0.7, -1.2]), 0.3
    box = ((0.0, -1.0), (1.0, 1.0))
    prob = rf.Problem([2, H, 1], rf.targets.Affine([A], [B]), rf.dists.Uniform(list(box[0]), list(box[1])))
    theta = rng.normal(size=prob.num_params)
    ref = reference_2d(theta, H, A, B, box)
    errs = []
    for cells in (1, 4, 16, 64):
        r = prob.risk(theta[None], rf.Quadrature(cells=cells), backend=backend)[0]
        errs.append(abs(r - ref) / ref)
    assert errs[1] < errs[0] and errs[2] < errs[1] and errs[3] < errs[2], errs
    assert errs[3] < 1e-5, errs
    default = prob.risk(theta[None], rf.Quadrature(), backend=backend)[0]
    assert abs(default - ref) / ref < 1e-3
    # same nodes for all networks: the batch equals the networks one at a time
    th = rng.normal(size=(3, prob.num_params))
    rb, gb = prob.risk_and_grad(th, rf.Quadrature(cells=8), backend=backend)
    for k in range(3):
        r1, g1 = prob.risk_and_grad(th[k:k + 1], rf.Quadrature(cells=8), backend=backend)
        np.testing.assert_allclose(rb[k], r1[0], rtol=1e-14)
        np.testing.assert_allclose(gb[k], g1[0], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("d", [2, 3, 4])
def test_multi_d_defaults(d, backend):
    prob = rf.Problem([d, 6, 1], rf.targets.Affine(np.linspace(-1, 1, d), 0.5), rf.dists.Uniform(-1.0, 2.0, dim=d))
    nodes = quadrature_nodes(prob, None, rf.Quadrature())
    assert nodes.x.shape == ((DEFAULT_CELLS[d] * 4) ** d, d)
    np.testing.assert_allclose(nodes.w.sum(), 1.0, rtol=1e-13)
    assert nodes.x.min() > -1.0 and nodes.x.max() < 2.0
    theta = prob.init(2, seed=0)
    rq = prob.risk(theta, rf.Quadrature(), backend=backend)
    rm = prob.risk(theta, rf.QuasiMonteCarlo(1 << 14, seed=0), backend=backend)
    np.testing.assert_allclose(rq, rm, rtol=2e-2)


def test_dimension_five_refused(backend):
    prob = rf.Problem([5, 3, 1], rf.targets.Affine(np.ones(5)), rf.dists.Uniform(0.0, 1.0, dim=5))
    with pytest.raises(ValueError, match="estimator.*QuasiMonteCarlo"):
        prob.risk_and_grad(prob.init(1), rf.Quadrature(), backend=backend)


def test_function_target(backend):
    prob = rf.Problem([1, 6, 1], rf.targets.Function(lambda x: np.sin(3 * x[:, 0])), rf.dists.Uniform(-1.0, 1.0))
    theta = prob.init(2, seed=3)
    with pytest.raises(ValueError, match=r"estimator.*Quadrature\(exact=False\)"):
        prob.risk_and_grad(theta, rf.Quadrature(), backend=backend)
    risk, grad = prob.risk_and_grad(theta, rf.Quadrature(exact=False), backend=backend)
    dens = Density([-1.0, 1.0])
    for k in range(2):
        R, G = reference_risk_grad([1, 6, 1], theta[k], lambda t: np.sin(3 * t)[:, None], np.empty(0), dens)
        np.testing.assert_allclose(risk[k], R, rtol=1e-9)
        np.testing.assert_allclose(grad[k], G, rtol=1e-8, atol=1e-9 * np.abs(G).max())
    # d = 2 too
    prob2 = rf.Problem([2, 3, 1], rf.targets.Function(lambda x: x[:, 0] * x[:, 1]), rf.dists.Uniform(0.0, 1.0, dim=2))
    with pytest.raises(ValueError, match="estimator"):
        prob2.risk(prob2.init(1), rf.Quadrature(), backend=backend)
    assert np.isfinite(prob2.risk(prob2.init(1), rf.Quadrature(exact=False), backend=backend)).all()


@pytest.mark.parametrize("widths,dim", [([1, 8, 4, 1], 1), ([2, 6, 1], 2)])
def test_float32(widths, dim, backend):
    prob = rf.Problem(widths, rf.targets.Affine(np.full(dim, 0.5), -0.25), rf.dists.Uniform(-1.0, 1.0, dim=dim))
    theta = prob.init(4, seed=2, dtype="float32")
    r32, g32 = prob.risk_and_grad(theta, rf.Quadrature(), backend=backend)
    r64, g64 = prob.risk_and_grad(theta.astype(np.float64), rf.Quadrature(), backend=backend)
    assert r32.dtype == np.float32 and g32.dtype == np.float32
    np.testing.assert_allclose(r32, r64, rtol=1e-5)
    for k in range(4):
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-5, atol=1e-5 * np.abs(g64[k]).max())
