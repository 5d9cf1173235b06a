"""Second order (SPEC §8, issue 18 parts 1-2): the exact Hessian of a sampled risk against
torch.func.hessian and finite differences of the gradient, Hessian-vector products, spectra, rank and
the zero eigenvalues forced by homogeneity and dead neurons."""
import numpy as np
import pytest

import reluflow as rf
from reluflow.layout import Layout
from reluflow.quadrature import fixed_1d, nodes_1d
from conftest import run_with_threads

HAT = rf.targets.PiecewiseLinear([0.0, 0.5, 1.0], [0.0, 1.0, 0.0])


def _torch_risk(layout, x, w, y):
    torch = pytest.importorskip("torch")
    xt, wt, yt = (torch.as_tensor(a) for a in (x, w, y))

    def risk(t):
        out = xt
        for k in range(layout.num_layers):
            lo, li = layout.widths[k + 1], layout.widths[k]
            W = t[layout.w_offsets[k]:layout.w_offsets[k] + lo * li].reshape(lo, li)
            b = t[layout.b_offsets[k]:layout.b_offsets[k] + lo]
            out = out @ W.T + b
            if k < layout.num_layers - 1:
                out = torch.relu(out)
        return (wt[:, None] * (out - yt) ** 2).sum()
    return risk


@pytest.mark.parametrize("widths", [[1, 6, 1], [2, 5, 4, 2], [3, 4, 4, 4, 1]])
def test_hessian_equals_torch_autograd(widths, backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(len(widths))
    target = rf.targets.Affine(rng.normal(size=(widths[-1], widths[0])), rng.normal(size=widths[-1]))
    prob = rf.Problem(widths, target, rf.dists.Uniform(-1.0, 1.0, dim=widths[0]) if widths[0] > 1 else None)
    theta = prob.init(3, seed=1)
    x = rng.uniform(-1, 1, (40, widths[0]))
    w = rng.uniform(0.1, 1.0, 40)
    y = rng.normal(size=(40, widths[-1]))
    H = prob.hessian(theta, rf.Points(x, w, y), backend=backend)
    assert H.shape == (3, prob.num_params, prob.num_params) and np.array_equal(H, np.swapaxes(H, 1, 2))
    risk = _torch_risk(prob.layout, x, w, y)
    for k in range(3):
        Ht = torch.func.hessian(risk)(torch.as_tensor(theta[k])).numpy()
        np.testing.assert_allclose(H[k], Ht, rtol=0, atol=1e-12 * np.abs(Ht).max())


def test_hessian_equals_finite_differences_of_the_gradient():
    """Away from kinks (no node near a pre-activation zero) the central difference of the exact
    gradient converges to the Hessian."""
    prob = rf.Problem([1, 5, 3, 1], HAT)
    est = rf.QuasiMonteCarlo(64, seed=2)
    theta = prob.init(1, seed=7)
    H = prob.hessian(theta, est)[0]
    h = 1e-6
    for i in range(0, prob.num_params, 3):
        e = np.zeros_like(theta)
        e[0, i] = h
        gp = prob.risk_and_grad(theta + e, est, backend="numpy")[1][0]
        gm = prob.risk_and_grad(theta - e, est, backend="numpy")[1][0]
        np.testing.assert_allclose((gp - gm) / (2 * h), H[:, i], rtol=1e-6, atol=1e-7 * np.abs(H).max())


def test_hvp_shapes_dtypes_and_refusals(backend):
    prob = rf.Problem([1, 6, 1], HAT)
    theta = prob.init(2, seed=3, dtype=np.float32)
    est = rf.MonteCarlo(128, seed=1)
    H = prob.hessian(theta, est, backend=backend)
    V = np.random.default_rng(0).normal(size=(2, prob.num_params))
    hv = prob.hvp(theta, V, est, backend=backend)
    assert hv.shape == (2, prob.num_params) and hv.dtype == np.float32
    np.testing.assert_allclose(hv, np.einsum("kpq,kq->kp", H.astype(np.float64), V), rtol=1e-4,
                               atol=1e-4 * np.abs(hv).max())
    assert prob.hvp(theta, V[:, None, :].repeat(3, axis=1), est, backend=backend).shape == (2, 3, prob.num_params)
    with pytest.raises(ValueError, match="V: expected a \\(K, P\\) or \\(K, B, P\\) array"):
        prob.hvp(theta, V[:1], est)
    with pytest.raises(ValueError, match="V: expected finite directions"):
        prob.hvp(theta, V * np.nan, est)


def _generic_net(prob, seed, lo=0.0, hi=1.0):
    """A network whose first-layer kinks lie well inside (lo, hi), away from each other and from the
    fixed breaks, so that the risk is twice differentiable there (the generic case)."""
    rng = np.random.default_rng(seed)
    theta = prob.init(1, seed=seed)[0]
    W, b = prob.layout.unpack(theta[None])[0]
    l1 = W.shape[1]
    kinks = lo + (hi - lo) * (np.arange(l1) + 0.5 + 0.3 * rng.uniform(-1, 1, l1)) / l1
    W[0, :, 0] = rng.choice([-1.0, 1.0], l1) * rng.uniform(0.8, 2.0, l1)
    b[0] = -kinks * W[0, :, 0]
    return theta[None]


@pytest.mark.parametrize("widths,target,density", [
    ([1, 6, 1], HAT, None),
    ([1, 5, 2], rf.targets.Affine([[1.0], [-0.5]], [0.2, 0.1]), None),
    ([1, 4, 3, 1], HAT, None),
    ([1, 3, 4, 2, 1], rf.targets.PiecewiseLinear([0.0, 0.3, 1.0], [0.5, -0.2, 0.4]), "poly"),
])
def test_quadrature_hessian_equals_finite_differences_of_the_exact_gradient(widths, target, density):
    """The exact 1-D quadrature risk: the Hessian with the moving-kink terms is the derivative of the
    exact gradient (central differences, float64, a generic network), to <= 1e-7 relative; without
    the kink terms (the fixed-pattern Hessian on the same nodes) it is not."""
    dist = rf.dists.PiecewisePolynomial([0.0, 0.4, 1.0], [[1.0, 1.0], [2.0, -0.5]]) if density else None
    prob = rf.Problem(widths, target, dist)
    est = rf.Quadrature()
    theta = _generic_net(prob, seed=len(widths) + (density is not None))
    H = prob.hessian(theta, est)[0]
    assert np.array_equal(H, H.T)
    h = 1e-5
    fd = np.empty_like(H)
    for i in range(prob.num_params):
        e = np.zeros_like(theta)
        e[0, i] = h
        gp = prob.risk_and_grad(theta + e, est, backend="numpy")[1][0]
        gm = prob.risk_and_grad(theta - e, est, backend="numpy")[1][0]
        fd[:, i] = (gp - gm) / (2 * h)
    scale = np.abs(fd).max()
    np.testing.assert_allclose(H, fd, rtol=0, atol=1e-7 * scale)
    q = nodes_1d(prob.spec, theta[0], est, fixed_1d(prob.spec, est))
    H_fixed = prob.hessian(theta, rf.Points(q.x, q.w, prob.spec.target(q.x)))[0]
    assert np.abs(H_fixed - fd).max() > 1e-4 * scale        # the kink terms matter


def test_quadrature_hvp_matches_hessian_and_backends(backend):
    prob = rf.Problem([1, 4, 3, 1], HAT)
    theta = np.concatenate([_generic_net(prob, 1), _generic_net(prob, 2)])
    V = np.random.default_rng(4).normal(size=(2, 3, prob.num_params))
    H = prob.hessian(theta, rf.Quadrature(), backend=backend)
    hv = prob.hvp(theta, V, rf.Quadrature(), backend=backend)
    np.testing.assert_allclose(hv, np.einsum("kpq,kbq->kbp", H, V), rtol=1e-12, atol=1e-12 * np.abs(hv).max())
    np.testing.assert_allclose(H, prob.hessian(theta, rf.Quadrature(), backend="numpy"), rtol=1e-12, atol=1e-14)


def test_tensor_grid_quadrature_hessian_is_the_weighted_sum():
    prob = rf.Problem([2, 4, 1], rf.targets.Affine([1.0, -1.0]))
    theta = prob.init(1, seed=2)
    H = prob.hessian(theta, rf.Quadrature(cells=2, order=3))
    assert H.shape == (1, prob.num_params, prob.num_params) and np.all(np.isfinite(H))


def test_zero_eigenvalues_at_a_global_minimum():
    """A student equal to its teacher on Points has residual 0: H = 2 J^T J; its rank is at most
    P - (alive hidden neurons) - (parameters of dead neurons), and a neuron made dead adds zeros."""
    lay = Layout([1, 4, 1])
    theta_t = np.array([1.0, -1.0, 2.0, 0.5, 0.1, 0.6, -0.3, 0.2, 1.0, -0.7, 0.5, 0.8, 0.05])
    prob = rf.Problem([1, 4, 1], rf.targets.Teacher([1, 4, 1], theta_t))
    est = rf.Points(np.linspace(0.0, 1.0, 50))
    theta = theta_t[None].copy()
    r, g = prob.risk_and_grad(theta, est)
    assert r[0] < 1e-28 and np.abs(g).max() < 1e-13
    ev = rf.landscape.spectrum(prob, theta, est)[0]
    assert np.all(ev > -1e-10 * np.abs(ev).max())            # positive semidefinite to rounding
    expected = rf.landscape.expected_zero_eigenvalues(prob, theta, est)[0]
    assert expected == 4 and rf.landscape.rank(prob, theta, est)[0] <= lay.num_params - expected
    dead = theta.copy()
    dead[0, 1], dead[0, 5] = 1.0, -5.0                          # neuron 1: w = 1, b = -5: dead on [0, 1]
    prob_d = rf.Problem([1, 4, 1], rf.targets.Teacher([1, 4, 1], dead[0]))
    assert [m.tolist() for m in rf.landscape.dead_mask(prob_d, dead, est)] == [[[False, True, False, False]]]
    assert rf.landscape.expected_zero_eigenvalues(prob_d, dead, est)[0] == 3 + 3
    assert rf.landscape.rank(prob_d, dead, est)[0] <= lay.num_params - 6


def test_landscape_arguments():
    prob = rf.Problem([1, 3, 1], HAT)
    with pytest.raises(TypeError, match="prob: expected a reluflow.Problem"):
        rf.landscape.spectrum(None, prob.init(1), rf.MonteCarlo(8))
    with pytest.raises(TypeError, match="estimator: expected Points, MonteCarlo or QuasiMonteCarlo"):
        rf.landscape.dead_mask(prob, prob.init(1), rf.Quadrature())
    with pytest.raises(ValueError, match="tol: expected tol >= 0"):
        rf.landscape.rank(prob, prob.init(1), rf.MonteCarlo(8), tol=-1.0)


# ---- polish (SPEC §8) ------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["newton", "trust-region"])
def test_polish_reaches_machine_precision_from_the_end_of_a_flow(method):
    """Exact 1-D quadrature: from the end of a dopri5 flow (|G| ~ 1e-5) to |G| <= 1e-12, near where
    the flow stopped, the risk not higher."""
    prob = rf.Problem([1, 3, 1], rf.targets.Affine([[1.0]], [0.2]))
    run = rf.gradient_flow(prob, prob.init(4, seed=0), 200.0, method="dopri5", estimator=rf.Quadrature(),
                           progress=False)
    g0 = np.linalg.norm(prob.risk_and_grad(run.theta, rf.Quadrature())[1], axis=1)
    assert g0.max() > 1e-6                                       # the flow alone is far from it
    p = rf.polish(prob, run.theta, rf.Quadrature(), method=method)
    assert list(p.status) == ["converged"] * 4, p
    assert p.grad_norm.max() <= 1e-12
    g = np.linalg.norm(prob.risk_and_grad(p.theta, rf.Quadrature())[1], axis=1)
    np.testing.assert_allclose(g, p.grad_norm, rtol=1e-6, atol=1e-15)   # recomputed independently
    assert np.all(p.risk <= run.risk[-1] + 1e-15)
    assert np.abs(p.theta - run.theta).max() < 0.5           # the nearby point (minima form a manifold here)


def test_polish_trust_region_from_farther_out():
    """Levenberg-Marquardt on G = 0 converges from the end of a short flow (|G| ~ 0.1), where the
    pseudo-inverse Newton step stalls or crawls on some networks; every end point is a critical point
    (checked by an independent gradient evaluation), minimum or saddle."""
    prob = rf.Problem([1, 6, 1], HAT)
    run = rf.gradient_flow(prob, prob.init(8, seed=0), 2.0, method="dopri5", estimator=rf.Quadrature(),
                           progress=False)
    g0 = np.linalg.norm(prob.risk_and_grad(run.theta, rf.Quadrature())[1], axis=1)
    assert g0.max() > 0.1
    tr = rf.polish(prob, run.theta, rf.Quadrature(), method="trust-region")
    nt = rf.polish(prob, run.theta, rf.Quadrature(), method="newton")
    assert list(tr.status) == ["converged"] * 8, tr
    assert np.sum(tr.status == "converged") > np.sum(nt.status == "converged")
    g = np.linalg.norm(prob.risk_and_grad(tr.theta, rf.Quadrature())[1], axis=1)
    assert g.max() <= 1e-12
    # |G| decreases, not the risk: an end point may be a saddle above the start (spectrum tells)
    np.testing.assert_allclose(tr.risk, prob.risk(tr.theta, rf.Quadrature()), rtol=1e-12, atol=1e-15)


def _deep_points_flow_frozen_output():
    """[1, 4, 3, 1] on 64 points with the output layer frozen, after a dopri5 flow:
    (prob, estimator, frozen mask, run)."""
    prob = rf.Problem([1, 4, 3, 1], HAT)
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (64, 1))
    est = rf.Points(x, np.full(64, 1 / 64), HAT(x))
    frozen = prob.mask(layers=[3])
    run = rf.gradient_flow(prob, prob.init(2, seed=4), 50.0, method="dopri5", estimator=est, frozen=frozen,
                           progress=False)
    return prob, est, frozen, run


def test_polish_deep_net_points_and_frozen():
    """A deep net on Points, with the output layer frozen: the frozen parameters do not move, the
    others reach |G| <= 1e-12 over the free parameters."""
    prob, est, frozen, run = _deep_points_flow_frozen_output()
    p = rf.polish(prob, run.theta, est, frozen=frozen)
    assert list(p.status) == ["converged"] * 2, p
    np.testing.assert_array_equal(p.theta[:, frozen], run.theta[:, frozen])
    g = prob.risk_and_grad(p.theta, est)[1][:, ~frozen]
    assert np.linalg.norm(g, axis=1).max() <= 1e-12


def test_gauss_newton_system_against_finite_differences():
    """The Levenberg-Marquardt polish's J^T W J and J^T W r: 2 J^T W r is the risk's gradient (deep net,
    out = 2; exact quadrature on the kink partition and a point set), and J^T W J is what finite
    differences of the network's outputs at the nodes give (points away from kinks)."""
    from reluflow.landscape import _gauss_newton_system
    prob = rf.Problem([1, 5, 4, 2], rf.targets.Affine([[1.0], [-0.5]], [0.1, 0.3]))
    theta = prob.init(1, seed=3)[0]
    rng = np.random.default_rng(8)
    x = rng.uniform(-1, 1, (40, 1))
    w = rng.uniform(0.1, 1.0, 40)
    y = rng.normal(size=(40, 2))
    for est in (rf.Quadrature(), rf.Points(x, w, y)):
        A, b = _gauss_newton_system(prob, theta, est, "auto")
        g = prob.risk_and_grad(theta[None], est)[1][0]
        np.testing.assert_allclose(2 * b, g, rtol=1e-12, atol=1e-14 * np.abs(g).max())
        np.testing.assert_allclose(A, A.T, rtol=0, atol=1e-14 * np.abs(A).max())
    eps, P = 1e-6, prob.num_params
    J = np.empty((40 * 2, P))
    for i in range(P):
        e = np.zeros(P)
        e[i] = eps
        J[:, i] = ((prob.realization((theta + e)[None], x) - prob.realization((theta - e)[None], x))[0] / (2 * eps)).reshape(-1)
    Wr = np.repeat(w, 2)
    A, _ = _gauss_newton_system(prob, theta, rf.Points(x, w, y), "auto")
    np.testing.assert_allclose(A, J.T @ (Wr[:, None] * J), rtol=1e-6, atol=1e-8 * np.abs(A).max())


def test_polish_levenberg_marquardt_on_a_manifold_of_minima():
    """A wide net whose global minima (risk 0) form a manifold: from the end of a short flow,
    Levenberg-Marquardt on the residuals reaches |G| <= 1e-12 on every network, where the Newton step
    (pseudo-inverse of the exact Hessian) stalls on some; the risk only decreases, down to rounding."""
    prob = rf.Problem([1, 24, 1], HAT)
    run = rf.gradient_flow(prob, prob.init(3, seed=2), 100.0, method="dopri5", estimator=rf.Quadrature(),
                           progress=False)
    lm = rf.polish(prob, run.theta, rf.Quadrature(), method="levenberg-marquardt")
    assert list(lm.status) == ["converged"] * 3, lm
    g = np.linalg.norm(prob.risk_and_grad(lm.theta, rf.Quadrature())[1], axis=1)
    assert g.max() <= 1e-12
    assert np.all(lm.risk <= run.risk[-1]) and lm.risk.max() < 1e-20
    with pytest.warns(RuntimeWarning, match="method='levenberg-marquardt' converges"):
        nt = rf.polish(prob, run.theta, rf.Quadrature(), method="newton")
    assert np.sum(nt.status == "converged") < 3, nt


def test_polish_levenberg_marquardt_frozen_and_refusals():
    prob, est, frozen, run = _deep_points_flow_frozen_output()
    p = rf.polish(prob, run.theta, est, method="levenberg-marquardt", frozen=frozen)
    np.testing.assert_array_equal(p.theta[:, frozen], run.theta[:, frozen])
    assert np.all(p.risk <= run.risk[-1])
    assert set(p.status) <= {"converged", "stalled", "max_iter"}
    gp = rf.Problem([2, 3, 1], rf.targets.Affine([[1.0, -1.0]]), rf.dists.Gaussian(dim=2))
    with pytest.raises(ValueError, match="method: 'levenberg-marquardt' needs"):
        rf.polish(gp, gp.init(1, seed=0), rf.Exact(), method="levenberg-marquardt")


def test_polish_refuses_bad_arguments():
    prob = rf.Problem([1, 3, 1], HAT)
    theta = prob.init(1, seed=0)
    with pytest.raises(ValueError, match="method: expected one of"):
        rf.polish(prob, theta, rf.Quadrature(), method="bfgs")
    with pytest.raises(ValueError, match="gtol"):
        rf.polish(prob, theta, rf.Quadrature(), gtol=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        rf.polish(prob, theta, rf.Quadrature(), max_iter=-1)
    with pytest.raises(TypeError, match="frozen"):
        rf.polish(prob, theta, rf.Quadrature(), frozen=np.ones(3, dtype=bool))
    with pytest.raises(TypeError, match="prob"):
        rf.polish("prob", theta, rf.Quadrature())
    p = rf.polish(prob, theta, rf.Quadrature(), max_iter=0)
    assert p.iterations[0] == 0 and p.status[0] in ("max_iter", "converged")


# ---- the C++ Hessian-vector products of the cpu backend (issue 18 part 1) ---------------------------

def _core_or_skip():
    core, why = rf.registry.core()
    if core is None:
        pytest.skip(f"the C++ extension is not available: {why}")
    return core


_TARGET_1D = rf.targets.PiecewiseLinear([0.0, 0.3, 1.0], [0.5, -0.2, 0.4])


def _problem(widths):
    """A problem of these widths: the 1-D hat-like target (out copies) in 1-D, an affine target in d-D."""
    d, out = widths[0], widths[-1]
    if d == 1:
        target = _TARGET_1D if out == 1 else rf.targets.Affine(np.linspace(-1.0, 1.0, out)[:, None],
                                                               np.linspace(0.1, 0.3, out))
        return rf.Problem(widths, target)
    rng = np.random.default_rng(d * 10 + out)
    return rf.Problem(widths, rf.targets.Affine(rng.normal(size=(out, d)), rng.normal(size=out)),
                      rf.dists.Uniform(-1.0, 1.0, dim=d))


def _estimators(d):
    rng = np.random.default_rng(d)
    x = rng.uniform(0.0, 1.0, (37, d))
    ests = [rf.Points(x, rng.uniform(0.1, 1.0, 37) / 37), rf.MonteCarlo(300, seed=3), rf.QuasiMonteCarlo(128, seed=1)]
    return ests + ([rf.Quadrature()] if d == 1 else [rf.Quadrature(cells=2, order=3)])


def _close(a, b, rel=1e-13):
    """max |a - b| <= rel * max |b| (relative to the array's scale: single entries may cancel)."""
    err, scale = np.abs(a - b).max(), np.abs(b).max()
    assert err <= rel * scale, f"max error {err:.3g} > {rel:g} x {scale:.3g}"


@pytest.mark.parametrize("widths", [[1, 7, 1], [1, 5, 2], [3, 6, 1], [3, 4, 3, 2], [1, 4, 3, 1], [1, 3, 4, 2, 2]])
@pytest.mark.parametrize("K", [1, 5])
def test_cpu_hessian_and_hvp_equal_the_reference(widths, K):
    """The C++ kernel (cpu) against the numpy reference, to 1e-13 of the scale: the full Hessian
    (B = P) and one direction (B = 1), every estimator (the 1-D Quadrature through its kink terms)."""
    _core_or_skip()
    prob = _problem(widths)
    theta = prob.init(K, seed=K + len(widths))
    V = np.random.default_rng(K).normal(size=(K, prob.num_params))
    for est in _estimators(widths[0]):
        H_cpu = prob.hessian(theta, est, backend="cpu")
        H_ref = prob.hessian(theta, est, backend="numpy")
        assert H_cpu.shape == (K, prob.num_params, prob.num_params) and np.array_equal(H_cpu, np.swapaxes(H_cpu, 1, 2))
        _close(H_cpu, H_ref)
        hv = prob.hvp(theta, V, est, backend="cpu")
        assert hv.shape == (K, prob.num_params)
        _close(hv, prob.hvp(theta, V, est, backend="numpy"))
        _close(hv, np.einsum("kpq,kq->kp", H_ref, V), rel=1e-12)


def test_cpu_hvp_float32_theta_is_computed_in_float64():
    """float32 theta: computed in float64 from the float32 values, returned in float32."""
    _core_or_skip()
    prob = _problem([1, 5, 3, 1])
    theta = prob.init(3, seed=2, dtype=np.float32)
    V = np.random.default_rng(1).normal(size=(3, 2, prob.num_params))
    est = rf.QuasiMonteCarlo(64, seed=0)
    hv = prob.hvp(theta, V, est, backend="cpu")
    assert hv.dtype == np.float32
    ref = prob.hvp(theta.astype(np.float64), V, est, backend="cpu")
    np.testing.assert_array_equal(hv, ref.astype(np.float32))
    _close(ref, prob.hvp(theta.astype(np.float64), V, est, backend="numpy"))


@pytest.mark.parametrize("est", [rf.MonteCarlo(200, seed=4), rf.QuasiMonteCarlo(128, seed=2)],
                         ids=["monte_carlo", "qmc"])
@pytest.mark.parametrize("widths", [[1, 6, 1], [3, 4, 3, 2]])
def test_cpu_hessian_equals_torch_on_sampled_nodes(widths, est):
    """The sampled risk on the cpu backend's own nodes (C++ samplers) against torch.func.hessian."""
    _core_or_skip()
    torch = pytest.importorskip("torch", reason="torch is needed for the autograd cross-check")
    prob = _problem(widths)
    theta = prob.init(2, seed=5)
    nodes = prob.nodes(est, backend="cpu")
    y = prob.target_values(nodes, backend="cpu")
    H = prob.hessian(theta, est, backend="cpu")
    risk = _torch_risk(prob.layout, nodes.x, nodes.w, y)
    for k in range(2):
        Ht = torch.func.hessian(risk)(torch.as_tensor(theta[k])).numpy()
        _close(H[k], Ht, rel=1e-12)


def test_cpu_hvp_takes_the_vanishing_flags():
    """A deep 1-D net whose second-layer pre-activation vanishes identically on a piece (Nodes.zero):
    the C++ kernel takes the flags as the reference does (on the quadrature's own nodes, and through
    prob.hvp)."""
    core = _core_or_skip()
    c = 0.25 + np.sqrt(2) * 1e-3       # tests/test_quadrature.py::_vanishing_net(0.7, sqrt(2) 1e-3)
    theta = np.concatenate([[3.0, 1.0, 1.0], [1.5, 0.5, -c], 0.7 * np.array([1.0, -3.0, 1.0]), [0.0], [1.3], [-0.2]])
    prob = rf.Problem([1, 3, 1, 1], rf.targets.Affine([[0.4]], [0.1]), rf.dists.Uniform(-1.0, 1.0))
    est = rf.Quadrature()
    nodes = nodes_1d(prob.spec, theta, est, fixed_1d(prob.spec, est))
    assert nodes.zero is not None and nodes.zero.any()
    y = prob.spec.target(nodes.x)
    V = np.random.default_rng(0).normal(size=(1, 4, prob.num_params))
    from reluflow.backends import reference
    r_ref, g_ref, hv_ref = reference.risk_grad_hvp(prob.layout, theta[None], V, nodes.x, nodes.w, y, np, zero=nodes.zero)
    r, g, hv = core.risk_grad_hvp(list(prob.widths), theta[None], V, nodes.x, nodes.w, y, nodes.zero)
    _close(r, r_ref)
    _close(g, g_ref)
    _close(hv, hv_ref)
    # without the flags the rounding of the vanishing pre-activation decides its pattern differently
    _, _, hv_noflags = core.risk_grad_hvp(list(prob.widths), theta[None], V, nodes.x, nodes.w, y)
    assert np.abs(hv_noflags - hv_ref).max() > 1e-6 * np.abs(hv_ref).max()
    _close(prob.hvp(theta[None], V, est, backend="cpu"), prob.hvp(theta[None], V, est, backend="numpy"))


_THREAD_SCRIPT = """
import hashlib
import numpy as np
import reluflow as rf
from reluflow import _core
from reluflow.layout import Layout
h = hashlib.sha256()
rng = np.random.default_rng(0)
for widths, K, B, N in [([1, 40, 1], 3, 7, 5000), ([3, 9, 7, 2], 2, 33, 3100), ([2, 5, 1], 1, 1, 20000)]:
    lay = Layout(widths)
    theta = rng.normal(size=(K, lay.num_params)); V = rng.normal(size=(K, B, lay.num_params))
    x = rng.uniform(-1, 1, (N, widths[0])); w = rng.uniform(size=N) / N; y = rng.normal(size=(N, widths[-1]))
    for a in _core.risk_grad_hvp(widths, theta, V, x, w, y):
        h.update(a.tobytes())
prob = rf.Problem([1, 6, 4, 1], rf.targets.PiecewiseLinear([0.0, 0.5, 1.0], [0.0, 1.0, 0.0]))
h.update(prob.hessian(prob.init(3, seed=1), rf.Quadrature(), backend="cpu").tobytes())
h.update(prob.hessian(prob.init(2, seed=1), rf.MonteCarlo(3000, seed=1), backend="cpu").tobytes())
print(h.hexdigest())
"""


def test_cpu_hvp_bitwise_same_for_1_and_2_threads():
    """Multi-chunk node sets (N > 1024) and direction blocks: the same bits on 1 and 2 threads."""
    _core_or_skip()
    assert run_with_threads(_THREAD_SCRIPT, 1).strip() == run_with_threads(_THREAD_SCRIPT, 2).strip()


def test_cpu_hvp_of_a_network_is_the_same_alone_and_in_a_batch():
    """Bitwise: a network's products do not depend on the others in its batch (kernel and prob.hvp)."""
    core = _core_or_skip()
    rng = np.random.default_rng(3)
    widths, K, B, N = [2, 7, 5, 2], 5, 19, 4500              # several node chunks and direction blocks
    lay = Layout(widths)
    theta, V = rng.normal(size=(K, lay.num_params)), rng.normal(size=(K, B, lay.num_params))
    x, w, y = rng.uniform(-1, 1, (N, 2)), rng.uniform(size=N) / N, rng.normal(size=(N, 2))
    r, g, hv = core.risk_grad_hvp(widths, theta, V, x, w, y)
    for k in range(K):
        rk, gk, hvk = core.risk_grad_hvp(widths, theta[k:k + 1], V[k:k + 1], x, w, y)
        assert rk[0] == r[k] and np.array_equal(gk[0], g[k]) and np.array_equal(hvk[0], hv[k])
    # B = 1 products are the columns of the B = P ones, bitwise (a direction's arithmetic is its own)
    e = np.broadcast_to(np.eye(lay.num_params), (K, lay.num_params, lay.num_params))
    He = core.risk_grad_hvp(widths, theta, e, x, w, y)[2]
    assert np.array_equal(core.risk_grad_hvp(widths, theta, e[:, 3:4], x, w, y)[2][:, 0], He[:, 3])
    prob = rf.Problem([1, 5, 3, 1], HAT)
    th = prob.init(4, seed=8)
    Vp = rng.normal(size=(4, 3, prob.num_params))
    for est in (rf.Quadrature(), rf.MonteCarlo(2500, seed=2)):
        batch = prob.hvp(th, Vp, est, backend="cpu")
        for k in range(4):
            assert np.array_equal(prob.hvp(th[k:k + 1], Vp[k:k + 1], est, backend="cpu")[0], batch[k])


def test_cpu_hvp_refuses_bad_directions():
    core = _core_or_skip()
    prob = rf.Problem([1, 4, 1], HAT)
    theta = prob.init(2, seed=0)
    P = prob.num_params
    est = rf.MonteCarlo(64, seed=0)
    for V in (np.ones((3, P)), np.ones((2, P + 1)), np.ones((2, 2, P - 1)), np.ones(P), np.ones((2, 1, 1, P))):
        with pytest.raises(ValueError, match="^V: expected a \\(K, P\\) or \\(K, B, P\\) array"):
            prob.hvp(theta, V, est, backend="cpu")
    with pytest.raises(ValueError, match="^V: expected finite"):
        prob.hvp(theta, np.full((2, P), np.inf), est, backend="cpu")
    x, w, y = np.zeros((3, 1)), np.ones(3), np.zeros((3, 1))
    with pytest.raises(ValueError, match="^V: expected shape \\(K, B, P\\) with K = 2, P = 13, got \\(2, 13\\)"):
        core.risk_grad_hvp([1, 4, 1], theta, np.ones((2, P)), x, w, y)
    with pytest.raises(ValueError, match="^V: expected shape"):
        core.risk_grad_hvp([1, 4, 1], theta, np.ones((1, 2, P)), x, w, y)
    with pytest.raises(ValueError, match="^theta: expected shape"):
        core.risk_grad_hvp([1, 4, 1], theta[:, :-1], np.ones((2, 2, P)), x, w, y)
    with pytest.raises(ValueError, match="^y: expected shape"):
        core.risk_grad_hvp([1, 4, 1], theta, np.ones((2, 2, P)), x, w, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="^zero: expected a bool array"):
        core.risk_grad_hvp([1, 4, 1], theta, np.ones((2, 2, P)), x, w, y, np.zeros((3, 1), bool))


def test_cpu_kink_terms_equal_the_dense_formula():
    """_core.risk_grad_hvp's rank-one terms (sparse u_i in C++) against numpy's dense
    V + (V U^T c) U, with dense and sparse U, and their argument checks."""
    core = _core_or_skip()
    rng = np.random.default_rng(11)
    widths, K, B, N, m = [1, 5, 3, 1], 2, 4, 30, 6
    lay = Layout(widths)
    P = lay.num_params
    theta, V = rng.normal(size=(K, P)), rng.normal(size=(K, B, P))
    x, w, y = rng.uniform(0, 1, (N, 1)), np.full(N, 1.0 / N), rng.normal(size=(N, 1))
    hv0 = core.risk_grad_hvp(widths, theta, V, x, w, y)[2]
    c = rng.normal(size=(K, m))
    U = rng.normal(size=(K, m, P)) * (rng.uniform(size=(K, m, P)) < 0.3)       # sparse rows
    U[0, 0] = rng.normal(size=P)                                                 # and a dense one
    U[1, 2] = 0.0                                                                # and an empty one
    hv = core.risk_grad_hvp(widths, theta, V, x, w, y, kink_c=c, kink_u=U)[2]
    expect = hv0 + np.einsum("kbm,km,kmp->kbp", np.einsum("kbp,kmp->kbm", V, U), c, U)
    _close(hv, expect)
    with pytest.raises(ValueError, match="^kink_c: kink_c and kink_u come together"):
        core.risk_grad_hvp(widths, theta, V, x, w, y, kink_c=c)
    with pytest.raises(ValueError, match="^kink_c: expected shape \\(K, M\\)"):
        core.risk_grad_hvp(widths, theta, V, x, w, y, kink_c=c[:1], kink_u=U)
    with pytest.raises(ValueError, match="^kink_u: expected shape \\(K, M, P\\)"):
        core.risk_grad_hvp(widths, theta, V, x, w, y, kink_c=c, kink_u=U[:, :-1])
