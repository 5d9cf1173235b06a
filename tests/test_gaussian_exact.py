"""reluflow.gaussian_exact: the bivariate normal CDF against Owen's T and mpmath; the closed-form risk
against numerical integration (1-D and 2-D, split at the kinks) and Monte Carlo; the gradient and
Hessian against finite differences; the degenerate cases of teacher-student problems; bad input."""
import math

import numpy as np
import pytest

mpmath = pytest.importorskip("mpmath")
scipy_special = pytest.importorskip("scipy.special")
from scipy import integrate  # noqa: E402
from scipy.stats import norm  # noqa: E402

from reluflow.gaussian_exact import bvn_cdf, shallow_gaussian  # noqa: E402


# ------------------------------------------------------------------------------------------------
# independent references
# ------------------------------------------------------------------------------------------------
def owen_bvn(h, k, rho):
    """P(X < h, Y < k) through Owen's T function (Owen 1956), with the rho = +-1 and infinite limits."""
    if h == -np.inf or k == -np.inf:
        return 0.0
    if h == np.inf:
        return norm.cdf(k)
    if k == np.inf:
        return norm.cdf(h)
    if rho == 1:
        return norm.cdf(min(h, k))
    if rho == -1:
        return max(0.0, norm.cdf(h) - norm.cdf(-k))
    if h == 0 and k == 0:
        return 0.25 + np.arcsin(rho) / (2 * np.pi)
    s = np.sqrt((1 - rho) * (1 + rho))

    def t(a, b):  # h, k are never 0 here (random inputs) apart from h = k = 0 above
        return scipy_special.owens_t(a, (b - rho * a) / (a * s))

    corr = 0.0 if (h * k > 0 or (h * k == 0 and h + k >= 0)) else 0.5
    return 0.5 * norm.cdf(h) + 0.5 * norm.cdf(k) - t(h, k) - t(k, h) - corr


def mp_bvn(h, k, rho):
    """P(X < h, Y < k) = int_{-inf}^h phi(x) Phi((k - rho x) / sqrt(1 - rho^2)) dx at 40 digits."""
    with mpmath.workdps(40):
        h, k, rho = mpmath.mpf(h), mpmath.mpf(k), mpmath.mpf(rho)
        s = mpmath.sqrt(1 - rho * rho)
        f = lambda x: mpmath.npdf(x) * mpmath.ncdf((k - rho * x) / s)  # noqa: E731
        # split where Phi((k - rho x) / s) turns over (a near-step for |rho| near 1) and at 0
        pts = [-mpmath.inf] + sorted(p for p in {mpmath.mpf(0), k / rho if rho != 0 else h} if p < h) + [h]
        return float(mpmath.quad(f, pts))


def forward(widths, theta, x):
    """Plain numpy forward pass of one shallow net, x (n, d) -> (n, out)."""
    d, H, out = widths
    W = theta[:H * d].reshape(H, d)
    b = theta[H * d:H * (d + 1)]
    V = theta[H * (d + 1):H * (d + 1) + out * H].reshape(out, H)
    return np.maximum(x @ W.T + b, 0.0) @ V.T + theta[H * (d + 1) + out * H:]


def target_values(target, x):
    if target[0] == "affine":
        return x @ np.asarray(target[1]).T + np.asarray(target[2])
    return forward(target[1], np.asarray(target[2]), x)


def kinks_1d(widths, theta):
    d, H, _ = widths
    w, b = theta[:H], theta[H:2 * H]
    return [-bi / wi for wi, bi in zip(w, b) if wi != 0]


def problem(rng, d, H, out, kind, k=3, biases=True, mean=True, full_cov=True):
    P = H * (d + 1) + out * (H + 1)
    theta = rng.normal(size=(2, P))
    if not biases:
        theta[:, H * d:H * (d + 1)] = 0
    mu = rng.normal(size=d) if mean else np.zeros(d)
    if full_cov:
        M = rng.normal(size=(d, d))
        cov = M @ M.T + 0.3 * np.eye(d)
    else:
        cov = np.eye(d)
    if kind == "affine":
        target = ("affine", rng.normal(size=(out, d)), rng.normal(size=out))
    else:
        tt = rng.normal(size=k * (d + 1) + out * (k + 1))
        if not biases:
            tt[k * d:k * (d + 1)] = 0
        target = ("teacher", [d, k, out], tt)
    return [d, H, out], theta, mu, cov, target


# ------------------------------------------------------------------------------------------------
# bvn_cdf
# ------------------------------------------------------------------------------------------------
def test_bvn_cdf_against_owens_t():
    rng = np.random.default_rng(0)
    n = 4000
    h = rng.normal(size=n) * 3
    k = rng.normal(size=n) * 3
    rho = rng.uniform(-1, 1, n)
    special = [1.0, -1.0, 0.0, 0.999999, -0.999999, 0.9999999999, -0.93, 0.93, 0.3, 0.75]
    rho[:len(special) * 100] = np.repeat(special, 100)
    h[::17] *= 4          # large |h|: both tails
    k[::13] = -k[::13] * 5
    got = bvn_cdf(h, k, rho)
    ref = np.array([owen_bvn(a, b, c) for a, b, c in zip(h, k, rho)])
    assert np.max(np.abs(got - ref)) <= 1e-14


def test_bvn_cdf_against_mpmath_and_limits():
    rng = np.random.default_rng(1)
    for h, k, rho in [(0.3, -0.2, 0.999999), (-1.5, 2.0, -0.999999), (0.0, 0.0, 0.5), (2.5, 2.5, 0.95),
                      (-4.0, -3.0, 0.2), (1.0, -1.0, -0.6), (6.0, -0.5, 0.8)] + \
            [tuple(v) for v in np.c_[rng.normal(size=(8, 2)) * 2, rng.uniform(-0.99, 0.99, 8)]]:
        assert abs(bvn_cdf(h, k, rho) - mp_bvn(h, k, rho)) <= 1e-14, (h, k, rho)
    inf = np.inf
    cases = np.array([(inf, 0.3, 0.4), (-inf, 0.3, 0.4), (0.3, inf, -1.0), (0.3, -inf, 1.0), (inf, inf, 0.0),
                      (-2.0, 1.0, 1.0), (1.0, -2.0, -1.0), (1.0, 2.0, -1.0), (0.5, 0.5, 1.0)])
    got = bvn_cdf(cases[:, 0], cases[:, 1], cases[:, 2])
    ref = [norm.cdf(0.3), 0.0, norm.cdf(0.3), 0.0, 1.0, norm.cdf(-2.0), 0.0, norm.cdf(1.0) - norm.cdf(-2.0),
           norm.cdf(0.5)]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-15)
    # broadcasting and shape
    assert bvn_cdf(np.zeros((3, 1)), np.zeros(4), 0.0).shape == (3, 4)


def test_bvn_cdf_bad_input():
    with pytest.raises(ValueError, match="rho"):
        bvn_cdf(0.0, 0.0, 1.5)
    with pytest.raises(ValueError, match="h, k"):
        bvn_cdf(np.nan, 0.0, 0.5)


# ------------------------------------------------------------------------------------------------
# the risk against numerical integration
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["affine", "teacher"])
@pytest.mark.parametrize("biases", [True, False])
def test_risk_1d_against_quad(kind, biases):
    rng = np.random.default_rng(10 + biases)
    widths, theta, mu, cov, target = problem(rng, 1, 5, 2, kind, k=4, biases=biases, mean=biases)
    m, s = mu[0], np.sqrt(cov[0, 0])
    risk, _, _ = shallow_gaussian(widths, theta, mu, cov, target, want_grad=False)
    for j in range(theta.shape[0]):
        def f(x):
            xx = np.array([[x]])
            return float(np.sum((forward(widths, theta[j], xx) - target_values(target, xx)) ** 2)) \
                * norm.pdf(x, m, s)
        cuts = kinks_1d(widths, theta[j]) + (kinks_1d(target[1], np.asarray(target[2])) if kind == "teacher" else [])
        pts = [-np.inf] + sorted(cuts) + [np.inf]
        ref = sum(integrate.quad(f, a, b, epsabs=1e-14, epsrel=1e-13, limit=200)[0] for a, b in zip(pts, pts[1:]))
        assert abs(risk[j] - ref) <= 1e-12 * max(1.0, ref), (risk[j], ref)


SQRT2PI = math.sqrt(2 * math.pi)


def scalar_sq_error_2d(widths, theta, target):
    """|N(x) - f(x)|^2 at one point of R^2 in plain Python floats (the nested quad calls it ~10^5 times)."""
    def unpack(widths, th):
        d, H, out = widths
        th = [float(v) for v in th]
        W = [th[2 * i:2 * i + 2] for i in range(H)]
        b = th[2 * H:3 * H]
        V = [th[3 * H + o * H:3 * H + (o + 1) * H] for o in range(out)]
        return W, b, V, th[3 * H + out * H:]

    def net(params, x1, x2):
        W, b, V, c = params
        a = [max(w[0] * x1 + w[1] * x2 + bi, 0.0) for w, bi in zip(W, b)]
        return [sum(v * ai for v, ai in zip(Vo, a)) + co for Vo, co in zip(V, c)]

    student = unpack(widths, theta)
    if target[0] == "affine":
        A, bt = np.asarray(target[1]).tolist(), np.asarray(target[2]).tolist()
        f = lambda x1, x2: [a[0] * x1 + a[1] * x2 + bo for a, bo in zip(A, bt)]  # noqa: E731
    else:
        teacher = unpack(target[1], target[2])
        f = lambda x1, x2: net(teacher, x1, x2)  # noqa: E731
    return lambda x1, x2: sum((p - q) ** 2 for p, q in zip(net(student, x1, x2), f(x1, x2)))


def _lines_2d(widths, theta):
    d, H, _ = widths
    return theta[:H * d].reshape(H, d), theta[H * d:H * (d + 1)]


@pytest.mark.parametrize("kind,biases,full", [("affine", True, True), ("teacher", True, True),
                                              ("teacher", False, False), ("affine", False, True)])
def test_risk_2d_against_nested_quad(kind, biases, full):
    """Outer quad over x1, inner quad over x2 | x1 split exactly where each kink line crosses; the outer
    integrand is smooth between the x1 of the lines' pairwise intersections, where it is split too."""
    rng = np.random.default_rng(20 + 2 * biases + full)
    widths, theta, mu, cov, target = problem(rng, 2, 3, 1, kind, k=2, biases=biases, mean=biases, full_cov=full)
    theta = theta[:1]
    risk, _, _ = shallow_gaussian(widths, theta, mu, cov, target, want_grad=False)
    W, b = _lines_2d(widths, theta[0])
    if kind == "teacher":
        Wt, bt = _lines_2d(target[1], np.asarray(target[2]))
        W, b = np.vstack([W, Wt]), np.r_[b, bt]
    sq_error = scalar_sq_error_2d(widths, theta[0], target)
    s1 = np.sqrt(cov[0, 0])
    slope = cov[1, 0] / cov[0, 0]
    s2 = np.sqrt(cov[1, 1] - cov[1, 0] ** 2 / cov[0, 0])

    def inner(x1):
        m2 = mu[1] + slope * (x1 - mu[0])
        cuts = sorted(-(b[i] + W[i, 0] * x1) / W[i, 1] for i in range(len(b)) if W[i, 1] != 0)
        pts = [-np.inf] + cuts + [np.inf]

        def g(x2):
            return sq_error(x1, x2) * math.exp(-0.5 * ((x2 - m2) / s2) ** 2) / (s2 * SQRT2PI)
        return sum(integrate.quad(g, a, c, epsabs=1e-12, epsrel=1e-11, limit=200)[0] for a, c in zip(pts, pts[1:]))

    cross = []
    for i in range(len(b)):
        for j in range(i + 1, len(b)):
            M = W[[i, j]]
            if abs(np.linalg.det(M)) > 1e-12:
                cross.append(np.linalg.solve(M, -b[[i, j]])[0])
    pts = [-np.inf] + sorted(cross) + [np.inf]
    ref = sum(integrate.quad(lambda x1: inner(x1) * norm.pdf(x1, mu[0], s1), a, c, epsabs=1e-11, epsrel=1e-10,
                             limit=200)[0] for a, c in zip(pts, pts[1:]))
    assert abs(risk[0] - ref) <= 1e-9 * max(1.0, ref), (risk[0], ref)


# ------------------------------------------------------------------------------------------------
# gradient and Hessian against finite differences
# ------------------------------------------------------------------------------------------------
def fd_grad_hess(widths, theta, mu, cov, target, eps=1e-6):
    """Central differences of the risk (-> gradient) and of the gradient (-> Hessian), network 0."""
    P = theta.shape[1]
    E = eps * np.eye(P)
    rp, gp, _ = shallow_gaussian(widths, theta[:1] + E, mu, cov, target)
    rm, gm, _ = shallow_gaussian(widths, theta[:1] - E, mu, cov, target)
    return (rp - rm) / (2 * eps), (gp - gm) / (2 * eps)


def check_derivatives(widths, theta, mu, cov, target, tol_g=1e-7, tol_h=1e-7):
    risk, g, H = shallow_gaussian(widths, theta, mu, cov, target, want_hess=True)
    fg, fh = fd_grad_hess(widths, theta, mu, cov, target)
    gs, hs = max(1.0, np.max(np.abs(g[0]))), max(1.0, np.max(np.abs(H[0])))
    assert np.max(np.abs(fg - g[0])) <= tol_g * gs
    assert np.max(np.abs(fh - H[0])) <= tol_h * hs
    assert np.array_equal(H, np.swapaxes(H, 1, 2))
    return risk, g, H


@pytest.mark.parametrize("kind", ["affine", "teacher"])
@pytest.mark.parametrize("d,H,out", [(3, 4, 2), (1, 3, 1), (2, 1, 3)])
def test_gradient_and_hessian_against_finite_differences(kind, d, H, out):
    rng = np.random.default_rng(30 + d * 7 + H)
    widths, theta, mu, cov, target = problem(rng, d, H, out, kind)
    _, g, Hs = check_derivatives(widths, theta, mu, cov, target)
    # the batch: network 1 alone gives the same rows
    r1, g1, H1 = shallow_gaussian(widths, theta[1:], mu, cov, target, want_hess=True)
    rb, gb, Hb = shallow_gaussian(widths, theta, mu, cov, target, want_hess=True)
    assert np.array_equal(r1[0], rb[1]) and np.array_equal(g1[0], gb[1]) and np.array_equal(H1[0], Hb[1])
    assert np.array_equal(gb[0], g[0])


def test_hessian_of_the_risk_returns_same_gradient_and_risk():
    rng = np.random.default_rng(4)
    widths, theta, mu, cov, target = problem(rng, 2, 3, 2, "teacher")
    r0, g0, h0 = shallow_gaussian(widths, theta, mu, cov, target, want_grad=False)
    r1, g1, h1 = shallow_gaussian(widths, theta, mu, cov, target)
    r2, g2, h2 = shallow_gaussian(widths, theta, mu, cov, target, want_hess=True)
    assert g0 is None and h0 is None and h1 is None and h2.shape == (2, theta.shape[1], theta.shape[1])
    assert np.array_equal(r0, r1) and np.array_equal(r1, r2) and np.array_equal(g1, g2)


# ------------------------------------------------------------------------------------------------
# Monte Carlo
# ------------------------------------------------------------------------------------------------
def mc_risk_grad(widths, theta, x, f):
    """Per-sample squared error and its gradient (numpy backprop, relu'(z) = 1{z > 0})."""
    d, H, out = widths
    W = theta[:H * d].reshape(H, d)
    b = theta[H * d:H * (d + 1)]
    V = theta[H * (d + 1):H * (d + 1) + out * H].reshape(out, H)
    z = x @ W.T + b
    a = np.maximum(z, 0.0)
    res = a @ V.T + theta[H * (d + 1) + out * H:] - f
    loss = np.sum(res ** 2, axis=1)
    back = 2 * (res @ V) * (z > 0)                       # (n, H)
    gW = back[:, :, None] * x[:, None, :]
    gV = 2 * res[:, :, None] * a[:, None, :]
    g = np.concatenate([gW.reshape(len(x), -1), back, gV.reshape(len(x), -1), 2 * res], axis=1)
    return loss, g


@pytest.mark.parametrize("kind", ["affine", "teacher"])
def test_monte_carlo_agreement(kind):
    rng = np.random.default_rng(40)
    widths, theta, mu, cov, target = problem(rng, 3, 4, 2, kind)
    risk, grad, _ = shallow_gaussian(widths, theta, mu, cov, target)
    n = 10 ** 6
    x = mu + rng.standard_normal((n, 3)) @ np.linalg.cholesky(cov).T
    f = target_values(target, x)
    for j in range(theta.shape[0]):
        loss, g = mc_risk_grad(widths, theta[j], x, f)
        se = loss.std() / np.sqrt(n)
        assert abs(loss.mean() - risk[j]) <= 5 * se
        gse = g.std(axis=0) / np.sqrt(n)
        assert np.all(np.abs(g.mean(axis=0) - grad[j]) <= 5 * gse + 1e-12)


# ------------------------------------------------------------------------------------------------
# degenerate cases
# ------------------------------------------------------------------------------------------------
def teacher_problem(rng, d=3, k=3, out=2):
    tt = rng.normal(size=k * (d + 1) + out * (k + 1))
    M = rng.normal(size=(d, d))
    return tt, rng.normal(size=d), M @ M.T + 0.5 * np.eye(d), ("teacher", [d, k, out], tt)


def split(theta, d, H, out):
    return (theta[:H * d].reshape(H, d), theta[H * d:H * (d + 1)],
            theta[H * (d + 1):H * (d + 1) + out * H].reshape(out, H), theta[H * (d + 1) + out * H:])


def join(W, b, V, c):
    return np.concatenate([W.ravel(), b, V.ravel(), c])[None]


def test_student_equal_to_teacher_is_a_global_minimum():
    rng = np.random.default_rng(50)
    tt, mu, cov, target = teacher_problem(rng)
    risk, g, H = check_derivatives([3, 3, 2], tt[None], mu, cov, target, tol_h=2e-7)
    scale = np.sum(tt ** 2) ** 2
    assert risk[0] <= 1e-15 * scale
    assert np.max(np.abs(g)) <= 1e-14 * scale
    # a minimum: the Hessian is positive semi-definite (up to rounding)
    assert np.linalg.eigvalsh(H[0])[0] >= -1e-12 * np.max(np.abs(H))
    # the same teacher written with its neurons permuted
    W, b, V, c = split(tt, 3, 3, 2)
    perm = [2, 0, 1]
    r2, g2, _ = shallow_gaussian([3, 3, 2], join(W[perm], b[perm], V[:, perm], c), mu, cov, target)
    assert r2[0] <= 1e-15 * scale and np.max(np.abs(g2)) <= 1e-14 * scale


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_neuron_parallel_to_a_teacher_neuron(sign):
    """A student neuron along a teacher neuron (rho = +-1 exactly) with another bias: derivatives by
    finite differences, the risk by Monte Carlo and continuity as the angle closes."""
    rng = np.random.default_rng(51)
    tt, mu, cov, target = teacher_problem(rng)
    W, b, V, c = split(tt, 3, 3, 2)
    W2, b2, V2 = np.vstack([W, sign * 2 * W[0]]), np.r_[b, 0.3], np.hstack([V, rng.normal(size=(2, 1))])
    th = join(W2, b2, V2, c)
    risk, g, H = check_derivatives([3, 4, 2], th, mu, cov, target, tol_h=2e-7)
    n = 10 ** 6
    x = mu + rng.standard_normal((n, 3)) @ np.linalg.cholesky(cov).T
    loss, _ = mc_risk_grad([3, 4, 2], th[0], x, target_values(target, x))
    assert abs(loss.mean() - risk[0]) <= 5 * loss.std() / np.sqrt(n)
    for t in (1e-4, 1e-7, 1e-10):
        Wt = W2.copy()
        Wt[3] = sign * 2 * (W[0] + t * np.array([0.0, 1.0, -0.5]))
        rt, gt, Ht = shallow_gaussian([3, 4, 2], join(Wt, b2, V2, c), mu, cov, target, want_hess=True)
        assert abs(rt[0] - risk[0]) <= 100 * t * max(1.0, risk[0])
        assert np.max(np.abs(gt - g)) <= 100 * t * np.max(np.abs(g))
        assert np.max(np.abs(Ht - H)) <= 1e3 * t * np.max(np.abs(H)) + 1e-9


def test_two_student_neurons_duplicated():
    """Two identical student neurons (rho = 1 between students): the risk equals that of one neuron
    carrying the summed outer weight, and the derivatives match finite differences."""
    rng = np.random.default_rng(52)
    tt, mu, cov, target = teacher_problem(rng)
    W, b, V, c = split(rng.normal(size=3 * 4 + 2 * 4), 3, 3, 2)
    Vd = rng.normal(size=(2, 1))
    dup = join(np.vstack([W, W[1]]), np.r_[b, b[1]], np.hstack([V, Vd]), c)
    V1 = V.copy()
    V1[:, 1:2] += Vd
    r_dup, _, _ = check_derivatives([3, 4, 2], dup, mu, cov, target, tol_h=2e-7)
    r_one, _, _ = shallow_gaussian([3, 3, 2], join(W, b, V1, c), mu, cov, target)
    assert abs(r_dup[0] - r_one[0]) <= 1e-13 * max(1.0, r_one[0])


@pytest.mark.parametrize("bias", [0.7, -0.4, 0.0])
def test_zero_incoming_weights(bias):
    """w_i = 0: the unit is the constant relu(b_i) (mean 0, so c_i = b_i); its delta terms are 0. The
    risk equals that of the net with the constant moved into the output bias; derivatives match
    finite differences where the risk is twice differentiable (b_i != 0)."""
    rng = np.random.default_rng(53)
    tt, _, cov, target = teacher_problem(rng)
    mu = np.zeros(3)
    W, b, V, c = split(rng.normal(size=3 * 4 + 2 * 4), 3, 3, 2)
    Vz = rng.normal(size=(2, 1))
    th = join(np.vstack([W, np.zeros(3)]), np.r_[b, bias], np.hstack([V, Vz]), c)
    risk, g, H = shallow_gaussian([3, 4, 2], th, mu, cov, target, want_hess=True)
    r_ref, g_ref, _ = shallow_gaussian([3, 3, 2], join(W, b, V, c + Vz[:, 0] * max(bias, 0.0)), mu, cov, target)
    assert abs(risk[0] - r_ref[0]) <= 1e-13 * max(1.0, r_ref[0])
    # the other parameters' gradient is unchanged; the zero unit's weight gradient is
    # 2 E[r V_i 1{b_i > 0} x] and its bias gradient 2 E[r V_i] 1{b_i > 0}
    assert np.all(np.isfinite(H))
    if bias != 0.0:
        fg, fh = fd_grad_hess([3, 4, 2], th, mu, cov, target)
        assert np.max(np.abs(fg - g[0])) <= 1e-7 * np.max(np.abs(g))
        assert np.max(np.abs(fh - H[0])) <= 1e-7 * np.max(np.abs(H))
    else:
        # relu'(0) = 0: no gradient reaches a unit with (w_i, b_i) = 0 (SPEC §6)
        assert np.all(g[0][[9, 10, 11, 15]] == 0)
    # Monte Carlo of the gradient with the same convention
    n = 10 ** 6
    x = rng.standard_normal((n, 3)) @ np.linalg.cholesky(cov).T
    _, gs = mc_risk_grad([3, 4, 2], th[0], x, target_values(target, x))
    assert np.all(np.abs(gs.mean(axis=0) - g[0]) <= 5 * gs.std(axis=0) / np.sqrt(n) + 1e-12)


def test_zero_weight_teacher_neuron_and_bias_free():
    rng = np.random.default_rng(54)
    tt, mu, cov, _ = teacher_problem(rng)
    tt[:3] = 0.0                       # teacher neuron 0 is the constant relu(b_0)
    tt[9:12] = 0.0                     # bias-free teacher
    target = ("teacher", [3, 3, 2], tt)
    widths, theta, _, _, _ = problem(rng, 3, 3, 2, "affine", biases=False)
    check_derivatives(widths, theta, np.zeros(3), cov, target)
    risk, _, _ = shallow_gaussian(widths, theta, np.zeros(3), cov, target)
    n = 10 ** 6
    x = rng.standard_normal((n, 3)) @ np.linalg.cholesky(cov).T
    loss, _ = mc_risk_grad(widths, theta[0], x, target_values(target, x))
    assert abs(loss.mean() - risk[0]) <= 5 * loss.std() / np.sqrt(n)


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
def test_bad_input_names_the_argument():
    rng = np.random.default_rng(60)
    widths, theta, mu, cov, target = problem(rng, 2, 3, 1, "affine")
    with pytest.raises(ValueError, match="widths"):
        shallow_gaussian([2, 3, 3, 1], theta, mu, cov, target)
    with pytest.raises(ValueError, match="widths"):
        shallow_gaussian([2, 1], theta, mu, cov, target)
    with pytest.raises(ValueError, match="theta"):
        shallow_gaussian(widths, theta[:, :-1], mu, cov, target)
    with pytest.raises(ValueError, match="theta"):
        shallow_gaussian(widths, theta[0], mu, cov, target)
    with pytest.raises(ValueError, match="mean"):
        shallow_gaussian(widths, theta, np.zeros(3), cov, target)
    with pytest.raises(ValueError, match="cov"):
        shallow_gaussian(widths, theta, mu, np.array([[1.0, 0.5], [0.2, 1.0]]), target)
    with pytest.raises(ValueError, match="cov"):
        shallow_gaussian(widths, theta, mu, np.array([[1.0, 2.0], [2.0, 1.0]]), target)
    with pytest.raises(ValueError, match="cov"):
        shallow_gaussian(widths, theta, mu, np.eye(3), target)
    with pytest.raises(ValueError, match="target"):
        shallow_gaussian(widths, theta, mu, cov, ("affine", np.zeros((2, 2)), np.zeros(1)))
    with pytest.raises(ValueError, match="target"):
        shallow_gaussian(widths, theta, mu, cov, ("teacher", [2, 2, 1], np.zeros(5)))
    with pytest.raises(ValueError, match="target"):
        shallow_gaussian(widths, theta, mu, cov, ("teacher", [3, 2, 1], np.zeros(11)))
    with pytest.raises(ValueError, match="target"):
        shallow_gaussian(widths, theta, mu, cov, ("quadratic", None, None))
