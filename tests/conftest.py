import contextlib
import numpy as np
import pytest

import reluflow as rf

DTYPES = [np.float32, np.float64]
# relative tolerances of a float32 / float64 computation against a float64 reference
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


def available_backends():
    return [name for name, info in rf.backends().items() if info.available and name in ("numpy", "cpu")]


def evaluate(prob, theta, estimator, backend="cpu", want_grad=True, method="auto", step=0):
    """float64 risk (K,) and gradient (K, P) of the route the planner picks for ``backend`` (a resolved
    name), without ``Problem``'s cast to theta's dtype or its check of theta (the integrators' frozen,
    non-finite networks reach the backends this way)."""
    from reluflow.backends import get
    from reluflow.plan import plan

    p = plan(prob.spec, estimator, backend, np.asarray(theta).dtype, method)
    return get(p).evaluate(p, prob.spec, theta, step, want_grad)


#: backends that evaluate every plan (risk, gradient, integrators); cupy and cuda join here when they do
CAPABLE_BACKENDS = ("numpy", "cpu")


@pytest.fixture(params=[b for b in CAPABLE_BACKENDS if b in available_backends()])
def backend(request):
    """Every backend available here that has the capability under test (one fixture for the suite)."""
    return request.param


@contextlib.contextmanager
def python_driver():
    """Inside: the integrators run their Python driver (the reference loop around the same kernels)
    instead of the C++ loop their plan chose, so that tests can judge the C++ loops against it."""
    from reluflow import flows

    orig = flows._native_plan
    flows._native_plan = lambda plan: None
    try:
        yield
    finally:
        flows._native_plan = orig


def forward_1d(params, x):
    """A plain numpy forward pass of one network at 1-D points, independent of the library (the tests'
    own reference): params [(W (l, l_prev), b (l,))], x (n,) -> (hidden pre-activations [(n, l_k)],
    activations [a_0 .. a_{L-1}], output (n, out))."""
    a = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    zs, acts = [], [a]
    for k, (W, b) in enumerate(params):
        z = a @ W.T + b
        if k < len(params) - 1:
            zs.append(z)
            a = np.maximum(z, 0.0)
            acts.append(a)
    return zs, acts, z
