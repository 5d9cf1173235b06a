"""Cross-check of risk and generalized gradient against PyTorch autograd (skipped without torch).

PyTorch's relu backward uses the same convention as reluflow, relu'(0) = 0.
"""
import numpy as np
import pytest

import reluflow as rf

torch = pytest.importorskip("torch")


def torch_risk_and_grad(prob, theta, x, w, y):
    out = []
    for k in range(theta.shape[0]):
        t = torch.tensor(theta[k], dtype=torch.float64, requires_grad=True)
        a = torch.tensor(x, dtype=torch.float64)
        for i, ((wo, bo), (lo, li)) in enumerate(zip(zip(prob.layout.w_offsets, prob.layout.b_offsets),
                                                    zip(prob.widths[1:], prob.widths[:-1]))):
            W = t[wo:wo + lo * li].reshape(lo, li)
            b = t[bo:bo + lo]
            a = a @ W.T + b
            if i < prob.layout.num_layers - 1:
                a = torch.relu(a)
        r = a - torch.tensor(y, dtype=torch.float64)
        risk = (torch.tensor(w, dtype=torch.float64) * (r * r).sum(1)).sum()
        risk.backward()
        out.append((risk.item(), t.grad.numpy().copy()))
    return np.array([o[0] for o in out]), np.stack([o[1] for o in out])


@pytest.mark.parametrize("widths", [[1, 16, 1], [3, 8, 2], [2, 6, 5, 4, 3]])
def test_matches_torch_autograd(widths, dtype, reference):
    rng = np.random.default_rng(sum(widths))
    d, out = widths[0], widths[-1]
    prob = rf.Problem(widths, rf.targets.Affine(rng.normal(size=(out, d))), rf.dists.Uniform(-1, 1))
    theta = prob.init(3, seed=1, dtype=dtype)
    # a degenerate neuron: pre-activation exactly 0 at every node
    W, b = prob.layout.unpack(theta)[0]
    W[:, 0] = 0.0
    b[:, 0] = 0.0
    nodes = rf.MonteCarlo(200, seed=5).nodes(prob)
    y = prob.target(nodes.x)
    risk, grad = prob.risk_and_grad(theta, rf.Points(nodes.x, nodes.w, y), backend=reference)
    t_risk, t_grad = torch_risk_and_grad(prob, theta.astype(np.float64), nodes.x, nodes.w, y)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(risk, t_risk, rtol=tol)
    assert np.linalg.norm(grad - t_grad) <= tol * np.linalg.norm(t_grad)
