import contextlib
import numpy as np
import pytest

import reluflow as rf
from reluflow.layout import Layout

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
    name, or "strict": the reference on array-api-strict arrays), without ``Problem``'s cast to theta's
    dtype or its check of theta (the integrators' frozen, non-finite networks reach the backends this
    way)."""
    from reluflow.backends import get
    from reluflow.plan import plan

    if backend == "strict":
        p = plan(prob.spec, estimator, "numpy", np.asarray(theta).dtype, method)
        ts = to_strict(np.asarray(theta))
        r, g = get(p).evaluate(p, prob.spec, ts, step, want_grad, ts.__array_namespace__())
        return from_strict(r), (from_strict(g) if want_grad else None)
    p = plan(prob.spec, estimator, backend, np.asarray(theta).dtype, method)
    return get(p).evaluate(p, prob.spec, theta, step, want_grad)


# ---- the reference backend on array-api-strict arrays ("strict") -----------------------------------
# array-api-strict refuses everything outside the array API standard; its arrays live on a non-CPU
# device ("device1") so that, as with CuPy, np.asarray refuses them and arrays of two devices do not
# mix. backend="strict" in a test runs the public functions on such arrays with the reference backend
# (backend="numpy", what backend="cupy" runs on CuPy arrays) and checks that every result comes back
# as an array-api-strict array on that device before handing it to the test as numpy.
try:
    import array_api_strict as xps
except ImportError:  # pragma: no cover - the test extra installs it
    xps = None

STRICT_DEVICE = xps.Device("device1") if xps is not None else None


def to_strict(a):
    """A numpy float32/float64 array as an array-api-strict array on STRICT_DEVICE (anything else,
    e.g. float16, which array-api-strict does not have, unchanged)."""
    if isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float64):
        return xps.asarray(a, device=STRICT_DEVICE)
    return a


def from_strict(a):
    """An array-api-strict result on STRICT_DEVICE as a (writable) numpy array; a result in another
    library fails the test (results must come back in theta's namespace)."""
    assert type(a).__module__.startswith("array_api_strict"), f"expected an array-api-strict result, got {type(a).__name__}"
    assert a.device == STRICT_DEVICE, f"result on {a.device}, theta on {STRICT_DEVICE}"
    return np.array(np.from_dlpack(a), copy=True)


def _strict_call(fn, convert: tuple, result):
    """``fn`` run on array-api-strict arrays when called with backend="strict": the numpy float
    arguments at the positions/names ``convert`` become strict arrays, "strict" becomes "numpy", and
    ``result`` turns the strict results back into numpy (checking their namespace and device)."""
    import functools
    import inspect

    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        if "strict" not in [v for v in bound.arguments.values() if isinstance(v, str)]:
            return fn(*args, **kwargs)
        for name, v in list(bound.arguments.items()):
            if isinstance(v, str) and v == "strict":
                bound.arguments[name] = "numpy"
            elif name in convert:
                bound.arguments[name] = to_strict(v)
        return result(fn(*bound.args, **bound.kwargs))

    return wrapper


def _strict_run(run):
    run.theta = from_strict(run.theta)
    if run.thetas is not None:
        run.thetas = from_strict(run.thetas)
    return run


def _strict_pair(pair):
    return from_strict(pair[0]), (None if pair[1] is None else from_strict(pair[1]))


def use_strict(monkeypatch):
    """Inside a test: backend="strict" accepted by the public functions (see ``_strict_call``)."""
    P = rf.Problem
    for name, result in (("risk_and_grad", _strict_pair), ("risk", from_strict), ("realization", from_strict),
                         ("hvp", from_strict), ("hessian", from_strict)):
        monkeypatch.setattr(P, name, _strict_call(getattr(P, name), ("theta", "V"), result))
    for name in ("plan", "explain"):
        monkeypatch.setattr(P, name, _strict_call(getattr(P, name), (), lambda out: out))
    for name in ("gradient_descent", "gradient_flow", "normalized_gradient_flow"):
        monkeypatch.setattr(rf, name, _strict_call(getattr(rf, name), ("theta0",), _strict_run))


#: backends that evaluate every plan (risk, gradient, integrators); cupy and cuda join here when they do.
#: "strict": the reference backend on array-api-strict arrays (what backend="cupy" runs, without a GPU)
CAPABLE_BACKENDS = ("numpy", "cpu", "strict")


#: the "strict" parameter of a test (skipped, saying why, where array-api-strict is not installed)
STRICT = pytest.param("strict", marks=pytest.mark.skipif(
    xps is None, reason="array-api-strict is not installed (pip install array-api-strict, in the test extra): "
                        "the reference backend on the array API is not tested"))


def _backend_params(names):
    return [STRICT if b == "strict" else b for b in names if b == "strict" or b in available_backends()]


@pytest.fixture(params=_backend_params(CAPABLE_BACKENDS))
def backend(request, monkeypatch):
    """Every backend available here that has the capability under test (one fixture for the suite)."""
    if request.param == "strict":
        use_strict(monkeypatch)
    return request.param


@pytest.fixture(params=["numpy", STRICT])
def reference(request, monkeypatch):
    """The reference backend on numpy arrays ("numpy") and on array-api-strict arrays ("strict")."""
    if request.param == "strict":
        use_strict(monkeypatch)
    return request.param


def run_with_threads(script: str, threads: int, timeout: float = 600) -> str:
    """The stdout of ``python -c script`` in a fresh interpreter with OMP_NUM_THREADS=threads (OpenMP
    reads it once, at start: hence a new process); the test fails with the script's stderr when it
    does not exit with 0."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr
    return res.stdout


@contextlib.contextmanager
def ctrl_c_after(seconds: float):
    """Inside: a SIGINT to this process from a timer thread after ``seconds``, under Python's default
    handler (a KeyboardInterrupt, as a Ctrl-C at the terminal); the old handler is back afterwards."""
    import os
    import signal
    import threading

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def python_driver():
    """Inside: the integrators run their Python driver (the reference loop around the same kernels)
    instead of the C++ loop their plan chose, so that tests can judge the C++ loops against it."""
    from reluflow import flows

    orig, orig_device = flows._native_plan, flows._device_plan
    flows._native_plan = flows._device_plan = lambda plan: None
    try:
        yield
    finally:
        flows._native_plan, flows._device_plan = orig, orig_device


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


def make_data(widths, K, N, dtype, seed=0):
    """A random dense problem: (layout, theta (K, P) in dtype, x (N, d) in [-1, 1], weights w (N,)
    summing to about 1/2, data y (N, out))."""
    rng = np.random.default_rng(seed)
    lay = Layout(widths)
    theta = rng.normal(size=(K, lay.num_params)).astype(dtype)
    x = rng.uniform(-1.0, 1.0, size=(N, widths[0]))
    w = rng.uniform(0.0, 1.0, size=N) / max(N, 1)
    y = rng.normal(size=(N, widths[-1]))
    return lay, theta, x, w, y
