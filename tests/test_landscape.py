"""Second order (SPEC §8, issue 18 parts 1-2): the exact Hessian of a sampled risk against
torch.func.hessian and finite differences of the gradient, Hessian-vector products, spectra, rank and
the zero eigenvalues forced by homogeneity and dead neurons."""
import numpy as np
import pytest

import reluflow as rf
from reluflow.layout import Layout
from reluflow.quadrature import fixed_1d, nodes_1d

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


def test_polish_deep_net_points_and_frozen():
    """A deep net on Points, with the output layer frozen: the frozen parameters do not move, the
    others reach |G| <= 1e-12 over the free parameters."""
    prob = rf.Problem([1, 4, 3, 1], HAT)
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (64, 1))
    est = rf.Points(x, np.full(64, 1 / 64), HAT(x))
    frozen = prob.mask(layers=[3])
    run = rf.gradient_flow(prob, prob.init(2, seed=4), 50.0, method="dopri5", estimator=est, frozen=frozen,
                           progress=False)
    p = rf.polish(prob, run.theta, est, frozen=frozen)
    assert list(p.status) == ["converged"] * 2, p
    np.testing.assert_array_equal(p.theta[:, frozen], run.theta[:, frozen])
    g = prob.risk_and_grad(p.theta, est)[1][:, ~frozen]
    assert np.linalg.norm(g, axis=1).max() <= 1e-12


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
