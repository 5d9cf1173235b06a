"""The numpy reference backend against closed forms, finite differences and its own batching."""
import numpy as np
import pytest

import reluflow as rf


def gauss_points(a, b, n):
    t, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (b - a) * t + 0.5 * (a + b), 0.5 * w  # weights of the uniform density on [a, b]


@pytest.mark.parametrize("a,b", [(0.0, 1.0), (-1.0, 2.5)])
def test_closed_form_shallow_affine(dtype, a, b, reference):
    # N(x) = v relu(w x + bias) + c with w x + bias > 0 on [a, b]: an affine function e1 x + e0 + f(x)
    w, bias, v, c = 0.7, 3.0, -1.3, 0.4
    A, B = 2.0, -0.5
    prob = rf.Problem([1, 1, 1], rf.targets.Affine([[A]], [B]), rf.dists.Uniform(a, b))
    theta = np.array([[w, bias, v, c]], dtype=dtype)
    x, wts = gauss_points(a, b, 4)  # exact for the quadratic integrand
    risk, grad = prob.risk_and_grad(theta, rf.Points(x, wts), backend=reference)
    e1, e0 = v * w - A, v * bias + c - B
    m1, m2 = (a + b) / 2, (a * a + a * b + b * b) / 3
    R = e1 * e1 * m2 + 2 * e1 * e0 * m1 + e0 * e0
    dR1, dR0 = 2 * e1 * m2 + 2 * e0 * m1, 2 * e1 * m1 + 2 * e0
    expected = np.array([v * dR1, v * dR0, w * dR1 + bias * dR0, dR0])
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert risk.dtype == dtype and grad.dtype == dtype
    np.testing.assert_allclose(risk[0], R, rtol=tol)
    np.testing.assert_allclose(grad[0], expected, rtol=tol, atol=tol * np.abs(expected).max())


@pytest.mark.parametrize("widths", [[1, 5, 1], [2, 4, 3, 2], [3, 6, 5, 4, 1]])
def test_finite_differences(widths, reference):
    rng = np.random.default_rng(1)
    d, out = widths[0], widths[-1]
    prob = rf.Problem(widths, rf.targets.Affine(rng.normal(size=(out, d)), rng.normal(size=out)),
                      rf.dists.Uniform(-1.0, 1.0))
    theta = prob.init(3, seed=4)
    est = rf.MonteCarlo(64, seed=2, resample=False)
    _, grad = prob.risk_and_grad(theta, est, backend=reference)
    h = 1e-6
    for k in range(theta.shape[0]):
        for p in rng.choice(prob.num_params, size=min(12, prob.num_params), replace=False):
            tp, tm = theta.copy(), theta.copy()
            tp[k, p] += h
            tm[k, p] -= h
            fd = (prob.risk(tp, est, backend=reference)[k] - prob.risk(tm, est, backend=reference)[k]) / (2 * h)
            # a kink crossing within +-h would show as a jump; with 64 random nodes and h=1e-6 it
            # has probability ~1e-4, so a mismatch here is a real error
            assert abs(fd - grad[k, p]) <= 1e-6 * max(1.0, abs(grad[k, p])), (k, p, fd, grad[k, p])


def test_degenerate_neuron_has_zero_incoming_gradient(reference):
    prob = rf.Problem([2, 3, 1], rf.targets.Affine([[1.0, -2.0]], [0.5]), rf.dists.Uniform(0.0, 1.0, dim=2))
    theta = prob.init(2, seed=3)
    W1, b1 = prob.layout.unpack(theta)[0]
    W1[:, 1, :] = 0.0  # neuron 1: (w, b) = (0, 0), pre-activation exactly 0 everywhere
    b1[:, 1] = 0.0
    _, grad = prob.risk_and_grad(theta, rf.MonteCarlo(256, seed=0), backend=reference)
    gW1, gb1 = prob.layout.unpack(grad)[0]
    assert np.all(gW1[:, 1, :] == 0.0) and np.all(gb1[:, 1] == 0.0)
    # its outgoing weight sees relu(0) = 0 as well
    gW2, _ = prob.layout.unpack(grad)[1]
    assert np.all(gW2[:, 0, 1] == 0.0)
    # the other neurons are not degenerate
    assert np.any(gW1[:, 0, :] != 0.0)


def test_batch_equals_single_calls(dtype, reference):
    prob = rf.Problem([1, 8, 4, 1], rf.targets.PiecewiseLinear([0, .5, 1], [0, 1, 0]))
    theta = prob.init(5, seed=9, dtype=dtype)
    est = rf.MonteCarlo(300, seed=4)
    risk, grad = prob.risk_and_grad(theta, est, backend=reference)
    for k in range(5):
        r1, g1 = prob.risk_and_grad(theta[k:k + 1], est, backend=reference)
        np.testing.assert_allclose(r1[0], risk[k], rtol=1e-6 if dtype == np.float32 else 1e-14)
        np.testing.assert_allclose(g1[0], grad[k], rtol=1e-6 if dtype == np.float32 else 1e-13,
                                   atol=1e-13 * np.abs(grad[k]).max())


def test_chunking_does_not_change_the_result(monkeypatch, reference):
    from reluflow import geometry

    prob = rf.Problem([2, 16, 2], rf.targets.Affine(np.eye(2)), rf.dists.Uniform(0, 1, dim=2))
    theta = prob.init(3, seed=1)
    est = rf.MonteCarlo(1000, seed=0)
    r0, g0 = prob.risk_and_grad(theta, est, backend=reference)
    monkeypatch.setattr(geometry, "_CHUNK_NODES", 7)           # chunks of 7 nodes
    monkeypatch.setattr(geometry, "_CHUNK_ELEMS", 2 * 16 * 7)  # blocks of 2 networks
    r1, g1 = prob.risk_and_grad(theta, est, backend=reference)
    np.testing.assert_allclose(r1, r0, rtol=1e-13)
    np.testing.assert_allclose(g1, g0, rtol=1e-12, atol=1e-14)
