"""How runs end (issue 15, items 2, 3, 4 and 7): constant step sizes never materialized, divergence by
risk blow-up with a reason per network, the energy identity of the fixed-step flows, and Ctrl-C
returning a resumable partial Run; the C++ loops and the Python driver alike."""
import contextlib
import time
import tracemalloc

import numpy as np
import pytest

import reluflow as rf
from conftest import python_driver

HAT = rf.targets.PiecewiseLinear([0, .5, 1], [0, 1, 0])
U01 = rf.dists.Uniform(0.0, 1.0)
needs_cpu = pytest.mark.skipif(not rf.backends()["cpu"].available, reason="C++ extension not built")


def _driver(python):
    return python_driver() if python else contextlib.nullcontext()


# ---- item 7: a constant step size is one number -------------------------------------------------

@needs_cpu
@pytest.mark.parametrize("method", ["gd", "euler", "rk4"])
def test_flow_run_length_one_h_is_the_same_step_every_step_bitwise(method, dtype):
    """_core.flow_run with h of length 1 gives bitwise what the materialized schedule gives."""
    from reluflow import _core

    prob = rf.Problem([1, 5, 1], HAT, U01)
    theta = prob.init(3, seed=4, dtype=dtype)
    x = np.linspace(0.05, 0.95, 9)[:, None]
    field = {"source": "fixed", "x": x, "w": np.full(9, 1 / 9), "y": HAT(x).reshape(-1, 1)}
    args = (list(prob.widths), np.ascontiguousarray(theta), method, 40, 3, 7)
    full = _core.flow_run(*args, np.full(40, 0.05), 1e8, **field)
    one = _core.flow_run(*args, np.array([0.05]), 1e8, **field)
    for key in ("theta", "risk", "grad_norm", "energy", "active"):
        assert full[key].tobytes() == one[key].tobytes(), key
    with pytest.raises(ValueError, match="h"):
        _core.flow_run(*args, np.full(2, 0.05), 1e8, **field)


@needs_cpu
def test_constant_lr_is_not_materialized():
    """1,000,000 GD steps with a constant lr allocate no schedule (the old one took 8 MB)."""
    prob = rf.Problem([1, 2, 1], rf.targets.Affine([[1.0]], [0.0]), U01)
    theta = prob.init(1, seed=0)
    est = rf.Points(np.array([0.1, 0.4, 0.6, 0.9]), np.full(4, 0.25))
    tracemalloc.start()
    try:
        run = rf.gradient_descent(prob, theta, lr=1e-3, steps=1_000_000, estimator=est, backend="cpu",
                                  record_every=500_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert run.info["loop"] == "C++" and run.next_step == 1_000_000 and run.t.size == 3
    assert peak < 2 << 20, peak
    flow = rf.gradient_flow(prob, theta, 1.0, method="euler", dt=1e-3, estimator=est, backend="cpu")
    with python_driver():
        ref = rf.gradient_flow(prob, theta, 1.0, method="euler", dt=1e-3, estimator=est, backend="cpu")
    assert flow.theta.tobytes() == ref.theta.tobytes()
