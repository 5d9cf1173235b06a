"""The C++ 1-D partition path (``_core.quad1d_risk_and_grad``, cpp/src/cpu/quad1d_cpu.cpp) for deep nets.

Judged against the numpy reference (``backend="numpy"``: ``quadrature.kink_partition`` and the
per-network Python loop), against an independent integration (scipy ``quad`` between kinks found by
a dense grid and bisection of a forward pass written here), on degenerate partitions, and for
independence from the number of OpenMP threads.
"""
import json
import textwrap
import warnings

import numpy as np
import pytest
from scipy import integrate

import reluflow as rf
from conftest import evaluate, forward_1d, run_with_threads
from reluflow.backends import cpu as cpu_backend
from reluflow.quadrature import fixed_1d, kink_partition, quadrature_nodes

core = pytest.importorskip("reluflow._core")
if not hasattr(core, "quad1d_risk_and_grad"):  # pragma: no cover - the extension is always rebuilt
    pytest.skip("reluflow._core has no quad1d_risk_and_grad", allow_module_level=True)

RTOL64 = 1e-12
RTOL32 = 2e-5


# ---- problems ----------------------------------------------------------------------------------------

def make_target(kind: str, out: int):
    """A 1-D target with `out` outputs: affine, piecewise linear (knots inside and outside the
    domain) or piecewise quadratic."""
    if kind == "affine":
        return rf.targets.Affine(np.linspace(0.5, -1.0, out)[:, None], np.linspace(-0.25, 0.3, out))
    if kind == "pl":
        knots = np.array([-0.7, -0.1, 0.4, 0.9, 2.0])
        values = np.stack([np.array([0.0, 1.0, -0.5, 0.5, 0.1]) * (1 + o) + 0.1 * o for o in range(out)], axis=1)
        return rf.targets.PiecewiseLinear(knots, values)
    if kind == "pp":
        breaks = np.array([-1.2, -0.3, 0.5, 1.4])
        base = np.array([[0.2, 1.0, -0.5], [0.3, -0.4, 2.0], [-0.1, 0.7, -1.5]])
        coeffs = np.stack([base * (1 - 0.3 * o) for o in range(out)], axis=2)
        return rf.targets.PiecewisePolynomial(breaks, coeffs)
    raise AssertionError(kind)


def make_density(kind: str):
    if kind == "uniform":
        return rf.dists.Uniform(-1.0, 1.5)
    return rf.dists.PiecewisePolynomial([-1.0, 0.0, 0.7, 1.5], [[1.0, 0.5], [1.5, -0.2], [0.3, 1.0]])


def make_problem(widths, target="pl", density="uniform"):
    return rf.Problem(widths, make_target(target, widths[-1]), make_density(density))


@pytest.fixture
def native_calls(monkeypatch):
    """Counts the calls of the C++ path (so that a test knows which path ran)."""
    calls = []
    orig = core.quad1d_risk_and_grad

    def wrapped(*args, **kwargs):
        calls.append(args[1].shape)
        return orig(*args, **kwargs)

    monkeypatch.setattr(core, "quad1d_risk_and_grad", wrapped)
    return calls


def _native_1d_args(prob):
    """The problem keyword of ``_core.quad1d_risk_and_grad`` for ``prob``: ``{"spec": ...}`` (support,
    density and target; ``ProblemSpec.native()``)."""
    args = cpu_backend.quad1d_args(prob.spec, rf.Quadrature())
    for key in ("fixed_breaks", "order"):
        del args[key]
    return args


def assert_close(r, g, r_ref, g_ref, rtol):
    np.testing.assert_allclose(r, r_ref, rtol=rtol, atol=0)
    for k in range(g_ref.shape[0]):
        scale = np.abs(g_ref[k]).max()
        np.testing.assert_allclose(g[k], g_ref[k], rtol=rtol, atol=rtol * scale)


# ---- the partition and the nodes ------------------------------------------------------------------

@pytest.mark.parametrize("widths", [[1, 8, 8, 1], [1, 16, 16, 16, 1], [1, 6, 5, 2], [1, 3, 3, 3, 3, 3, 1]])
@pytest.mark.parametrize("lo,hi", [(-1.0, 1.5), (-np.inf, np.inf), (-np.inf, 0.3), (-0.3, np.inf)])
def test_kink_partition_matches_numpy(widths, lo, hi):
    layout = rf.Layout(widths)
    rng = np.random.default_rng(len(widths) * 7 + widths[1])
    for _ in range(10):
        theta = rng.normal(size=layout.num_params)
        ref = kink_partition(layout, theta, lo, hi)
        got = core.kink_partition_1d(widths, theta, lo, hi)
        assert got[0] == lo and got[-1] == hi and np.all(np.diff(got) > 0)
        # On an unbounded end piece a zero is extrapolated from the slope between two points; where the
        # pre-activation is nearly constant that slope is rounding noise and the "zero" lands anywhere
        # far out (1e15 and beyond) in numpy and C++ alike: compare the well-conditioned range only.
        got, ref = got[1:-1], ref[1:-1]
        if np.isinf(lo) or np.isinf(hi):
            got, ref = got[np.abs(got) < 1e3], ref[np.abs(ref) < 1e3]
        assert got.shape == ref.shape, (ref, got)
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)


def test_kink_partition_degenerate_matches_numpy():
    widths = [1, 4, 3, 1]
    layout = rf.Layout(widths)
    cases = [
        np.concatenate([np.zeros(4), [1.0, -1.0, 0.0, 2.0], np.ones(12), [0.5, -10.0, 0.0], [1.0, 1.0, 1.0], [0.0]]),
        np.concatenate([[1.0, 2.0, -4.0, 1.0], [-0.3, -0.6, 1.2, -0.7], -np.ones(12), [-0.1, -0.2, -0.3],
                        [1.0, 1.0, 1.0], [0.3]]),
        np.concatenate([[1.0, -1.0, 0.5, 2.0], [1.0, 3.0, -2.0, 0.5], np.arange(12.0) - 5.5, [0.1, 0.2, -0.3],
                        [1.0, -1.0, 1.0], [0.3]]),
    ]
    for theta in cases:
        for lo, hi in [(0.0, 1.0), (-np.inf, np.inf), (-2.0, 5.0)]:
            np.testing.assert_array_equal(core.kink_partition_1d(widths, theta, lo, hi),
                                          kink_partition(layout, theta, lo, hi))


@pytest.mark.parametrize("target", ["affine", "pl", "pp"])
@pytest.mark.parametrize("density", ["uniform", "pp"])
def test_nodes_match_numpy(target, density):
    prob = make_problem([1, 8, 8, 2], target, density)
    est = rf.Quadrature()
    lo, hi, fixed, q = fixed_1d(prob.spec, est)
    args = _native_1d_args(prob)
    for theta in prob.init(4, seed=3):
        nodes = quadrature_nodes(prob, theta, est)
        x, w, y = core.quad1d_nodes(list(prob.widths), theta, fixed, q, **args)
        assert x.shape == (nodes.x.shape[0],)
        np.testing.assert_allclose(x, nodes.x[:, 0], rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(w, nodes.w, rtol=1e-13, atol=0)
        np.testing.assert_allclose(y, prob.target(nodes.x), rtol=1e-13, atol=1e-14)


# ---- C++ path vs the numpy reference --------------------------------------------------------------

@pytest.mark.parametrize("widths", [[1, 8, 8, 1], [1, 16, 16, 16, 1], [1, 6, 5, 2]])
@pytest.mark.parametrize("target", ["affine", "pl", "pp"])
@pytest.mark.parametrize("density", ["uniform", "pp"])
def test_cpu_matches_numpy(widths, target, density, dtype, native_calls):
    prob = make_problem(widths, target, density)
    theta = prob.init(5, seed=sum(widths), dtype=dtype)
    r, g = prob.risk_and_grad(theta, rf.Quadrature(), backend="cpu")
    assert native_calls == [theta.shape]
    assert r.dtype == dtype and g.dtype == dtype
    r_ref, g_ref = prob.risk_and_grad(theta.astype(np.float64), rf.Quadrature(), backend="numpy")
    assert_close(r.astype(np.float64), g.astype(np.float64), r_ref, g_ref,
                 RTOL64 if dtype == np.float64 else RTOL32)
    # the risk alone is the same as with the gradient
    r_only = prob.risk(theta, rf.Quadrature(), backend="cpu")
    np.testing.assert_array_equal(r_only, r)


def test_explicit_order(native_calls):
    prob = make_problem([1, 6, 5, 1], "pp", "pp")
    theta = prob.init(4, seed=1)
    for est in (rf.Quadrature(order=1), rf.Quadrature(order=7)):
        r, g = prob.risk_and_grad(theta, est, backend="cpu")
        r_ref, g_ref = prob.risk_and_grad(theta, est, backend="numpy")
        assert_close(r, g, r_ref, g_ref, RTOL64)
    # order 1 is not exact for this integrand (degree 5): the explicit order reached the C++ rule
    r1, r_exact = (prob.risk(theta, est, backend="cpu") for est in (rf.Quadrature(order=1), rf.Quadrature()))
    assert np.max(np.abs(r1 - r_exact) / r_exact) > 1e-6
    assert len(native_calls) == 4


def test_teacher_target():
    # the C++ path knows a ReLU-net teacher (not routed by quadrature_risk_and_grad yet)
    teacher = rf.targets.Teacher([1, 3, 3, 1], np.random.default_rng(5).normal(size=rf.Layout([1, 3, 3, 1]).num_params))
    for dens in ("uniform", "pp"):
        prob = rf.Problem([1, 6, 5, 1], teacher, make_density(dens))
        theta = prob.init(4, seed=1)
        for est in (rf.Quadrature(), rf.Quadrature(order=7)):
            pos, kw = _core_call_args(prob, est)
            assert kw["spec"]["target_kind"] == "teacher"
            r, g = core.quad1d_risk_and_grad(list(prob.widths), theta, *pos, True, **kw)
            r_ref, g_ref = prob.risk_and_grad(theta, est, backend="numpy")
            assert_close(r, g, r_ref, g_ref, RTOL64)
    # a student equal to its teacher has zero risk and gradient
    prob = rf.Problem([1, 3, 3, 1], teacher, make_density("pp"))
    pos, kw = _core_call_args(prob)
    r, g = core.quad1d_risk_and_grad([1, 3, 3, 1], teacher.theta[None], *pos, True, **kw)
    assert r[0] < 1e-28 and np.abs(g).max() < 1e-13


def test_fallbacks_keep_the_python_loop(native_calls):
    # a Function target (exact=False), and an order beyond the C++ limit: the Python loop runs
    prob = rf.Problem([1, 5, 4, 1], rf.targets.Function(lambda x: np.sin(3 * x[:, 0])), rf.dists.Uniform(0.0, 1.0))
    theta = prob.init(3, seed=0)
    est = rf.Quadrature(exact=False)
    assert_close(*prob.risk_and_grad(theta, est, backend="cpu"), *prob.risk_and_grad(theta, est, backend="numpy"),
                 RTOL64)
    prob = make_problem([1, 5, 4, 1])
    est = rf.Quadrature(order=300)
    assert_close(*prob.risk_and_grad(theta, est, backend="cpu"), *prob.risk_and_grad(theta, est, backend="numpy"),
                 1e-11)
    # the numpy backend and shallow nets (the sweep) never take it
    prob.risk_and_grad(theta, rf.Quadrature(), backend="numpy")
    shallow = make_problem([1, 7, 1])
    shallow.risk_and_grad(shallow.init(2), rf.Quadrature(), backend="cpu")
    assert native_calls == []


# ---- degenerate cases -----------------------------------------------------------------------------

def _theta_414(W1, b1, W2, b2, v, c):
    return np.concatenate([W1, b1, np.ravel(W2), b2, v, [c]])


@pytest.mark.parametrize("case", ["zero_weight", "dead_layer", "outside", "coinciding", "on_target_knot",
                                  "constant", "on_density_break"])
def test_degenerate_against_numpy(case, native_calls):
    rng = np.random.default_rng(11)
    W1, b1 = rng.normal(size=4), rng.normal(size=4)
    W2, b2 = rng.normal(size=(3, 4)), rng.normal(size=3)
    v, c = rng.normal(size=3), 0.3
    dens = "uniform"
    if case == "zero_weight":
        W1[:3], b1[:3] = 0.0, [1.0, -1.0, 0.0]            # constant neurons: no kink
    elif case == "dead_layer":
        W2, b2 = -np.abs(W2), -np.abs(b2) - 0.1           # layer 2 negative everywhere on the domain
    elif case == "outside":
        W1, b1 = np.array([1.0, -1.0, 0.5, 2.0]), np.array([2.0, 3.0, -2.0, 4.5])   # kinks -2, 3, 4, -2.25
    elif case == "coinciding":
        W1, b1 = np.array([1.0, 2.0, -4.0, 1.0]), np.array([-0.3, -0.6, 1.2, -0.7])  # three kinks at 0.3
    elif case == "on_target_knot":
        W1[:2], b1[:2] = [2.0, -1.0], [0.8, -0.4]          # kinks at the knot -0.4 of the target
    elif case == "constant":
        W1[:] = 0.0                                        # the whole network is constant
    else:
        dens = "pp"
        W1, b1 = np.array([1.0, -2.0, 1.0, 3.0]), np.array([0.0, 1.4, 1.0, 0.0])    # kinks 0, .7, -1, 0
    theta = _theta_414(W1, b1, W2, b2, v, c)[None]
    prob = make_problem([1, 4, 3, 1], "pl", dens)
    r, g = prob.risk_and_grad(theta, rf.Quadrature(), backend="cpu")
    r_ref, g_ref = prob.risk_and_grad(theta, rf.Quadrature(), backend="numpy")
    assert native_calls == [(1, theta.shape[1])]
    assert_close(r, g, r_ref, g_ref, RTOL64)
    if case == "dead_layer":
        # N is the constant output bias: nothing else sees a gradient (a_2 = 0, relu'(z_2) = 0)
        assert np.all(g[0, :-1] == 0) and g[0, -1] != 0


def test_nonfinite_parameter_gives_nan(native_calls):
    prob = make_problem([1, 6, 5, 2], "pp", "pp")
    theta = prob.init(4, seed=2)
    r_clean, g_clean = prob.risk_and_grad(theta, rf.Quadrature(), backend="cpu")
    bad = theta.copy()
    bad[1, 7] = np.nan
    bad[2, -1] = np.inf
    # Problem refuses non-finite theta; the integrators' frozen networks can still reach this layer
    r, g = evaluate(prob, bad, rf.Quadrature(), backend="cpu")
    assert np.isnan(r[1]) and np.isnan(r[2]) and np.all(np.isnan(g[1])) and np.all(np.isnan(g[2]))
    np.testing.assert_array_equal(r[[0, 3]], r_clean[[0, 3]])
    np.testing.assert_array_equal(g[[0, 3]], g_clean[[0, 3]])
    r32, g32 = evaluate(prob, bad.astype(np.float32), rf.Quadrature(), backend="cpu")
    assert np.isnan(r32[1]) and np.all(np.isnan(g32[2])) and np.all(np.isfinite(g32[[0, 3]]))


# ---- determinism ------------------------------------------------------------------------------------

def _core_call_args(prob, est=None):
    """(fixed, order) and the keywords (spec) of ``_core.quad1d_risk_and_grad`` for ``prob``."""
    _lo, _hi, fixed, q = fixed_1d(prob.spec, est or rf.Quadrature())
    return (fixed, q), _native_1d_args(prob)


def test_batch_equals_single_networks():
    prob = make_problem([1, 16, 16, 16, 1], "pp", "pp")
    theta = prob.init(32, seed=4)
    pos, kw = _core_call_args(prob)
    r, g = core.quad1d_risk_and_grad(list(prob.widths), theta, *pos, True, **kw)
    r_only, none = core.quad1d_risk_and_grad(list(prob.widths), theta, *pos, False, **kw)
    assert none is None
    np.testing.assert_array_equal(r_only, r)
    for k in (0, 7, 31):
        rk, gk = core.quad1d_risk_and_grad(list(prob.widths), theta[k:k + 1], *pos, True, **kw)
        np.testing.assert_array_equal(rk[0], r[k])
        np.testing.assert_array_equal(gk[0], g[k])


_THREAD_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import reluflow as rf
    from reluflow import _core
    out = {"threads": _core.max_threads()}
    for widths, K in (([1, 64, 64, 1], 3), ([1, 16, 16, 16, 1], 32)):
        prob = rf.Problem(widths, rf.targets.PiecewiseLinear([0.0, 0.3, 1.0], [0.0, 1.0, -0.5]),
                          rf.dists.PiecewisePolynomial([0.0, 0.5, 1.0], [[1.0, 1.0], [1.5, -1.0]]))
        theta = prob.init(K, seed=9)
        r, g = prob.risk_and_grad(theta, rf.Quadrature(), backend="cpu")
        out[str(widths)] = [r.tobytes().hex(), g.tobytes().hex()]
    json.dump(out, sys.stdout)
""")


def test_independent_of_thread_count():
    results = []
    for n in (1, 2, 5):
        results.append(json.loads(run_with_threads(_THREAD_SCRIPT, n, timeout=300)))
    if core.has_openmp:
        assert [r["threads"] for r in results] == [1, 2, 5]
    for res in results[1:]:
        for key in res:
            if key != "threads":
                assert res[key] == results[0][key], key


# ---- against an independent integration -------------------------------------------------------------

def _unpack(widths, theta):
    out, off = [], 0
    for k in range(1, len(widths)):
        W = theta[off:off + widths[k] * widths[k - 1]].reshape(widths[k], widths[k - 1])
        off += widths[k] * widths[k - 1]
        out.append((W, theta[off:off + widths[k]]))
        off += widths[k]
    return out


def _forward(params, x):
    """x (n,) -> hidden pre-activations [(n, l_k)], activations [a_0 .. a_{L-1}], output (n, out)."""
    return forward_1d(params, x)


def _loss_grad(params, x, y):
    """|N(x) - y|^2 (n,) and its generalized gradient (n, P) by explicit backpropagation."""
    zs, acts, out = _forward(params, x)
    r = out - y
    delta, pieces = 2.0 * r, []
    for k in range(len(params) - 1, -1, -1):
        pieces.append(((delta[:, :, None] * acts[k][:, None, :]).reshape(len(x), -1), delta))
        if k > 0:
            delta = (delta @ params[k][0]) * (zs[k - 1] > 0)
    return np.sum(r * r, axis=1), np.concatenate([np.concatenate(p, axis=1) for p in reversed(pieces)], axis=1)


def _brute_kinks(params, lo, hi, n=20001):
    xs = np.linspace(lo, hi, n)
    zs, _, _ = _forward(params, xs)
    kinks = []
    for layer, z in enumerate(zs):
        for j in range(z.shape[1]):
            s = z[:, j]
            for i in np.flatnonzero(s[:-1] * s[1:] < 0):
                a, b = xs[i], xs[i + 1]
                for _ in range(100):
                    m = 0.5 * (a + b)
                    if not a < m < b:
                        break
                    if (_forward(params, np.array([m]))[0][layer][0, j] > 0) == (s[i] > 0):
                        a = m
                    else:
                        b = m
                kinks.append(0.5 * (a + b))
            kinks.extend(xs[s == 0])
    return np.array(kinks)


def _independent(widths, theta, target, pdf, breaks, lo, hi):
    params = _unpack(widths, np.asarray(theta, dtype=np.float64))
    pts = np.concatenate([[lo, hi], _brute_kinks(params, lo, hi), breaks])
    pts = np.unique(pts[(pts >= lo) & (pts <= hi)])
    risk, grad = 0.0, np.zeros(len(theta))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        for a, b in zip(pts[:-1], pts[1:]):
            if b - a < 1e-14:
                continue

            def f(t):
                x = np.array([t])
                return _loss_grad(params, x, target(x[:, None]))[0][0] * pdf(t)

            def df(t):
                x = np.array([t])
                return _loss_grad(params, x, target(x[:, None]))[1][0] * pdf(t)

            risk += integrate.quad(f, a, b, epsabs=0.0, epsrel=1e-13, limit=200)[0]
            grad += integrate.quad_vec(df, a, b, epsabs=0.0, epsrel=1e-13, limit=200)[0]
    return risk, grad


@pytest.mark.parametrize("widths,target,density", [([1, 8, 8, 1], "pl", "uniform"), ([1, 6, 5, 2], "pp", "pp"),
                                                   ([1, 6, 6, 4, 1], "affine", "pp")])
def test_against_scipy(widths, target, density):
    prob = make_problem(widths, target, density)
    dist = prob.input
    lo, hi = float(dist.low[0]), float(dist.high[0])
    if density == "uniform":
        def pdf(t):
            return 1.0 / (hi - lo)
    else:  # the density normalized here, not by reluflow
        raw_b = np.array([-1.0, 0.0, 0.7, 1.5])
        raw_c = [[1.0, 0.5], [1.5, -0.2], [0.3, 1.0]]
        mass = sum(integrate.quad(lambda t, i=i: np.polyval(raw_c[i][::-1], t - raw_b[i]), raw_b[i], raw_b[i + 1])[0]
                   for i in range(3))

        def pdf(t):
            i = min(max(np.searchsorted(raw_b, t, side="right") - 1, 0), 2)
            return np.polyval(raw_c[i][::-1], t - raw_b[i]) / mass
    t = prob.target
    breaks = np.concatenate([np.asarray(dist.breaks()), t.breaks(lo, hi)])
    theta = prob.init(3, seed=6)
    r, g = prob.risk_and_grad(theta, rf.Quadrature(), backend="cpu")
    for k in range(3):
        R, G = _independent(widths, theta[k], t, pdf, breaks, lo, hi)
        np.testing.assert_allclose(r[k], R, rtol=1e-10)
        np.testing.assert_allclose(g[k], G, rtol=1e-9, atol=1e-10 * np.abs(G).max())


# ---- argument checks ---------------------------------------------------------------------------------

def test_bad_arguments():
    prob = make_problem([1, 4, 3, 1], "pp", "pp")
    theta = prob.init(2)
    (fixed, q), kw = _core_call_args(prob)
    spec = kw["spec"]
    lo, hi = spec["lo"], spec["hi"]

    def call(widths=(1, 4, 3, 1), th=theta, lo=lo, hi=hi, fixed=fixed, q=q, **over):
        # the problem's keys (lo, hi, density and target) go into the one `spec` dict
        return core.quad1d_risk_and_grad(list(widths), th, fixed, q, True, spec={**spec, "lo": lo, "hi": hi, **over})

    call()
    with pytest.raises(ValueError, match="widths"):
        call(widths=(2, 4, 3, 1))
    with pytest.raises(ValueError, match="theta"):
        call(th=theta[:, :-1])
    with pytest.raises(ValueError, match="lo, hi"):
        call(lo=hi, hi=lo)
    with pytest.raises(ValueError, match="lo, hi"):
        call(lo=-np.inf)
    with pytest.raises(ValueError, match="order"):
        call(q=0)
    with pytest.raises(ValueError, match="fixed_breaks"):
        call(fixed=np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="density_coeffs"):
        call(density_coeffs=None)
    with pytest.raises(ValueError, match="target_kind"):
        call(target_kind="spline")
    with pytest.raises(ValueError, match="target_coeffs"):
        call(target_coeffs=np.zeros((3, 2, 2)))
    with pytest.raises(ValueError, match="teacher_widths"):
        call(target_kind="teacher", teacher_widths=[1, 2, 2], teacher_theta=np.zeros(12))
    with pytest.raises(ValueError, match="teacher_theta"):
        call(target_kind="teacher", teacher_widths=[1, 2, 1], teacher_theta=np.zeros(5))
    with pytest.raises(ValueError, match="lo, hi"):
        core.kink_partition_1d([1, 4, 3, 1], theta[0], 1.0, 1.0)
